"""Results by group (`data.group_column`): how the model does on each channel, language or customer tier.

One overall accuracy can hide a group the model serves badly. `group_metrics` scores each group of
rows on its own with the measures the whole split is scored with (`metrics.summary`: accuracy and
macro-F1, or for multi-label subset accuracy and macro-F1 over the labels; the 15-bin ECE of
`calibration.calibration_metrics`), and names the worst group: the lowest accuracy, ties broken by
macro-F1. A group of fewer than SMALL_GROUP rows is reported but flagged `small`, and is named the
worst only when every group is small: one or two rows say little.
"""
from __future__ import annotations

import numpy as np

from ..data.groups import MISSING
from .calibration import calibration_metrics
from .metrics import summary

SMALL_GROUP = 5  # fewer rows than this: reported, flagged `small`, not named the worst


def group_metrics(groups, y_true, y_pred, probs, multi_label: bool) -> dict:
    """Per group of rows: `count`, `accuracy` (multi-label: subset accuracy), `macro_f1` (single-label: over
    the classes the group's rows have or are given; multi-label: over all labels, and `micro_f1`), `ece`
    (15 bins, of `probs`) and `small`; groups in name order, `(missing)` last.

    `groups` holds one group name per row; `y_true`/`y_pred` class ids (multi-label: multi-hot rows);
    `probs` the (calibrated) probabilities. Returns {"by_group": {name: figures}, "worst_group": name,
    "small_below": SMALL_GROUP}."""
    groups = np.asarray([str(g) for g in groups], dtype=object)
    y_true, y_pred, probs = np.asarray(y_true), np.asarray(y_pred), np.asarray(probs, dtype=np.float64)
    if not (len(groups) == len(y_true) == len(y_pred) == len(probs)):
        raise ValueError(f"one group per row: {len(groups)} groups for {len(y_true)} labels, {len(y_pred)} "
                         f"predictions and {len(probs)} probability rows")
    by_group = {}
    for name in sorted(set(groups), key=lambda g: (g == MISSING, g)):
        rows = np.flatnonzero(groups == name)
        scores = summary(y_true[rows], y_pred[rows], multi_label)
        figures = {"count": int(len(rows)),
                   "accuracy": scores["subset_accuracy" if multi_label else "accuracy"],
                   "macro_f1": scores["macro_f1"],
                   **({"micro_f1": scores["micro_f1"]} if multi_label else {}),
                   "ece": calibration_metrics(probs[rows], y_true[rows], multi_label)["ece"],
                   "small": bool(len(rows) < SMALL_GROUP)}
        by_group[name] = figures
    return {"by_group": by_group, "worst_group": worst_group(by_group), "small_below": SMALL_GROUP}


def worst_group(by_group: dict) -> str | None:
    """The group with the lowest accuracy (then the lowest macro-F1, then the name), among the groups that
    are not small when there are any."""
    if not by_group:
        return None
    candidates = [g for g, f in by_group.items() if not f["small"]] or list(by_group)
    return min(candidates, key=lambda g: (by_group[g]["accuracy"], by_group[g]["macro_f1"], g))


def card_section(metrics: dict, image: str | None = None) -> str | None:
    """The model card's "Results by group" table (test, else validation) with the worst group named, and
    `image` (the bar plot) under it; None when the run has no figures per group."""
    split = next((s for s in ("test", "validation") if (metrics.get(s) or {}).get("groups")), None)
    if split is None:
        return None
    view = metrics[split]["groups"]
    by_group, worst = view.get("by_group") or {}, view.get("worst_group")
    if not by_group:
        return None
    accuracy = "subset accuracy" if any("micro_f1" in f for f in by_group.values()) else "accuracy"
    lines = ["## Results by group", "",
             f"The {split} set by `{view.get('column', 'group')}` (`data.group_column`): {len(by_group)} group(s).", "",
             f"| group | rows | {accuracy} | macro-F1 | ECE (15 bins) |", "|---|---:|---:|---:|---:|"]
    for name, f in by_group.items():
        mark = " (worst)" if name == worst else " (small)" if f["small"] else ""
        lines.append(f"| {_cell(name)}{mark} | {f['count']:,} | {f['accuracy']:.4f} | {f['macro_f1']:.4f} "
                     f"| {f['ece']:.4f} |")
    if worst is not None:
        figures = by_group[worst]
        overall = (metrics[split] or {}).get("subset_accuracy" if accuracy != "accuracy" else "accuracy")
        against = f", against {overall:.4f} on the whole {split} set" if isinstance(overall, (int, float)) else ""
        lines += ["", f"Worst group: {_cell(worst)}, {accuracy} {figures['accuracy']:.4f} on {figures['count']:,} rows"
                      f"{against}. Groups of fewer than {view.get('small_below', SMALL_GROUP)} rows are marked small: "
                      f"they are named the worst only when every group is small."]
    if image:
        lines += ["", f"![{accuracy.capitalize()} by group on the {split} set]({image})"]
    return "\n".join(lines)


def _cell(name: str) -> str:
    """A group name as inline code in a markdown table cell (a `|` would end the cell)."""
    return "`" + str(name).replace("`", "'").replace("|", "\\|") + "`"
