"""`textxfer compare`: what transfer buys on the user's own data, per label budget and strategy.

    textxfer compare RECIPE --strategies base,scratch,feature_extraction,full,lp_ft,lora --per-class 5,10,50,all --seeds 3

The recipe's validation rows (its validation file, or a stratified 10% of train held out once) and
test file stay fixed; each cell trains one strategy on a seeded, stratified subsample of the rest
with `per_class` examples of every class (`all`: everything). Each strategy uses its own default
epochs and learning rate. `base` is the quick baseline before any fine-tuning: a logistic
regression on frozen, mean-pooled backbone features, fit in seconds. `self_training` is
`feature_extraction` that also pseudo-labels the pool rows the cell leaves unlabeled
(`train.self_training_rounds`, 3 unless the recipe sets it; no cell at `all`, where none are left);
`noisy_student` is `self_training` whose kept head then teaches a fine-tuned student
(`train.student_epochs`, 1 unless the recipe sets it). The recipe's self-training keys apply to
those cells only, whatever the recipe's own `model.method`.

Writes into the recipe's `output_dir`: `comparison.json` (one record per run), `comparison.md`
(mean ± std per cell, best per budget in bold, gain over scratch, wall time) and
`learning_curve.png`. Finished cells are kept in `runs/` and skipped when the command runs again;
the reports cover every finished cell in the folder, so a later invocation that adds strategies or
budgets keeps the earlier ones in the table and the plot.
"""
from __future__ import annotations

import csv
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModel

from ..config import Recipe, load_recipe
from ..data.batching import PadCollator, TokenizedDataset, eval_loader, input_order, tokenize
from ..data.splits import load_splits, per_class_sample
from ..errors import TextxferError
from ..evaluation.report import plot_budget_curves
from ..fsutil import write_json
from ..outputs import OutputFolder
from ..log import get_logger
from ..methods import method_names
from ..models.embedded import resolve_model_path
from ..models.loading import build_tokenizer
from ..models.quiet import quiet_loading
from ..models.pooled import HeadConfig, PooledClassifier
from ..runs.folder import draw_safely
from ..training import tracking
from ..training.trainer import train

log = get_logger("compare")

# `self_training`: feature extraction plus self-training on the pool rows the cell does not label;
# `noisy_student`: the same, then a student fine-tuned on the self-trained head's pseudo-labels
SELF_TRAINING = ("self_training", "noisy_student")
STRATEGIES = ("base", *method_names(), *SELF_TRAINING)
# What the other strategies' cells (and the recipe's own check) get: self-training off.
SELF_TRAINING_OFF = ("train.self_training_rounds=0", "train.student_epochs=0")
# What a comparison folder holds (it is added to by later invocations, never replaced).
WORKSPACE = ("data", "runs", "comparison.json", "comparison.md", "learning_curve.png")


def parse_budgets(text: str) -> list[int | None]:
    """`5,10,all` -> [5, 10, None] (None: every training row)."""
    budgets = []
    for item in text.split(","):
        item = item.strip()
        if item == "all":
            budgets.append(None)
        elif item.isdigit() and int(item) > 0:
            budgets.append(int(item))
        else:
            raise TextxferError(f"`--per-class` takes positive integers or `all`, comma-separated; got {item!r}.")
    return budgets


