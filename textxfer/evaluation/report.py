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
from matplotlib.ticker import MaxNLocator  # noqa: E402

# Text stays text: no math parsing of `$`, no LaTeX, whatever the user's matplotlib settings.
_PLAIN = {"text.parse_math": False, "text.usetex": False}


def plain_text(plot):
    """Run a plotting function with label names and titles drawn literally."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with plt.rc_context(_PLAIN):
            return plot(*args, **kwargs)
    return wrapper


# Confusion matrices past this many classes get no counts in the cells, and a panel of the most
# confused pairs under them (a 77x77 grid of colours alone does not say which mistakes matter).
CELL_COUNTS_UP_TO = 25
TOP_PAIRS = 15


def _label_font(n: int) -> float:
    """Tick label size (points) for n classes: as large as still fits one label per cell."""
    return 9.0 if n <= 20 else 7.0 if n <= 50 else 5.5 if n <= 100 else 4.5


@plain_text
def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix, sized from the number and length of the labels so that 2 to 150+
    classes stay legible; counts in the cells up to CELL_COUNTS_UP_TO classes, and past that the most
    confused (true -> predicted) pairs in a panel below. Nothing is clipped (tight bounding box)."""
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    font = _label_font(n)
    cell = max(0.42 if n <= CELL_COUNTS_UP_TO else 0.0, font * 2.0 / 72)  # inches per row and column
    label_room = max(len(label) for label in labels) * font * 0.62 / 72 + 0.3  # the longest label, in inches
    side = max(n * cell, 2.6)
    pairs = _confused_pairs(counts, labels) if n > CELL_COUNTS_UP_TO else []
    pairs_room = 0.28 * len(pairs) + 1.0 if pairs else 0.0
    fig = plt.figure(figsize=(side + label_room + 1.6, side + label_room + 0.8 + pairs_room), layout="constrained")
    grid = fig.add_gridspec(2 if pairs else 1, 1, height_ratios=[side + label_room, pairs_room] if pairs else [1])
    ax = fig.add_subplot(grid[0])
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    upright = n <= 8 and max(len(label) for label in labels) <= 10
    ax.set_xticks(range(n), labels, rotation=0 if upright else 90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("predicted label", fontsize=10)
    ax.set_ylabel("true label", fontsize=10)
    ax.set_title(title, fontsize=11, pad=10)
    if n <= CELL_COUNTS_UP_TO:
        number_font = min(9.0, cell * 72 / 2.6)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=number_font,
                            color="white" if rates[i, j] > 0.5 else "black")
    bar = fig.colorbar(image, ax=ax, fraction=0.046 if n > 8 else 0.08, pad=0.02)
    bar.set_label("share of the true class", fontsize=9)
    if pairs:
        _plot_pairs(fig.add_subplot(grid[1]), pairs)
    fig.savefig(path, dpi=110 if n <= 50 else 130, bbox_inches="tight", pad_inches=0.2)
    plt.close(fig)


