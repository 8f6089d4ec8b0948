"""Transfer strategies that act on the layers of a pretrained network.

Every parameter gets a *depth*: 0 for the embeddings, 1..L for the transformer layers (bottom to
top), L+1 for everything above them (pooler, classification head). On that scale:

- partial freezing (`model.freeze_layers: k`) freezes depths 0..k;
- discriminative learning rates (`train.layer_lr_decay: d`) give depth i the rate lr * d^(L+1-i);
- gradual unfreezing (`train.gradual_unfreezing: true`, ULMFiT) trains only depth L+1 in the first
  epoch and unfreezes one more layer from the top at each following epoch;
- L2-SP (`train.l2_sp: a`) adds a * ||w - w_pretrained||^2 over the pretrained weights, pulling
  them towards where they started instead of towards zero (Li et al. 2018).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import TextxferError
from ..methods import is_head_parameter

# `encoder.layer.3.`, `model.layers.3.`, `transformer.layer.3.`, `h.3.`, `block.3.`
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
_EMBEDDING = re.compile(r"embed", re.IGNORECASE)


def parameter_depths(model: nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every parameter (0 = embeddings, 1..L = layers, L+1 = above) and the layer count L."""
    layer_of = {}
    for name, _ in model.named_parameters():
        match = _LAYER.search(name)
        if match:
            layer_of[name] = int(match.group(1))
    if not layer_of:
        raise TextxferError(
            f"Could not find the transformer layers of {type(model).__name__} (no parameter names like "
            f"`encoder.layer.N.` or `layers.N.`), which layer-wise strategies need. Use `model.method=full` "
            f"without them, or a BERT/DistilBERT/RoBERTa/Llama-style model."
        )
    num_layers = max(layer_of.values()) + 1
    depths = {}
    for name, _ in model.named_parameters():
        if name in layer_of:
            depths[name] = layer_of[name] + 1
        elif _EMBEDDING.search(name):
            depths[name] = 0
        else:
            depths[name] = num_layers + 1
    return depths, num_layers


def freeze_bottom(model: nn.Module, k: int) -> int:
    """Freeze the embeddings and the bottom `k` layers; returns how many parameters were frozen."""
    depths, num_layers = parameter_depths(model)
    if k > num_layers:
        raise TextxferError(f"`model.freeze_layers={k}` but the model has {num_layers} layers; use 0..{num_layers} "
                            f"(the embeddings are always frozen when it is set).")
    frozen = 0
    for name, param in model.named_parameters():
        if depths[name] <= k:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def layerwise_groups(model: nn.Module, lr: float, decay: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups with lr * decay^(distance from the top); no weight decay on biases/norms."""
    depths, num_layers = parameter_depths(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = depths[name]
        no_decay = param.ndim < 2 or "norm" in name.lower()
        group = groups.setdefault((depth, no_decay), {
            "params": [], "weight_decay": 0.0 if no_decay else weight_decay,
            "lr": lr * decay ** (num_layers + 1 - depth)})
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


class GradualUnfreezing:
    """ULMFiT-style: at epoch e (1-based) the top e depth levels train; embeddings come last."""

    def __init__(self, model: nn.Module):
        self.depths, self.num_layers = parameter_depths(model)
        self.params = dict(model.named_parameters())
        self.trainable = {name for name, p in self.params.items() if p.requires_grad}

    def start_epoch(self, epoch: int) -> int:
        """Set requires_grad for `epoch`; returns the lowest depth that trains."""
        lowest = max(0, self.num_layers + 2 - epoch)
        for name, param in self.params.items():
            param.requires_grad_(name in self.trainable and self.depths[name] >= lowest)
        return lowest


class L2SP:
    """The L2-SP penalty towards the pretrained weights (the new head is left out: it has no start point)."""

    def __init__(self, model: nn.Module, strength: float):
        depths, num_layers = parameter_depths(model)
        self.strength = strength
        self.pairs = [(p, p.detach().clone()) for name, p in model.named_parameters()
                      if p.requires_grad and not is_head_parameter(name)]

    def __call__(self) -> torch.Tensor:
        return self.strength * sum(((p - start) ** 2).sum() for p, start in self.pairs)
