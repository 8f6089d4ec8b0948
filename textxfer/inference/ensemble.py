"""An ensemble folder loaded for prediction: several finished runs on the same data, one prediction
(their probabilities averaged by the folder's rule; `textxfer ensemble` builds it, see
`textxfer.commands.ensemble`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import torch

from ..errors import TextxferError
from ..evaluation.calibration import calibrate
from ..evaluation.decisions import probabilities
from ..runs.info import RunInfo
from .classifier import Classifier

COMBINE_RULES = ("mean_log_prob", "mean_prob")
MEMBERS_DIR = "members"


def combine(member_probs: list[np.ndarray], rule: str) -> np.ndarray:
    """One probability matrix from the members' (same shape, same column order).

    `mean_log_prob` is the normalised geometric mean (a product of experts: a class any member
    rules out stays unlikely); `mean_prob` the arithmetic mean."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in member_probs])
    if rule == "mean_prob":
        return stacked.mean(0).astype(np.float32)
    if rule != "mean_log_prob":
        raise TextxferError(f"Unknown ensemble rule {rule!r}; use one of {', '.join(COMBINE_RULES)}.")
    log = np.log(np.clip(stacked, 1e-12, 1.0)).mean(0)
    log -= log.max(1, keepdims=True)
    probs = np.exp(log)
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


class EnsembleClassifier(Classifier):
    """An ensemble folder loaded for prediction: the members' probabilities, combined by its rule."""

    def __init__(self, members: list[Classifier], info: RunInfo):
        self.members = members
        self.info = info
        self.labels = info.labels
        self.multi_label = False
        self.decision = info.decision
        self.calibration = info.calibration
        self.run_dir = None

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None, info: RunInfo | None = None) -> "EnsembleClassifier":
        """Load an ensemble folder written by `textxfer ensemble` (each member on `device`)."""
        run_dir = Path(run_dir)
        info = info or RunInfo.read(run_dir)
        ensemble = cls([Classifier.load(run_dir / m["folder"], device) for m in info.members], info)
        ensemble.run_dir = run_dir
        return ensemble

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None, batch_size: int | None = None,
                      calibrated: bool = True) -> np.ndarray:
        """The combined probabilities (each member's calibrated, then the ensemble's own temperature),
        columns in `self.labels` order; `calibrated=False` combines the members' raw probabilities and
        applies no temperature."""
        return self.from_member_probs([m.predict_proba(texts, pairs, batch_size, calibrated) for m in self.members],
                                      calibrated)

    def from_member_probs(self, member_probs: list[np.ndarray], calibrated: bool = True) -> np.ndarray:
        """The ensemble's probabilities from each member's (in `self.members` order, each in its own
        label order): combined by the folder's rule, then (if `calibrated`) its own temperature."""
        combined = combine([in_order(p, m.labels, self.labels) for p, m in zip(member_probs, self.members)],
                           self.info.combine)
        return calibrate_combined(combined, self.calibration) if calibrated else combined


def calibrate_combined(probs: np.ndarray, calibration: dict | None) -> np.ndarray:
    """An ensemble's calibration applied to its combined probabilities (their logs act as logits)."""
    if not calibration:
        return probs
    logits = torch.from_numpy(np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))).float()
    return probabilities(calibrate(logits, calibration), False)


def in_order(probs: np.ndarray, member_labels: list[str], labels: list[str]) -> np.ndarray:
    """A member's probability columns rearranged into `labels` order."""
    return probs[:, [member_labels.index(label) for label in labels]]
