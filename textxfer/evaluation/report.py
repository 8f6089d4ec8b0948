"""Pictures of a run: the confusion matrix and the learning curves.

Label names are user data: they reach the figures as plain text (matplotlib would read `$...$` as
math and fail on `credit $5_or_$10`), through `plain_text` around every plot.
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Text stays text: no math parsing of `$`, no LaTeX, whatever the user's matplotlib settings.
_PLAIN = {"text.parse_math": False, "text.usetex": False}


def plain_text(plot):
    """Run a plotting function with label names and titles drawn literally."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with plt.rc_context(_PLAIN):
            return plot(*args, **kwargs)
    return wrapper


@plain_text
def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix; the figure grows with the number of classes so 77+ stay readable."""
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    size = max(5.0, 0.22 * n + 3)
    font = 9 if n <= 20 else max(4.0, 9 - n / 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.92))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    if n <= 20:  # counts in the cells only where they fit
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=font,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@plain_text
def plot_learning_curves(history: list[dict], path: str | Path) -> None:
    """Training loss and validation scores (accuracy / F1) per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    if all("validation_loss" in h for h in history):
        left.plot(epochs, [h["validation_loss"] for h in history], marker="o", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    for key in ("accuracy", "micro_f1", "macro_f1", "subset_accuracy"):
        if f"validation_{key}" in history[0]:
            right.plot(epochs, [h[f"validation_{key}"] for h in history], marker="o",
                       label=f"validation {key.replace('_', '-')}")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@plain_text
def plot_precision_recall(view: dict, path: str | Path) -> None:
    """Precision-recall curve of the positive class of a binary task (from `metrics.precision_recall_view`)."""
    curve = view["curve"]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(curve["recall"], curve["precision"], marker=".")
    ax.set_xlabel(f"recall of {view['positive_label']}")
    ax.set_ylabel(f"precision of {view['positive_label']}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"test: average precision {view['average_precision']:.3f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@plain_text
def plot_label_scores(per_class: dict, thresholds: dict, path: str | Path, title: str) -> None:
    """Multi-label runs: precision, recall and F1 per label, with each label's decision threshold."""
    labels = list(per_class)
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.35 * len(labels) + 1.5)))
    for offset, key in zip((-0.27, 0, 0.27), ("precision", "recall", "f1-score")):
        ax.barh(y + offset, [per_class[l][key] for l in labels], height=0.25, label=key)
    names = [f"{l} (t={thresholds[l]:.2f})" if l in thresholds else l for l in labels]
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@plain_text
def plot_budget_curves(series: dict[str, list[tuple[float, float, float]]], n_classes: int, path: str | Path) -> None:
    """`textxfer compare`'s learning curve: test accuracy (mean and std over seeds) against labeled rows,
    one line per strategy; `series` maps a strategy to its (rows, mean, std) points."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy, points in series.items():
        xs, ys, errs = zip(*points)
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=strategy)
    ax.set_xscale("log")
    ax.set_xlabel(f"labeled training examples ({n_classes} classes)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