def _confused_pairs(counts: np.ndarray, labels: list[str]) -> list[tuple[str, int, float]]:
    """The TOP_PAIRS largest off-diagonal cells: ("true -> predicted", count, share of the true class)."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    totals = np.maximum(counts.sum(axis=1), 1)
    pairs = []
    for flat in np.argsort(off, axis=None, kind="stable")[::-1][:TOP_PAIRS]:
        i, j = divmod(int(flat), counts.shape[1])
        if off[i, j] <= 0:
            break
        pairs.append((f"{labels[i]} -> {labels[j]}", int(off[i, j]), off[i, j] / totals[i]))
    return pairs


def _plot_pairs(ax, pairs: list[tuple[str, int, float]]) -> None:
    y = np.arange(len(pairs))
    ax.barh(y, [p[1] for p in pairs], color="#c0504d")
    ax.set_yticks(y, [p[0] for p in pairs], fontsize=8)
    ax.invert_yaxis()
    for k, (_, count, share) in enumerate(pairs):
        ax.text(count, k, f" {count} ({share:.0%} of the true class)", va="center", fontsize=7)
    ax.set_xlabel("test rows", fontsize=9)
    ax.set_title(f"the {len(pairs)} most confused pairs (true -> predicted)", fontsize=10)
    ax.margins(x=0.3)


@plain_text
def plot_learning_curves(history: list[dict], path: str | Path) -> None:
    """Training loss and validation scores per epoch (per L2 strength for an L-BFGS head)."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    if all("validation_loss" in h for h in history):
        left.plot(epochs, [h["validation_loss"] for h in history], marker="o", label="validation loss")
    left.set_ylabel("loss")
    left.set_title("loss")
    for key in ("accuracy", "micro_f1", "macro_f1", "subset_accuracy"):
        if f"validation_{key}" in history[0]:
            right.plot(epochs, [h[f"validation_{key}"] for h in history], marker="o",
                       label=f"validation {key.replace('_', '-')}")
    right.set_ylabel("score")
    right.set_ylim(0, 1.02)
    right.set_title("validation scores")
    by_l2 = all("head_l2" in h for h in history) and len(history) <= 12
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if by_l2:  # an L-BFGS head: one fit per L2 strength, not epochs
            ax.set_xticks(epochs, [f"{h['head_l2']:g}" for h in history])
            ax.set_xlabel("L2 strength of the head (one L-BFGS fit each)")
        else:
            ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    best = max(history, key=lambda h: h.get("validation_macro_f1", h.get("validation_micro_f1", 0)))["epoch"]
    fig.suptitle(f"training: {len(history)} {'fits' if by_l2 else 'epochs'}, best on validation: "
                 f"{'fit' if by_l2 else 'epoch'} {best}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
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


@plain_text
def plot_reliability(before: list[dict], after: list[dict] | None, path: str | Path, title: str) -> None:
    """Reliability diagram: per confidence bin, the share that came true against the mean confidence
    (the diagonal is perfect calibration), before and after calibration, with the bin counts below."""
    fig, (ax, counts_ax) = plt.subplots(2, 1, figsize=(5.6, 6.4), height_ratios=[3, 1], sharex=True,
                                        layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    width = 1 / len(before)
    centers = np.array([(row["low"] + row["high"]) / 2 for row in before])
    series = [("raw softmax", before, "#d62728")] + ([("calibrated", after, "#1f77b4")] if after else [])
    for name, table, color in series:
        used = [row for row in table if row["count"]]
        ax.plot([r["confidence"] for r in used], [r["accuracy"] for r in used], marker="o", markersize=4,
                color=color, label=name)
    for k, (name, table, color) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width / len(series)
        counts_ax.bar(centers + offset, [row["count"] for row in table], width=width / len(series), color=color,
                      alpha=0.8, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy (share right)", title=title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    counts_ax.set(xlabel="confidence (bin of the top score)", ylabel="texts per bin")
    counts_ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


@plain_text
def plot_risk_coverage(curves: dict[str, dict], path: str | Path, title: str) -> None:
    """Accuracy of the most confident share of texts against that share (coverage), one line per
    split or model; the standard coverages marked."""
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    for name, view in curves.items():
        ax.plot(view["curve"]["coverage"], view["curve"]["accuracy"], label=name, linewidth=1.6)
        marks = view["accuracy_at_coverage"]
        ax.scatter([float(c) for c in marks], [m["accuracy"] for m in marks.values()], s=14)
    ax.set(xlabel="coverage (share of texts decided, most confident first)", ylabel="accuracy on the decided texts",
           xlim=(0, 1.01), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


@plain_text
def plot_group_accuracy(view: dict, path: str | Path, title: str, overall: float | None = None) -> None:
    """Results by group (`evaluation.slices.group_metrics`): accuracy per group as horizontal bars with
    each group's row count, the worst group in red, small groups pale, the whole split's accuracy dashed."""
    by_group, worst = view["by_group"], view.get("worst_group")
    names = list(by_group)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7.5, max(2.4, 0.32 * len(names) + 1.4)), layout="constrained")
    colors = [matplotlib.colors.to_rgba("#d62728" if g == worst else "#1f77b4", 0.45 if by_group[g]["small"] else 0.9)
              for g in names]
    ax.barh(y, [by_group[g]["accuracy"] for g in names], color=colors, height=0.7)
    for k, g in enumerate(names):
        figures = by_group[g]
        ax.text(min(figures["accuracy"], 1.0) + 0.01, k, f"{figures['accuracy']:.3f}  (n={figures['count']:,}"
                + (", small" if figures["small"] else "") + (", worst" if g == worst else "") + ")",
                va="center", fontsize=8)
    if overall is not None:
        ax.axvline(overall, color="0.4", linestyle="--", linewidth=1, label=f"whole set {overall:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, names, fontsize=8 if len(names) <= 30 else 6)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.3), xlabel="accuracy", title=title)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
