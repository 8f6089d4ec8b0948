"""Classification metrics with scikit-learn (no Hub download, unlike `evaluate.load`)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, average_precision_score, classification_report, confusion_matrix,
                             f1_score, precision_recall_curve)

PR_CURVE_POINTS = 101


def selection_metric(multi_label: bool) -> str:
    """The validation figure that picks the best epoch: micro-F1 for multi-label, else macro-F1."""
    return "micro_f1" if multi_label else "macro_f1"


def summary(y_true, y_pred, multi_label: bool = False) -> dict:
    """The figures compared between runs: accuracy and macro-F1, or for multi-label (multi-hot
    arrays) micro-F1, macro-F1 and subset accuracy (the whole label set right); plus the count."""
    if multi_label:
        y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
        return {
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "subset_accuracy": float(accuracy_score(y_true, y_pred)),
            "n": int(len(y_true)),
        }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }


def full_report(y_true, y_pred, labels: list[str], multi_label: bool = False, probs: np.ndarray | None = None,
                positive_label: str | None = None) -> dict:
    """`summary` plus per-class precision/recall/F1/support; single-label adds the confusion matrix
    (rows = true), and binary tasks with `probs` a precision-recall view of `positive_label`."""
    ids = list(range(len(labels)))
    if multi_label:
        y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    per_class = classification_report(y_true, y_pred, labels=None if multi_label else ids, target_names=labels,
                                      output_dict=True, zero_division=0)
    report = summary(y_true, y_pred, multi_label)
    report["per_class"] = {
        name: {k: (int(v) if k == "support" else float(v)) for k, v in per_class[name].items()} for name in labels
    }
    if not multi_label:
        report["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
        if probs is not None and positive_label is not None and len(labels) == 2:
            report["precision_recall"] = precision_recall_view(np.asarray(y_true), probs, labels.index(positive_label),
                                                               positive_label)
    return report


def precision_recall_view(y_true: np.ndarray, probs: np.ndarray, positive: int, name: str) -> dict:
    """Average precision and the precision-recall curve (at most 101 points) of the positive class."""
    is_positive = (y_true == positive).astype(int)
    scores = probs[:, positive]
    precision, recall, thresholds = precision_recall_curve(is_positive, scores)
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(PR_CURVE_POINTS, len(thresholds))).round().astype(int))
    return {
        "positive_label": name,
        "average_precision": float(average_precision_score(is_positive, scores)),
        "curve": {"precision": precision[keep].round(6).tolist(), "recall": recall[keep].round(6).tolist(),
                  "threshold": thresholds[keep].round(6).tolist()},
    }


def class_weights(label_ids: list[int], num_labels: int) -> np.ndarray:
    """'Balanced' weights n_samples / (n_classes * count), the scikit-learn convention."""
    counts = np.bincount(np.asarray(label_ids), minlength=num_labels).astype(float)
    weights = np.zeros(num_labels)
    present = counts > 0
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def positive_weights(multi_hot: list[list[int]]) -> np.ndarray:
    """Multi-label 'balanced' weights: negatives / positives per label (1 for a label never seen)."""
    targets = np.asarray(multi_hot, dtype=float)
    positives = targets.sum(0)
    negatives = len(targets) - positives
    return np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
