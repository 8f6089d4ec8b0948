"""The classifier a recipe's method asks for (see `textxfer.methods`): a pretrained or random
sequence classifier, or a frozen backbone under a pooled linear head; LoRA adapters (on a 4-bit base)
where the method has them; only what the method trains left trainable."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch
from accelerate import PartialState
from huggingface_hub import try_to_load_from_cache
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from ..config import ModelConfig
from ..methods import Method, get_method
from .adapters import add_adapters, check_4bit_layers, quantization_config
from .embedded import resolve_model_path
from .loading import hub_kwargs, load_error
from .quiet import quiet_loading
from .pooled import HeadConfig, PooledClassifier


def has_accelerator() -> bool:
    """A GPU (CUDA), Apple MPS or Intel XPU device is visible; else Accelerate is told to use the CPU."""
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or bool(xpu and xpu.is_available())

def build_model(cfg: ModelConfig, id2label: dict[int, str], pad_token_id: int | None,
                multi_label: bool = False, gradient_checkpointing: bool = False) -> nn.Module:
    """The classifier for `cfg.method`, with `num_labels`, `id2label` and `label2id` in its config
    (and `problem_type` multi_label_classification when rows carry label sets)."""
    method = get_method(cfg.method)
    path = resolve_model_path(cfg.name)
    try:
        with quiet_loading():
            if method.head == "pooled_linear":
                backbone = AutoModel.from_pretrained(path, use_safetensors=True, **hub_kwargs(cfg))
                return PooledClassifier(backbone, HeadConfig(len(id2label), cfg.pooling, id2label))
            model = _sequence_classifier(method, cfg, path, id2label, multi_label)
    except (OSError, ValueError) as exc:
        raise load_error(cfg.name, exc) from None
    if method.quantized:
        check_4bit_layers(model, cfg.name)
    if method.backbone == "pretrained" and _pooler_init(cfg, path) == "identity":
        _identity_pooler(model)
    if pad_token_id is not None and model.config.pad_token_id is None:
        # Decoders classify from the last non-pad token: the model must know the tokenizer's pad id.
        model.config.pad_token_id = pad_token_id
    if gradient_checkpointing and not method.quantized:  # quantized: done by prepare_model_for_kbit_training
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x name
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method.adapters:
        model = add_adapters(model, cfg, gradient_checkpointing, method.quantized)
    if method.trainable is not None:
        method.trainable(model)
    return model


def _sequence_classifier(method: Method, cfg: ModelConfig, path: str, id2label: dict, multi_label: bool) -> nn.Module:
    labels = {"num_labels": len(id2label), "id2label": id2label, "label2id": {l: i for i, l in id2label.items()},
              "problem_type": "multi_label_classification" if multi_label else "single_label_classification"}
    if method.backbone == "random":
        config = AutoConfig.from_pretrained(path, **labels, **hub_kwargs(cfg))
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=cfg.trust_remote_code)
    quantized = {}
    if method.quantized:
        quantized["quantization_config"] = quantization_config(cfg.lora)
        if torch.cuda.is_available():  # 4-bit weights are placed at load time: one GPU per process
            quantized["device_map"] = {"": PartialState().local_process_index}
    return AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, dtype=torch.float32, **labels, **quantized, **hub_kwargs(cfg))


def accepts_position_ids(model: nn.Module) -> bool:
    """Whether the model's forward takes `position_ids` (then left padding keeps positions right)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "position_ids" in inspect.signature(base.forward).parameters


def is_sentence_embedding_model(path: str) -> bool:
    """True for sentence-transformers checkpoints (they ship modules.json): trained for mean pooling."""
    if Path(path).is_dir():
        return (Path(path) / "modules.json").is_file()
    try:
        return isinstance(try_to_load_from_cache(path, "modules.json"), str)
    except Exception:  # no cache, odd id: fall back to the stock behaviour
        return False


def _pooler_init(cfg: ModelConfig, path: str) -> str:
    if cfg.pooler_init != "auto":
        return cfg.pooler_init
    return "identity" if is_sentence_embedding_model(path) else "pretrained"


def _identity_pooler(model: nn.Module) -> None:
    """Start a BERT-style pooler (tanh(W h_cls + b)) at W = I, b = 0.

    Sentence-embedding checkpoints were trained through mean pooling; their [CLS] pooler is an
    untrained leftover that scrambles the [CLS] state. Starting it at identity lets the head see that
    state as it is, while keeping the stock architecture (the run still loads with
    AutoModelForSequenceClassification). Measured on Banking77 with MiniLM-L6 (5 epochs, lr 1e-4):
    92.7% with the leftover pooler, 93.4% with the identity start.
    """
    pooler = getattr(getattr(model, "base_model", None), "pooler", None)
    dense = getattr(pooler, "dense", None)
    if isinstance(dense, nn.Linear) and dense.in_features == dense.out_features:
        with torch.no_grad():
            dense.weight.copy_(torch.eye(dense.in_features, dtype=dense.weight.dtype))
            dense.bias.zero_()


def _logical_numel(param: torch.Tensor) -> int:
    """Weights a parameter stands for: 4-bit bitsandbytes tensors pack two weights per byte."""
    state = getattr(param, "quant_state", None)
    return state.shape.numel() if state is not None and hasattr(state, "shape") else param.numel()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(_logical_numel(p) for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