def parse_strategies(text: str) -> list[str]:
    """Validate `--strategies`."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise TextxferError(f"Unknown strategy {', '.join(unknown) or '(none)'} in `--strategies`; choose from "
                            f"{', '.join(STRATEGIES)}.")
    return names


def subsample(labels: list[int], per_class: int | None, seed: int) -> list[int]:
    """Seeded, stratified: `per_class` row indices of every class (all of a smaller class), sorted."""
    return per_class_sample(labels, per_class, seed)


def compare(recipe_path: str, overrides: list[str], strategies: list[str], budgets: list[int | None],
            seeds: int) -> list[dict]:
    """Run every (strategy, budget, seed) cell not already done; write the reports; return the records."""
    base, self_training = _load_base(recipe_path, overrides, strategies)
    if base.data.multi_label:
        raise TextxferError("`textxfer compare` supports single-label recipes; multi-label runs can be compared "
                            "by training each recipe with `textxfer train`.")
    if base.data.text_pair_column:
        raise TextxferError("`textxfer compare` supports single-text recipes; `data.text_pair_column` is set.")
    if not base.data.test:
        raise TextxferError(f"`textxfer compare` evaluates every cell on the same test set: set `data.test` in "
                            f"{recipe_path} (or pass `data.test=FILE`).")
    root = Path(base.output_dir)
    d = base.data
    folder = OutputFolder(root, inputs=[recipe_path, d.train, d.validation, d.test, d.unlabeled], kind="comparison",
                          workspace_entries=WORKSPACE)
    with folder:
        folder.mark_workspace()
        return _compare(base, self_training, recipe_path, overrides, strategies, budgets, seeds, root)


@dataclass
class _Pool:
    """The recipe's rows every cell draws from, and where the cells' files go."""

    base: Recipe
    recipe_path: str
    overrides: list[str]
    self_training: object  # the train settings of the self-training cells
    texts: list[str]
    labels: list[int]
    names: list[str]
    test_texts: list[str]
    test_labels: list[int]
    root: Path
    features: dict | None = None  # frozen features for the `base` cells, computed once

    @property
    def data_dir(self) -> Path:
        return self.root / "data"


def _compare(base: Recipe, self_training, recipe_path: str, overrides: list[str], strategies: list[str],
             budgets: list[int | None], seeds: int, root: Path) -> list[dict]:
    splits = load_splits(base.data, base.train.seed)
    pool = _Pool(base, recipe_path, overrides, self_training, list(splits.train["text"]), list(splits.train["label"]),
                 splits.labels.labels, list(splits.test["text"]), list(splits.test["label"]), root)
    pool.data_dir.mkdir(parents=True, exist_ok=True)
    _write_rows(pool.data_dir / "validation.csv", list(splits.validation["text"]),
                [pool.names[i] for i in splits.validation["label"]])
    cells = [(s, b, seed) for b in budgets for seed in range(seeds) for s in strategies]
    records = _load_records(root)
    log.info(f"{len(cells)} runs: strategies {', '.join(strategies)} x per-class "
             f"{', '.join('all' if b is None else str(b) for b in budgets)} x {seeds} seed(s); "
             f"{len(pool.texts)} training rows in the pool, test file {base.data.test}")
    for k, (strategy, per_class, seed) in enumerate(cells, 1):
        key = _cell_key(strategy, per_class, seed)
        if _done(records, key):
            continue
        left = [c for c in cells[k - 1:] if not _done(records, _cell_key(*c))]
        log.info(f"run {k}/{len(cells)}: {strategy}, per class {key['per_class']}, seed {seed}; {time_left(records, left)}")
        started = time.perf_counter()
        outcome = _run_cell(pool, strategy, per_class, seed, key)
        if outcome is None:
            continue
        seconds = time.perf_counter() - started
        records.append({**key, **outcome, "wall_seconds": seconds})
        write_json(root / "comparison.json", records)
    # the reports cover every finished cell in the folder, also those of earlier invocations; columns
    # in the order the strategies first ran, so a later invocation does not reshuffle the table
    done_strategies = list(dict.fromkeys(r["strategy"] for r in records))
    done_budgets = {None if r["per_class"] == "all" else r["per_class"] for r in records}
    write_reports(root, records, done_strategies + [s for s in strategies if s not in done_strategies],
                  sorted(set(budgets) | done_budgets, key=lambda b: (b is None, b or 0)), len(pool.names))
    return records


def _run_cell(pool: _Pool, strategy: str, per_class: int | None, seed: int, key: dict) -> dict | None:
    """Train (or fit, for `base`) one cell; its test figures, or None when the cell does not apply."""
    rows = subsample(pool.labels, per_class, seed)
    if strategy in SELF_TRAINING and len(rows) == len(pool.texts):
        log.info(f"skipping {strategy} at per class {key['per_class']}: every pool row is labeled, none is left to "
                 f"pseudo-label")
        return None
    if strategy == "base":
        if pool.features is None:
            pool.features = _frozen_features(pool.base, pool.texts, pool.test_texts)
        accuracy, macro_f1 = _logistic_baseline(pool.features, pool.labels, rows, pool.test_labels, seed)
        return {"n_train": len(rows), "test_accuracy": accuracy, "test_macro_f1": macro_f1}
    tag = f"{key['per_class']}-seed{seed}"
    train_file = pool.data_dir / f"train-{tag}.csv"
    _write_rows(train_file, [pool.texts[i] for i in rows], [pool.names[pool.labels[i]] for i in rows])
    method, extra = strategy, list(SELF_TRAINING_OFF)
    if strategy in SELF_TRAINING:
        unlabeled_file = pool.data_dir / f"unlabeled-{tag}.csv"
        chosen = set(rows)
        _write_rows(unlabeled_file, [text for i, text in enumerate(pool.texts) if i not in chosen])
        method = "feature_extraction"
        students = (pool.self_training.student_epochs or 1) if strategy == "noisy_student" else 0
        extra = [f"data.unlabeled={unlabeled_file}", f"train.self_training_rounds={pool.self_training.self_training_rounds}",
                 f"train.student_epochs={students}"]
    # The recipe file's epochs/lr suit one method, so each cell starts from its method's defaults; what
    # the command line sets applies to every cell.
    cell = load_recipe(pool.recipe_path, ["train.epochs=null", "train.lr=null", *pool.overrides, *extra,
                                          f"model.method={method}", f"train.seed={seed}", f"data.train={train_file}",
                                          f"data.validation={pool.data_dir / 'validation.csv'}", "data.text_column=text",
                                          "data.label_column=label", f"output_dir={pool.root / 'runs' / f'{strategy}-{tag}'}",
                                          "overwrite=true"])  # a cell folder left by an interrupted compare
    with tracking.group(f"textxfer-compare-{pool.root.name}", f"{strategy}-{tag}"):  # train.report_to: a run per cell
        metrics = train(cell)
    return {"n_train": len(rows), "test_accuracy": metrics["test"]["accuracy"], "test_macro_f1": metrics["test"]["macro_f1"]}


def time_left(records: list[dict], cells: list[tuple]) -> str:
    """How long the `cells` still to run will take, from the measured time of each strategy at each
    budget (this invocation's cells and earlier ones'), or the same strategy at another budget scaled
    by its rows; says so when a strategy has not run yet, rather than guessing."""
    def seconds(strategy, per_class):
        key = "all" if per_class is None else per_class
        same = [r["wall_seconds"] for r in records if r["strategy"] == strategy and r["per_class"] == key]
        if same:
            return statistics.mean(same)
        other = [(r["wall_seconds"], r["n_train"], r["per_class"]) for r in records if r["strategy"] == strategy]
        if not other or per_class is None or any(p == "all" for _, _, p in other):
            return statistics.mean(s for s, _, _ in other) if other else None
        return statistics.mean(s * per_class / p for s, _, p in other)  # rows grow with the budget

    estimates = [seconds(strategy, per_class) for strategy, per_class, _ in cells]
    unknown = sorted({c[0] for c, e in zip(cells, estimates) if e is None})
    known = sum(e for e in estimates if e is not None)
    if not unknown:
        return f"about {known / 60:.0f} min left" if known >= 60 else f"about {known:.0f} s left"
    if known:
        return f"about {known / 60:.0f} min left for the strategies measured so far, and no estimate yet for " \
               f"{', '.join(unknown)} (not run yet)"
    return f"no time estimate yet: {', '.join(unknown)} not run yet"


def _load_base(recipe_path: str, overrides: list[str], strategies: list[str]):
    """The recipe, and the train settings of its self-training cells. The recipe's self-training keys
    (`train.self_training_rounds`, `train.student_epochs`, ...) configure the `self_training` and
    `noisy_student` cells only: the recipe itself is checked with them off (its own method may be
    `full`), and they are checked as the feature-extraction cells that use them will be."""
    base = load_recipe(recipe_path, [*overrides, *SELF_TRAINING_OFF])
    if not any(s in SELF_TRAINING for s in strategies):
        return base, base.train
    # each cell names its own unlabeled file (a placeholder stands in) and runs 3 rounds unless told
    as_cell = [*overrides, "model.method=feature_extraction", "data.unlabeled=pool"]
    rounds = load_recipe(recipe_path, [*as_cell, "train.student_epochs=0"]).train.self_training_rounds or 3
    return base, load_recipe(recipe_path, [*as_cell, f"train.self_training_rounds={rounds}"]).train


def _cell_key(strategy: str, per_class: int | None, seed: int) -> dict:
    return {"strategy": strategy, "per_class": "all" if per_class is None else per_class, "seed": seed}


def _done(records: list[dict], key: dict) -> bool:
    return any(all(r[f] == v for f, v in key.items()) for r in records)


def _write_rows(path: Path, texts: list[str], labels: list[str] | None = None) -> None:
    """A CSV with a `text` column (and `label` when labels are given), written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        if labels is None:
            writer.writerow(["text"])
            writer.writerows([text] for text in texts)
        else:
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels))
    tmp.replace(path)


