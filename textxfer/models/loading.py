"""Loading pretrained files: tokenizers (with a pad token guaranteed) and clear errors for what cannot be
loaded (pickled weights, a Hub id without a network)."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from ..config import ModelConfig
from ..errors import TextxferError
from .embedded import EMBEDDED, resolve_model_path


def load_error(name: str, exc: Exception) -> TextxferError:
    """One paragraph for a model that could not be loaded."""
    if Path(name).exists() or name in EMBEDDED:
        return TextxferError(
            f"Could not load the model `{name}`: {first_line(exc)}. textxfer loads weights from safetensors files "
            f"only (pickled .bin checkpoints can run code when loaded); convert the checkpoint with "
            f"`model.save_pretrained(folder)` in a trusted environment, or pick another model."
        )
    return TextxferError(
        f"Could not load the model `{name}`: {first_line(exc)}. "
        f"It is neither an embedded alias ({', '.join(EMBEDDED)}) nor a local folder, so it must come from the "
        f"Hugging Face Hub, which needs a network (or a filled local cache). Use a local folder or an alias offline."
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hub_kwargs(cfg: ModelConfig) -> dict:
    """`trust_remote_code` (off unless asked) and the revision, for `from_pretrained`."""
    kwargs = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    return kwargs


def build_tokenizer(cfg: ModelConfig):
    """The model's fast tokenizer, with a pad token guaranteed (decoders often lack one)."""
    path = resolve_model_path(cfg.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs(cfg))
    except (OSError, ValueError) as exc:
        raise load_error(cfg.name, exc) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise TextxferError(f"The tokenizer of `{cfg.name}` has neither a pad nor an end-of-sequence token to pad with.")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
