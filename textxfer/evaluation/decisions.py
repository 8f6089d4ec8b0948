"""From logits to decisions: per-document aggregation of windows, probabilities and thresholds.

The same functions serve validation during training, the test evaluation and `textxfer predict`,
so a run's reported metrics are exactly what its predictions give.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def aggregate(logits: torch.Tensor, labels: torch.Tensor | None, docs: torch.Tensor, how: str = "mean"):
    """Window logits -> one row per document, ordered by document index.

    `docs[i]` is the document of window `i`; documents without windows do not occur. Rows that
    are already one per document are simply put in document order. Returns (logits, labels).
    """
    unique, inverse = torch.unique(docs, return_inverse=True)
    if len(unique) == len(docs):  # one window per document: only reorder
        order = torch.empty_like(inverse)
        order[inverse] = torch.arange(len(docs))
        return logits[order], None if labels is None else labels[order]
    logits = logits.float()
    out = torch.zeros(len(unique), logits.shape[1], dtype=logits.dtype)
    if how == "max":
        out = out.fill_(float("-inf")).scatter_reduce(0, inverse[:, None].expand_as(logits), logits, "amax")
    else:
        out.index_add_(0, inverse, logits)
        out /= torch.bincount(inverse, minlength=len(unique)).unsqueeze(1).to(logits.dtype)
    doc_labels = None
    if labels is not None:  # every window carries its document's label
        first = torch.full((len(unique),), len(docs), dtype=torch.long).scatter_reduce(
            0, inverse, torch.arange(len(docs)), "amin")
        doc_labels = labels[first]
    return out, doc_labels


def probabilities(logits: torch.Tensor, multi_label: bool) -> np.ndarray:
    """Sigmoid per label (multi-label) or softmax over classes."""
    logits = logits.float()
    return (torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)).numpy()


def tune_label_thresholds(probs: np.ndarray, targets: np.ndarray) -> list[float]:
    """Per-label threshold with the best validation F1 (ties: closest to 0.5); 0.5 for labels never seen."""
    thresholds = []
    for j in range(probs.shape[1]):
        positives = targets[:, j] > 0.5
        if not positives.any():
            thresholds.append(0.5)
            continue
        best, best_f1 = 0.5, -1.0
        for t in sorted(THRESHOLD_GRID, key=lambda t: abs(t - 0.5)):
            predicted = probs[:, j] >= t
            tp = float((predicted & positives).sum())
            f1 = 2 * tp / max(predicted.sum() + positives.sum(), 1)
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(t), f1
        thresholds.append(best)
    return thresholds


def threshold_for_target(scores: np.ndarray, is_positive: np.ndarray, precision: float | None = None,
                         recall: float | None = None) -> tuple[float | None, dict]:
    """The decision threshold on the positive-class probability that meets a precision or recall target.

    For a precision target, the lowest threshold reaching it (the most recall); for a recall target,
    the highest threshold still reaching it (the most precision). Returns (threshold or None when the
    target cannot be met on this data, the precision/recall it gives on this data).
    """
    p, r, t = precision_recall_curve(is_positive.astype(int), scores)
    p, r = p[:-1], r[:-1]  # the last point has no threshold
    if precision is not None:
        ok = np.flatnonzero(p >= precision)
        i = ok[np.argmax(r[ok])] if len(ok) else None
    else:
        ok = np.flatnonzero(r >= recall)
        i = ok[np.argmax(p[ok])] if len(ok) else None
    if i is None:
        return None, {}
    return float(t[i]), {"precision": float(p[i]), "recall": float(r[i])}


def decide(probs: np.ndarray, multi_label: bool, thresholds: list[float] | None = None,
           positive_index: int | None = None, threshold: float | None = None) -> np.ndarray:
    """Predicted classes: a multi-hot matrix (multi-label), else class ids.

    Multi-label: label j is on when its probability reaches `thresholds[j]` (0.5 by default).
    Single-label: the most probable class, unless a binary `threshold` on the positive class is set.
    """
    if multi_label:
        cut = np.asarray(thresholds if thresholds is not None else [0.5] * probs.shape[1])
        return (probs >= cut).astype(int)
    if threshold is not None and positive_index is not None and probs.shape[1] == 2:
        return np.where(probs[:, positive_index] >= threshold, positive_index, 1 - positive_index)
    return probs.argmax(1)


def decide_by_rule(probs: np.ndarray, multi_label: bool, decision: dict, labels: list[str]) -> np.ndarray:
    """`decide` with a run's saved decision rule (its per-label thresholds, or its binary threshold)."""
    thresholds, positive = decision.get("thresholds"), decision.get("positive_label")
    return decide(probs, multi_label, thresholds=[thresholds[l] for l in labels] if thresholds else None,
                  positive_index=labels.index(positive) if positive else None, threshold=decision.get("threshold"))