def _load_records(root: Path) -> list[dict]:
    path = root / "comparison.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def _frozen_features(recipe: Recipe, pool: list[str], test: list[str]) -> dict:
    """Mean-pooled, normalised backbone features of the pool and the test texts, computed once."""
    tokenizer = build_tokenizer(recipe.model)
    with quiet_loading():
        backbone = AutoModel.from_pretrained(resolve_model_path(recipe.model.name), use_safetensors=True)
    model = PooledClassifier(backbone, HeadConfig(2, recipe.model.pooling))
    collate = PadCollator(tokenizer.pad_token_id, tokenizer.padding_side)
    out = {}
    for name, texts in (("pool", pool), ("test", test)):
        dataset = TokenizedDataset(tokenize(datasets.Dataset.from_dict({"text": texts}), tokenizer, recipe.data.max_length))
        loader, order = eval_loader(dataset, recipe.train.eval_batch_size, collate)
        chunks = [model.features(b["input_ids"], b["attention_mask"], b.get("token_type_ids")) for b in loader]
        out[name] = torch.cat(chunks)[input_order(order)].numpy()
    return out


def _logistic_baseline(features: dict, pool_labels: list[int], rows: list[int], test_labels: list[int], seed: int):

    clf = LogisticRegression(max_iter=2000, C=10.0, random_state=seed)
    clf.fit(features["pool"][rows], np.asarray(pool_labels)[rows])
    predicted = clf.predict(features["test"])
    return float(accuracy_score(test_labels, predicted)), float(f1_score(test_labels, predicted, average="macro"))


