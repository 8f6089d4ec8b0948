"""Pictures of a run: the confusion matrix and the learning curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


def plot_learning_curves(history: list[dict], path: str | Path) -> None:
    """Training loss and validation accuracy / macro-F1 per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    if all("validation_loss" in h for h in history):
        left.plot(epochs, [h["validation_loss"] for h in history], marker="o", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [h["validation_accuracy"] for h in history], marker="o", label="validation accuracy")
    right.plot(epochs, [h["validation_macro_f1"] for h in history], marker="o", label="validation macro-F1")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
