"""What a transfer method is: one declaration that the rest of textxfer asks, instead of comparing names.

A `Method` says what it builds (a pretrained or random classifier, or a frozen backbone under a pooled
linear head), what trains (everything, adapters, biases, the head), how it fits (one of the fitting
plans of `textxfer.training.plans`), what its run folder holds, its default epochs / learning rate /
minimum steps, and what it supports (layer-wise strategies, self-training, Hub push, ONNX export).
A new method is one module in this package and one line in `registry.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# The classification heads that transformers puts on top of a backbone (and textxfer's pooled head).
HEAD_PREFIXES = ("classifier.", "score.", "pre_classifier.", "head.")


def is_head_parameter(name: str) -> bool:
    """True for a parameter of the classification head (new at fine-tuning time, no pretrained value)."""
    return name.startswith(HEAD_PREFIXES) or any(f".{prefix}" in name for prefix in HEAD_PREFIXES[:3])


@dataclass(frozen=True)
class Method:
    """A transfer method (see the module notes). Refusal fields hold the reason a feature cannot apply,
    or None when it can; they are quoted to the user as they are."""

    name: str
    summary: str
    epochs: int | None = None  # default passes over the data; None: no epochs (the head is fit in one go)
    lr: float | None = None
    min_steps: int | None = None  # default minimum optimizer steps (small data sets get more epochs)
    backbone: str = "pretrained"  # "pretrained": the checkpoint's weights; "random": its config, new weights
    head: str = "sequence_classification"  # the model's own head, or "pooled_linear" on frozen pooled features
    adapters: bool = False  # LoRA adapters (peft) on the frozen base; the run saves adapters + head
    quantized: bool = False  # a 4-bit NF4 base (bitsandbytes)
    fit: str = "fine_tune"  # "fine_tune", "cached_head" or "probe_then_fine_tune" (textxfer.training.plans)
    trainable: Callable | None = None  # model -> None: freezes what must not train (None: all trains)
    trains: str = "every weight"  # what trains, in words
    layer_strategies: str | None = None  # why freeze_layers / layer_lr_decay / gradual_unfreezing / l2_sp cannot apply
    self_training: str | None = ("it refits the linear head on cached frozen features, and this method trains "
                                 "the backbone. Use `model.method=feature_extraction`")
    push: str | None = None  # why the run cannot be pushed as a stock Hugging Face model
    onnx: str | None = None  # why the run cannot be exported to ONNX as it is
    card: str | None = None  # how a model card says how the model was made (default: the summary)
    tag: str | None = None  # the model card's tag (default: the name, with dashes)

    @property
    def card_text(self) -> str:
        return self.card or self.summary

    @property
    def card_tag(self) -> str:
        return self.tag or self.name.replace("_", "-")

    @property
    def saves(self) -> str:
        """What the run folder holds: `adapter` (peft adapter + head), `pooled` (backbone/ + head) or `model`."""
        if self.adapters:
            return "adapter"
        return "pooled" if self.head == "pooled_linear" else "model"

    @property
    def caches_features(self) -> bool:
        """True when the backbone is frozen and its features are computed once (only a head trains)."""
        return self.fit == "cached_head"

    def defaults(self, head_solver: str) -> dict:
        """Default `epochs`, `lr` and `min_steps` (None where the method, or its head solver, uses none)."""
        if self.caches_features and head_solver == "lbfgs":
            return {"epochs": None, "lr": None, "min_steps": None}
        return {"epochs": self.epochs, "lr": self.lr, "min_steps": self.min_steps}
