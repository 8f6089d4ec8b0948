"""Rows whose label looks wrong: out-of-fold probabilities from a linear head on frozen features, then
confident learning (Northcutt, Jiang and Chuang 2021, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 70).

Confident learning, as used here:
1. the threshold of class j is the mean probability of j over the rows labelled j (its self-confidence);
2. a row counts as confidently of class j when p(j) reaches j's threshold (of several such classes, the
   most probable); counting (given label, confident class) over the rows gives the confident joint;
3. the rows off its diagonal (confidently of a class other than their label) are the label issues,
   ranked by the probability of their given label, lowest (most likely wrong) first.
Written here rather than taken from cleanlab, which is AGPL-licensed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from ..training.heads import HEAD_L2_GRID, fit_linear_head
from ..training.losses import make_loss


@dataclass
class OutOfFold:
    """Each row's class probabilities from a head that never saw it, and the L2 strength used."""

    probabilities: np.ndarray
    l2: float
    accuracy: float


def out_of_fold_probabilities(features: torch.Tensor, labels: np.ndarray, num_classes: int, folds: int = 5,
                              seed: int = 0) -> OutOfFold:
    """k-fold (stratified, seeded) probabilities of a linear head fit by L-BFGS on the features. The L2
    strength is the one of `HEAD_L2_GRID` with the lowest log-loss on the first fold's held-out rows (the
    grid walked strongest first, each fit starting from the previous one); the other folds fit at that
    strength from zero, so no head starts from weights that saw its held-out rows."""
    labels = np.asarray(labels)
    x, y = features.float(), torch.as_tensor(labels, dtype=torch.long)
    with warnings.catch_warnings():  # a class smaller than `folds` simply misses some folds
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        parts = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), labels))
    loss_fn = make_loss(False)
    probs = np.zeros((len(y), num_classes), dtype=np.float32)
    fit_rows, held_rows = parts[0]
    head, best = _zero_head(x.shape[1], num_classes), None
    for l2 in HEAD_L2_GRID:
        fit_linear_head(head, x[fit_rows], y[fit_rows], loss_fn, l2)
        held = _softmax(head, x[held_rows])
        log_loss = float(-np.log(np.clip(held[np.arange(len(held_rows)), labels[held_rows]], 1e-12, None)).mean())
        if best is None or log_loss < best[0]:
            best = (log_loss, l2)
            probs[held_rows] = held
    l2 = best[1]
    for fit_rows, held_rows in parts[1:]:
        head = _zero_head(x.shape[1], num_classes)
        fit_linear_head(head, x[fit_rows], y[fit_rows], loss_fn, l2)
        probs[held_rows] = _softmax(head, x[held_rows])
    return OutOfFold(probs, l2, float((probs.argmax(1) == labels).mean()))


def _softmax(head: nn.Linear, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(head(x), dim=-1).numpy()


def _zero_head(dim: int, num_classes: int) -> nn.Linear:
    head = nn.Linear(dim, num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


@dataclass
class LabelIssues:
    """Rows flagged by confident learning, most likely wrong first, and what it estimated on the way."""

    rows: np.ndarray  # positions of the flagged rows
    suggested: np.ndarray  # the class each flagged row is confidently of
    given_probability: np.ndarray  # p(given label): the ranking key
    suggested_probability: np.ndarray
    thresholds: np.ndarray  # per class: mean self-confidence
    confident_joint: np.ndarray  # rows: given label, columns: confident class
    estimated_error_rate: float  # off-diagonal share of the calibrated confident joint


def confident_learning(probabilities: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """The label issues of rows with out-of-fold `probabilities` (n x k) and given `labels` (n)."""
    probs, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    n, k = probs.shape
    given = probs[np.arange(n), labels]
    counts = np.bincount(labels, minlength=k)
    # a class with no rows has no threshold: nothing is confidently of it
    thresholds = np.where(counts > 0, np.bincount(labels, weights=given, minlength=k) / np.maximum(counts, 1), np.inf)
    confident = probs >= thresholds[None, :]
    has_class = confident.any(axis=1)
    confident_class = np.where(confident, probs, -1.0).argmax(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[has_class], confident_class[has_class]), 1)
    flagged = np.flatnonzero(has_class & (confident_class != labels))
    flagged = flagged[np.argsort(given[flagged], kind="stable")]
    suggested = confident_class[flagged]
    return LabelIssues(flagged, suggested, given[flagged], probs[flagged, suggested], thresholds, joint,
                       _error_rate(joint, counts))


def _error_rate(joint: np.ndarray, counts: np.ndarray) -> float:
    """The share of wrong labels the confident joint implies once calibrated (each row scaled to its
    class's row count, as in the paper's eq. 2)."""
    rows = joint.sum(axis=1, keepdims=True)
    calibrated = np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)
    total = calibrated.sum()
    return float((total - np.trace(calibrated)) / total) if total else 0.0