def write_reports(root: Path, records: list[dict], strategies: list[str], budgets: list[int | None], n_classes: int) -> None:
    """comparison.md and learning_curve.png from the records."""
    def cell(strategy, budget, field="test_accuracy"):
        key = "all" if budget is None else budget
        return [r[field] for r in records if r["strategy"] == strategy and r["per_class"] == key]

    lines = ["# textxfer compare", "",
             "Test accuracy, mean ± std over seeds (n = training rows used); best per row in **bold**; "
             "gain = best strategy minus `scratch`; time = mean wall seconds per run.", "",
             "| per class | n | " + " | ".join(f"`{s}`" for s in strategies) + " | gain over scratch | time (s) |",
             "|---|---:|" + "---:|" * len(strategies) + "---:|---|"]
    for budget in budgets:
        means = {s: statistics.mean(cell(s, budget)) for s in strategies if cell(s, budget)}
        if not means:
            continue
        best = max(means, key=means.get)
        cells = []
        for s in strategies:
            values = cell(s, budget)
            if not values:
                cells.append("–")
                continue
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            text = f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"
            cells.append(f"**{text}**" if s == best else text)
        n = statistics.mean(r["n_train"] for r in records if r["per_class"] == ("all" if budget is None else budget))
        gain = f"{100 * (means[best] - means['scratch']):+.1f}" if "scratch" in means else "–"
        times = " / ".join(f"{statistics.mean(cell(s, budget, 'wall_seconds')):.0f}" if cell(s, budget) else "–"
                           for s in strategies)
        lines.append(f"| {'all' if budget is None else budget} | {n:.0f} | " + " | ".join(cells) + f" | {gain} | {times} |")
    (root / "comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    series = {}
    for s in strategies:
        points = [(statistics.mean(r["n_train"] for r in records if r["strategy"] == s and
                                   r["per_class"] == ("all" if budget is None else budget)),
                   statistics.mean(cell(s, budget)), statistics.stdev(cell(s, budget)) if len(cell(s, budget)) > 1
                   else 0.0) for budget in budgets if cell(s, budget)]
        if points:
            series[s] = points
    draw_safely(root / "learning_curve.png", lambda path: plot_budget_curves(series, n_classes, path))
    log.info(f"wrote {root / 'comparison.md'}, {root / 'comparison.json'} and {root / 'learning_curve.png'}")
