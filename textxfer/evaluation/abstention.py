"""Abstention: decide only when the model is sure enough, and what that costs (risk–coverage).

A single-label prediction's confidence is the calibrated probability of the class it decides. With
a minimum confidence, texts under it are left for a person (`abstained`); the share a threshold keeps
is its coverage. The risk–coverage view ranks texts by confidence and reports the accuracy of the
most confident share: the trade a team makes when it routes only what the model is sure of.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import TextxferError

COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7)
TARGET_ACCURACIES = (0.95, 0.99)
_CURVE_POINTS = 101


def check_min_confidence(value, where: str = "--min-confidence") -> float | None:
    """`value` as a probability in [0, 1], or one clear error."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise TextxferError(f"`{where}` must be a probability from 0 to 1 (a text whose top calibrated score is "
                            f"below it is left undecided), got {value!r}. For example `{where} 0.8`.")
    return number


def check_coverage(value, where: str = "--coverage") -> float:
    """`value` as a share of texts in (0, 1], or one clear error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 < number <= 1.0:
        raise TextxferError(f"`{where}` is the share of texts to decide, above 0 and at most 1, got {value!r}. "
                            f"For example `{where} 0.9` keeps the 90% the model is surest of.")
    return number


def decided_confidence(probs: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """The probability of the class each text is given (single-label)."""
    return np.asarray(probs)[np.arange(len(decided)), np.asarray(decided)]


def threshold_for_coverage(confidence: np.ndarray, coverage: float) -> float:
    """The highest confidence threshold that keeps at least `coverage` of these texts."""
    ranked = np.sort(np.asarray(confidence, dtype=np.float64))[::-1]
    if not len(ranked):
        raise TextxferError("There are no validation texts to choose a coverage threshold on.")
    k = min(max(math.ceil(coverage * len(ranked) - 1e-9), 1), len(ranked))
    return float(ranked[k - 1])


def accuracy_at_threshold(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    """(coverage, accuracy on the kept texts) when texts under `threshold` abstain."""
    kept = np.asarray(confidence) >= threshold
    coverage = float(kept.mean()) if len(kept) else 0.0
    accuracy = float(np.asarray(correct)[kept].mean()) if kept.any() else float("nan")
    return coverage, accuracy


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Accuracy of the most confident share of texts, at the standard coverages and as a curve; and the
    largest coverage whose accuracy reaches each target (None when even the surest text misses it)."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    n = len(confidence)
    if not n:
        return {"n": 0}
    order = np.argsort(-confidence, kind="stable")
    cumulative = np.cumsum(correct[order]) / np.arange(1, n + 1)  # accuracy of the top-k, k = 1..n
    at = {}
    for c in COVERAGES:
        k = min(max(math.ceil(c * n - 1e-9), 1), n)
        at[f"{c:g}"] = {"accuracy": float(cumulative[k - 1]), "threshold": float(confidence[order][k - 1]),
                        "kept": int(k)}
    reach = {}
    for target in TARGET_ACCURACIES:
        ok = np.flatnonzero(cumulative >= target - 1e-12)
        reach[f"{target:g}"] = (None if not len(ok) else
                                {"coverage": float((ok[-1] + 1) / n), "threshold": float(confidence[order][ok[-1]])})
    keep = np.unique(np.linspace(0, n - 1, min(_CURVE_POINTS, n)).round().astype(int))
    return {"n": int(n), "accuracy_at_coverage": at, "coverage_at_accuracy": reach,
            "area_under_risk_coverage": float(np.mean(1 - cumulative)),
            "curve": {"coverage": ((keep + 1) / n).round(6).tolist(), "accuracy": cumulative[keep].round(6).tolist()}}


def thresholds_on(view: dict, confidence: np.ndarray, correct: np.ndarray) -> dict:
    """What the thresholds one split's risk-coverage `view` chose for each coverage give on another
    split (test): the coverage and accuracy they reach there."""
    out = {}
    for coverage, chosen in view.get("accuracy_at_coverage", {}).items():
        kept = np.asarray(confidence) >= chosen["threshold"]
        out[coverage] = {"threshold": chosen["threshold"], "test_coverage": float(kept.mean()) if len(kept) else 0.0,
                         "test_accuracy": float(np.asarray(correct)[kept].mean()) if kept.any() else None}
    return out
