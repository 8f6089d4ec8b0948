"""What a fit learned, and the weights to go back to: the best epoch on validation, tracked one way
everywhere (the fine-tuning loop, the L-BFGS head's L2 grid, self-training rounds, noisy students)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class FitResult:
    """Per-epoch history, the best epoch on validation (with its document logits and labels), and
    throughput. `record` adds an epoch; `absorb` appends a later fit (a refit, a student)."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -1.0
    stale: int = 0  # epochs since the best one (early stopping)
    samples: int = 0
    seconds: float = 0.0
    best_validation_logits: torch.Tensor | None = None  # per document, at the best epoch
    best_validation_labels: torch.Tensor | None = None
    timings: dict = field(default_factory=dict)  # named phases of the fit, seconds

    def record(self, entry: dict, score: float, logits: torch.Tensor, labels: torch.Tensor) -> bool:
        """Append an epoch's entry; it becomes the best when its score is strictly higher (ties keep
        the earlier one). Returns whether it did."""
        self.history.append(entry)
        if score > self.best_score:
            self.best_epoch, self.best_score, self.stale = len(self.history), score, 0
            self.best_validation_logits, self.best_validation_labels = logits, labels
            return True
        self.stale += 1
        return False

    def absorb(self, later: "FitResult") -> bool:
        """Append a later fit's epochs (renumbered) and time; take its best epoch and validation outputs
        when strictly better. Returns whether it was better."""
        offset = len(self.history)
        for entry in later.history:
            entry["epoch"] += offset
        self.history += later.history
        self.seconds += later.seconds
        self.samples += later.samples
        if later.best_score <= self.best_score:
            return False
        self.best_epoch, self.best_score = later.best_epoch + offset, later.best_score
        self.best_validation_logits, self.best_validation_labels = later.best_validation_logits, later.best_validation_labels
        return True

    def state(self) -> dict:
        """The JSON-ready part, for a checkpoint."""
        return {"history": self.history, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "samples": self.samples, "seconds": self.seconds, "stale": self.stale}

    @classmethod
    def from_state(cls, state: dict, validation: tuple | None) -> "FitResult":
        result = cls(history=state["history"], best_epoch=state["best_epoch"], best_score=state["best_score"],
                     samples=state["samples"], seconds=state["seconds"], stale=state["stale"])
        if validation is not None:
            result.best_validation_logits, result.best_validation_labels = validation
        return result


def trainable_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the weights that train (all of them, or just adapters and head): only they change."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def all_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of every parameter (a noisy student trains the backbone too)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}


@torch.no_grad()
def restore(model: nn.Module, snapshot: dict[str, torch.Tensor] | None) -> None:
    """Put the snapshot's weights back (nothing to do without one)."""
    if not snapshot:
        return
    for name, param in model.named_parameters():
        if name in snapshot:
            param.copy_(snapshot[name])
