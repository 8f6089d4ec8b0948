"""LoRA and QLoRA classifiers with peft: build, save so stock peft reloads them, load (merging them is
`textxfer.commands.merge`).

Traps this module avoids (each one bites users of plain peft/transformers):
- The classification head (`score` for decoders, `classifier` for encoders) is new: it must train and be
  saved with the adapter. `task_type="SEQ_CLS"` puts it in `modules_to_save`; `all-linear` excludes it.
- peft saves no model config, so label names and `num_labels` are lost, and
  `AutoPeftModelForSequenceClassification.from_pretrained(run)` fails with a size mismatch of the head.
  textxfer saves the labelled config beside the adapter and points the adapter's
  `base_model_name_or_path` at a *labelled base*: a cache folder holding that config and hard links to
  the base weights (no copy), so the stock one-liner rebuilds the right head with the label names.
- QLoRA: the base is quantized to 4-bit NF4 (double quantization, chosen compute dtype), prepared for
  k-bit training; the head stays in full precision; the saved config carries no `quantization_config`
  (a stale one breaks reloading).
- Merging keeps the head, `num_labels` and `id2label`: the merged folder loads with
  `AutoModelForSequenceClassification` alone.
"""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import warnings
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from torch import nn
from transformers import AutoConfig, BitsAndBytesConfig

from ..config import LoraSettings, ModelConfig
from ..errors import TextxferError
from ..fsutil import cache_root
from .quiet import quiet_loading


# peft still calls transformers' deprecated gradient-checkpointing names; the warning is not the user's to fix.
warnings.filterwarnings("ignore", message=r".*(is_gradient_checkpointing|gradient_checkpointing_enable).*deprecated",
                        category=FutureWarning)
WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json")


def quantization_config(lora: LoraSettings):
    """The 4-bit NF4 bitsandbytes config of a quantized method (its compute dtype and double quantization)."""
    try:
        import bitsandbytes  # noqa: F401  (an optional dependency: the `qlora` extra)
    except ImportError:
        raise TextxferError(
            "`model.method=qlora` needs bitsandbytes (0.49 or newer also runs on CPU). Install it with "
            "`pip install 'bitsandbytes>=0.49'`, or use `model.method=lora` (no quantization)."
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=lora.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, lora.compute_dtype),
        llm_int8_skip_modules=["score", "classifier"],  # the head stays in full precision
    )


# bitsandbytes' CPU inference path for AVX-512 BF16 CPUs repacks each 4-bit weight in blocks of 32
# output rows, with one scale per quantization block of input columns.
_PACKED_ROWS = 32


def check_4bit_layers(model: nn.Module, name: str) -> None:
    """Refuse, before training, a 4-bit model whose layers this machine's kernels cannot run (a clear
    error instead of a reshape failure deep inside bitsandbytes at the first evaluation)."""
    import bitsandbytes as bnb  # an optional dependency: the `qlora` extra

    bad = []
    for module_name, module in model.named_modules():
        if not isinstance(module, bnb.nn.Linear4bit) or not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        if module.weight.device.type != "cpu":
            continue
        state = getattr(module.weight, "quant_state", None)
        block = getattr(state, "blocksize", 64) or 64
        if module.in_features % block or module.out_features % _PACKED_ROWS:
            bad.append(f"{module_name} ({module.in_features} -> {module.out_features})")
    if bad:
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise TextxferError(
            f"`model.method=qlora` cannot run `{name}` on this CPU: bitsandbytes' 4-bit kernels for CPUs with "
            f"AVX-512 BF16 need every quantized linear layer's input size to be a multiple of {block} and its output "
            f"size a multiple of {_PACKED_ROWS}, and these layers are not: {shown}. Use `model.method=lora` (no "
            f"quantization), a GPU, or a model whose hidden sizes are multiples of 64 (every common checkpoint's are).")


def add_adapters(model: nn.Module, cfg: ModelConfig, gradient_checkpointing: bool, quantized: bool) -> nn.Module:
    """Wrap a sequence classifier with LoRA adapters; the head trains in full and is saved with them."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training  # peft: 6-7 s to import

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = cfg.lora
    try:
        return get_peft_model(model, LoraConfig(
            task_type="SEQ_CLS", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.target_modules, use_dora=lora.use_dora))
    except ValueError as exc:  # e.g. target modules that the model does not have
        names = sorted({name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise TextxferError(f"Could not add LoRA adapters to `{cfg.name}`: {str(exc).splitlines()[0]} "
                            f"Its linear layers are named: {', '.join(names)}. Set `model.lora.target_modules` "
                            f"to some of them, or to `all-linear`.") from None


def plain_config(model: nn.Module):
    """The model's config with labels, without the quantization settings (which break reloading)."""
    config = copy.deepcopy(model.config)
    config.__dict__.pop("quantization_config", None)
    config.__dict__.pop("_pre_quantization_dtype", None)
    return config


def save_adapter(model: nn.Module, folder: Path, base_path: str) -> None:
    """Adapter + head weights, the labelled config, and a base pointer that stock peft can reload."""
    base = model.get_base_model()
    config = plain_config(base)
    labelled = labelled_base(base_path, config)
    model.peft_config["default"].base_model_name_or_path = str(labelled)
    model.save_pretrained(folder)
    config.save_pretrained(folder)


def labelled_base(base_path: str, config) -> Path:
    """A cache folder = the base model's weights (hard-linked, or copied across file systems) with the
    run's labelled config, so `from_pretrained` of it builds the right head with the label names."""
    source = _local_folder(base_path)
    text = config.to_json_string(use_diff=False)
    digest = hashlib.sha256((str(source.resolve()) + text).encode()).hexdigest()[:16]
    target = cache_root() / "labelled" / f"{source.name}-{digest}"
    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in source.iterdir():
        if file.name.endswith(WEIGHT_SUFFIXES):
            try:
                os.link(file.resolve(), tmp / file.name)
            except OSError:  # another file system: copy
                shutil.copy2(file, tmp / file.name)
    config.save_pretrained(tmp)  # written last: a folder with config.json is complete
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _local_folder(base_path: str) -> Path:
    path = Path(base_path)
    if path.is_dir():
        return path
    try:  # a Hub id: its files are in the local Hugging Face cache after loading
        return Path(snapshot_download(base_path, local_files_only=True))
    except Exception as exc:  # noqa: BLE001
        raise TextxferError(f"Could not find the local files of the base model `{base_path}` to save the adapter "
                            f"against: {exc}") from None


def load_adapter(run_dir: Path, lora: LoraSettings, device: str, quantized: bool = False) -> nn.Module:
    """Reload an adapter run for prediction (on a 4-bit base again when `quantized`)."""
    from peft import AutoPeftModelForSequenceClassification  # peft: 6-7 s to import, adapter runs only

    kwargs = {}
    if (Path(run_dir) / "config.json").is_file():
        # The head's size and label names, for a folder whose adapter names its base by Hub id (a pushed
        # run): peft builds that base from the Hub config, which knows nothing of our labels.
        config = AutoConfig.from_pretrained(run_dir)
        kwargs.update(num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,
                      pad_token_id=config.pad_token_id)
    if quantized:
        kwargs["quantization_config"] = quantization_config(lora)
        kwargs["device_map"] = {"": device}
    with quiet_loading():
        model = AutoPeftModelForSequenceClassification.from_pretrained(run_dir, dtype=torch.float32, **kwargs)
    return model
