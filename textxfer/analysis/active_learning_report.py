"""The active-learning simulation's report: `active_learning.md` (test accuracy per round, mean ± std over
seeds, per retrain choice and strategy, the best per row in bold and its gain over `random`) and
`active_learning.png` (accuracy against the number of labels, like `textxfer compare`'s learning curve)."""
from __future__ import annotations

import statistics
from pathlib import Path

from ..evaluation.report import plain_text, plt

_LINES = ("-", "--", ":", "-.")


def curves(records: list[dict], retrain: str, strategy: str) -> list[tuple[int, float, float, float, int]]:
    """Per round of the series of (`retrain`, `strategy`): (round, mean labels, mean test accuracy, its
    std over seeds, seeds)."""
    series = [r["points"] for r in records if r["retrain"] == retrain and r["strategy"] == strategy]
    out = []
    for round_ in sorted({p["round"] for points in series for p in points}):
        at = [p for points in series for p in points if p["round"] == round_]
        values = [p["test_accuracy"] for p in at]
        out.append((round_, statistics.mean(p["labels"] for p in at), statistics.mean(values),
                    statistics.stdev(values) if len(values) > 1 else 0.0, len(values)))
    return out


def _cell(values: tuple | None) -> str:
    return "–" if values is None else f"{100 * values[2]:.1f} ± {100 * values[3]:.1f}"


def markdown(records: list[dict], settings: dict, retrains: list[str], strategies: list[str]) -> str:
    """active_learning.md from the series records and the simulation's settings."""
    s = settings
    lines = ["# textxfer compare --active-learning", "",
             f"Recipe `{s['recipe']}`, model `{s['model']}`. Pool: {s['pool']} training rows, labels hidden from the "
             f"strategies; {s['validation']} validation rows (fixed: they choose the head's L2 strength and the "
             f"self-training round, and are never labeled from the pool); test: {s['test']} rows. Each series starts "
             f"from {s['start_per_class']} labeled rows per class ({s['start_labels']} labels, seeded) and labels "
             f"{s['batch']} more per round. Test accuracy (%), mean ± std over seeds; the best strategy per row in "
             f"**bold** (none on a tie); gain = the best minus `random`.", ""]
    for retrain in retrains:
        table = {strategy: {c[0]: c for c in curves(records, retrain, strategy)} for strategy in strategies}
        rounds = sorted({r for rows in table.values() for r in rows})
        if not rounds:
            continue
        lines += [f"## retrain: `{retrain}`", "",
                  "| round | labels | " + " | ".join(f"`{name}`" for name in strategies) + " | gain over random |",
                  "|---:|---:|" + "---:|" * len(strategies) + "---:|"]
        for round_ in rounds:
            row = {name: table[name].get(round_) for name in strategies}
            present = {name: c for name, c in row.items() if c is not None}
            best = max(present, key=lambda name: present[name][2])
            tied = sum(round(c[2], 6) == round(present[best][2], 6) for c in present.values()) > 1
            cells = [f"**{_cell(c)}**" if name == best and not tied else _cell(c) for name, c in row.items()]
            gain = (f"{100 * (present[best][2] - present['random'][2]):+.1f}" if "random" in present else "–")
            labels = statistics.mean(c[1] for c in present.values())
            lines.append(f"| {round_} | {labels:.0f} | " + " | ".join(cells) + f" | {gain} |")
        times = [f"`{name}` {statistics.mean(r['wall_seconds'] for r in records if r['retrain'] == retrain and r['strategy'] == name):.0f}"
                 for name in strategies if any(r["retrain"] == retrain and r["strategy"] == name for r in records)]
        seeds = sorted({r["seed"] for r in records if r["retrain"] == retrain})
        lines += ["", f"Seeds {', '.join(map(str, seeds))}; wall seconds per series: {', '.join(times)}.", ""]
    return "\n".join(lines)


@plain_text
def plot_active_learning(records: list[dict], retrains: list[str], strategies: list[str], n_classes: int,
                         path: str | Path, title: str) -> None:
    """Test accuracy (mean ± std over seeds) against the number of labels: a colour per strategy, a line
    style per retrain choice."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, retrain in enumerate(retrains):
        for k, strategy in enumerate(strategies):
            points = curves(records, retrain, strategy)
            if not points:
                continue
            _, xs, ys, errs, _ = zip(*points)
            label = strategy if len(retrains) == 1 else f"{strategy} ({retrain})"
            ax.errorbar(xs, [100 * y for y in ys], yerr=[100 * e for e in errs], marker="o", markersize=3.5,
                        capsize=2, linestyle=_LINES[j % len(_LINES)], color=colours[k % len(colours)], label=label)
    ax.set_xlabel(f"labeled training examples ({n_classes} classes)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
