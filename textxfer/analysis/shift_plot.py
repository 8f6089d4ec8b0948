"""The picture of a shift check: how well old and new texts are told apart, and which predicted labels
grew or shrank."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..evaluation.report import plain_text, plt

SHOWN_LABELS = 15


@plain_text
def plot_shift(scores: np.ndarray, n_old: int, change: dict[str, float], title: str, path: str | Path) -> None:
    """Left: the two-sample classifier's out-of-fold P(new) for old and new texts (overlapping: no shift).
    Right: the labels whose predicted share changed most against the training labels, in points."""
    shown = sorted(change, key=lambda label: -abs(change[label]))[:SHOWN_LABELS][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.3 * len(shown) + 1.5)), layout="constrained")
    bins = np.linspace(0, 1, 31)
    left.hist(scores[:n_old], bins=bins, alpha=0.6, density=True, label="training texts")
    left.hist(scores[n_old:], bins=bins, alpha=0.6, density=True, label="new texts")
    left.set_xlabel("P(new) from the two-sample classifier (out of fold)")
    left.set_ylabel("density")
    left.legend()
    left.set_title("old vs new texts")
    values = [100 * change[label] for label in shown]
    right.barh(range(len(shown)), values, color=["tab:green" if v > 0 else "tab:red" for v in values])
    right.set_yticks(range(len(shown)), shown, fontsize=8)
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel("predicted share on new texts minus share in training labels (points)")
    right.set_title("labels that grew or shrank")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
