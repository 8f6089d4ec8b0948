"""`textxfer compare RECIPE --active-learning`: what active learning buys on the user's own labeled data.

    textxfer compare recipes/banking77_active_learning.yaml --active-learning --strategies random,margin,margin_kmeans \\
        --start-per-class 2 --batch 77 --rounds 8 --seeds 3 --retrain feature_extraction,self_training

Hides the labels of the recipe's training rows (less its validation rows), starts each series from a seeded
few per class, and each round retrains, scores the test file and labels the batch the strategy picks
(see `textxfer.analysis.active_learning_simulation`). Writes into `OUTPUT_DIR/active_learning/`:
`active_learning.json` (every series, round by round), `active_learning.md` (mean ± std per round and
strategy) and `active_learning.png`. Finished series are kept and skipped when the command runs again,
so a later invocation can add strategies, seeds or retrain choices.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..analysis.active_learning import Retrain, parse_retrain, parse_strategies  # noqa: F401 (the CLI's parsers)
from ..analysis.active_learning_report import markdown, plot_active_learning
from ..analysis.active_learning_simulation import SELF_TRAINING_OFF, Setup, series_key, simulate
from ..config import Recipe, load_recipe
from ..data.splits import load_splits
from ..errors import TextxferError
from ..fsutil import write_json
from ..log import get_logger
from ..outputs import OutputFolder
from ..runs.folder import draw_safely

log = get_logger("compare")
FOLDER = "active_learning"
WORKSPACE = ("data", "runs", "active_learning.json", "active_learning.md", "active_learning.png")


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise TextxferError(f"`{flag}` must be a positive integer; got {value}.")


def _recipes(recipe_path: str, overrides: list[str], retrains: list[Retrain]) -> tuple[Recipe, Recipe]:
    """The recipe (self-training off) and the recipe of self-training retrains: a feature-extraction head
    self-trained for the recipe's `train.self_training_rounds` (3 unless it sets them), no student."""
    base = load_recipe(recipe_path, [*overrides, *SELF_TRAINING_OFF])
    if not any(r.kind == "self_training" for r in retrains):
        return base, base
    as_head = [*overrides, "model.method=feature_extraction", "data.unlabeled=pool", "train.student_epochs=0"]
    rounds = load_recipe(recipe_path, as_head).train.self_training_rounds or 3
    return base, load_recipe(recipe_path, [*as_head, f"train.self_training_rounds={rounds}"])


def _check(base: Recipe, recipe_path: str) -> None:
    if base.data.multi_label:
        raise TextxferError("`textxfer compare --active-learning` simulates single-label tasks; this recipe sets "
                            "`data.multi_label`.")
    if base.data.text_pair_column:
        raise TextxferError("`textxfer compare --active-learning` supports single-text recipes; "
                            "`data.text_pair_column` is set.")
    if not base.data.test:
        raise TextxferError(f"The active-learning simulation scores every round on the same test set: set `data.test` "
                            f"in {recipe_path} (or pass `data.test=FILE`).")


def simulate_command(recipe_path: str, overrides: list[str], strategies: list[str], seeds: int, start_per_class: int,
                     batch: int | None, rounds: int, retrains: list[Retrain]) -> list[dict]:
    """Run every (retrain, seed, strategy) series not already done; write the reports; return the records
    of this invocation's settings."""
    for value, flag in ((seeds, "--seeds"), (start_per_class, "--start-per-class"), (batch, "--batch"),
                        (rounds, "--rounds")):
        _positive(value, flag)
    base, self_training = _recipes(recipe_path, overrides, retrains)
    _check(base, recipe_path)
    d = base.data
    root = Path(base.output_dir) / FOLDER
    folder = OutputFolder(root, inputs=[recipe_path, d.train, d.validation, d.test], kind="active-learning simulation",
                          setting="output_dir (+ /active_learning)", workspace_entries=WORKSPACE)
    started = time.perf_counter()
    with folder:
        folder.mark_workspace()
        splits = load_splits(d, base.train.seed)
        n_classes = len(splits.labels)
        start_labels = sum(min(start_per_class, n) for n in _class_counts(splits))
        if start_labels >= len(splits.train):
            raise TextxferError(f"{start_per_class} labeled rows per class take all {len(splits.train)} pool rows, "
                                f"leaving nothing to select. Lower `--start-per-class`.")
        setup = Setup(base, self_training, recipe_path, list(overrides), splits, start_per_class, batch or n_classes,
                      rounds, root)
        path = root / "active_learning.json"
        records = json.loads(path.read_text(encoding="utf-8"))["series"] if path.is_file() else []
        settings = {"recipe": str(recipe_path), "model": base.model.name, "pool": len(splits.train),
                    "validation": len(splits.validation), "test": len(splits.test), "classes": n_classes,
                    "start_per_class": start_per_class, "start_labels": start_labels, "batch": setup.batch,
                    "rounds": rounds}
        log.info(f"active learning: {len(retrains)} retrain choice(s) x {len(strategies)} strategies x {seeds} seed(s); "
                 f"{start_labels} labels to start, {setup.batch} per round, {rounds} rounds; pool of "
                 f"{len(splits.train)} rows, test file {d.test}")
        simulate(setup, retrains, strategies, seeds, records,
                 lambda rs: write_json(path, {"settings": settings, "series": rs}))
        write_json(path, {"settings": settings, "series": records})
        shown = _shown(records, setup)
        names = list(dict.fromkeys([*(r["strategy"] for r in shown), *strategies]))
        retrain_names = list(dict.fromkeys([*(r["retrain"] for r in shown), *(r.name for r in retrains)]))
        (root / "active_learning.md").write_text(markdown(shown, settings, retrain_names, names), encoding="utf-8")
        title = f"active learning on {Path(d.train).name} ({base.model.name}; from {start_labels} labels, +{setup.batch} per round)"
        draw_safely(root / "active_learning.png",
                    lambda p: plot_active_learning(shown, retrain_names, names, n_classes, p, title))
    log.info(f"wrote {root / 'active_learning.md'}, {path.name} and active_learning.png ({time.perf_counter() - started:.0f} s)")
    return [r for r in shown if r["strategy"] in strategies
            and r["retrain"] in {x.name for x in retrains} and r["seed"] < seeds]


def _class_counts(splits) -> list[int]:
    counts: dict[int, int] = {}
    for label in splits.train["label"]:
        counts[label] = counts.get(label, 0) + 1
    return list(counts.values())


def _shown(records: list[dict], setup: Setup) -> list[dict]:
    """The series of this folder run with this invocation's start, batch and model (any strategy, seed or
    retrain choice), cut to this invocation's rounds."""
    like = series_key(Retrain("head", ""), "", 0, setup)
    same = [r for r in records if all(r.get(k) == like[k] for k in ("start_per_class", "batch", "model"))]
    return [{**r, "points": r["points"][:setup.rounds + 1]} for r in same]
