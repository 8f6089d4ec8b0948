"""Classification metrics with scikit-learn (no Hub download, unlike `evaluate.load`)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


def summary(y_true, y_pred) -> dict:
    """Accuracy, macro-F1 and the number of examples: the figures compared between runs."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }


def full_report(y_true, y_pred, labels: list[str]) -> dict:
    """`summary` plus per-class precision/recall/F1/support and the confusion matrix (rows = true)."""
    ids = list(range(len(labels)))
    per_class = classification_report(y_true, y_pred, labels=ids, target_names=labels,
                                      output_dict=True, zero_division=0)
    report = summary(y_true, y_pred)
    report["per_class"] = {
        name: {k: (int(v) if k == "support" else float(v)) for k, v in per_class[name].items()} for name in labels
    }
    report["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return report


def class_weights(label_ids: list[int], num_labels: int) -> np.ndarray:
    """'Balanced' weights n_samples / (n_classes * count), the scikit-learn convention."""
    counts = np.bincount(np.asarray(label_ids), minlength=num_labels).astype(float)
    weights = np.zeros(num_labels)
    present = counts > 0
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights
