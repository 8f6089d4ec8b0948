"""The active-learning simulation of `textxfer compare RECIPE --active-learning`: what a strategy buys on
the user's own labeled data.

The recipe's training rows (less its validation rows) are the pool, their labels hidden from the
strategies. Each series (retrain choice, strategy, seed) starts from a seeded `start_per_class` rows of
every class, then for `rounds` rounds: retrain, score the test file, rank the still-unlabeled pool rows
by the strategy and reveal the labels of the first `batch`. Test accuracy against the number of labels is
the curve. Validation rows (fixed, as in `textxfer compare`) choose the head's L2 strength and the
self-training round; they never join the pool.

Retraining (`Retrain.kind`): `head` fits a linear head by L-BFGS on frozen features (the backbone runs
once over the pool, validation and test texts; `training.heads`), `self_training` self-trains that head
on the pool rows not yet labeled (`training.self_training`), and `run` trains a real run of a method per
round through the normal train path (its folder is removed once its predictions are taken, but for the
last round's). Every draw is seeded, so a rerun gives the same numbers.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import Recipe, load_recipe
from ..data.splits import Splits
from ..data.tables_out import write_table
from ..evaluation import metrics
from ..inference import load_classifier
from ..log import ROOT, get_logger
from ..methods import get_method
from ..outputs import manifest
from ..training.context import Run
from ..training.heads import CachedFeatures, fit_head_lbfgs
from ..training.losses import make_loss
from ..training.evaluate import validation_scores
from ..training.self_training import self_train
from ..training.trainer import train
from .active_learning import NEEDS_EMBEDDINGS, Retrain, per_class_start, rank
from .features import FrozenEncoder

log = get_logger("compare")
SELF_TRAINING_OFF = ("train.self_training_rounds=0", "train.student_epochs=0")


@dataclass
class Setup:
    """What every series shares: the recipes, the splits, the frozen features and the schedule."""

    recipe: Recipe  # the user's recipe, self-training off (a head retrain's settings)
    self_training: Recipe  # the recipe of a self-training retrain (feature_extraction, its rounds)
    recipe_path: str
    overrides: list[str]
    splits: Splits
    start_per_class: int
    batch: int
    rounds: int
    work: Path  # where `run` retrains write their data and run folders
    _features: dict | None = None

    @property
    def pool_labels(self) -> list[int]:
        return list(self.splits.train["label"])

    @property
    def features(self) -> dict:
        """"pool", "validation", "test": frozen features, one row per text, computed on first use."""
        if self._features is None:
            self._features = frozen_features(self.recipe, self.splits)
        return self._features


def frozen_features(recipe: Recipe, splits: Splits) -> dict:
    """The recipe's base model's pooled, normalised features of the pool, validation and test texts,
    computed once (`FrozenEncoder`: the features a feature-extraction head is fit on)."""
    encoder = FrozenEncoder.pretrained(recipe.model, recipe.data.max_length, recipe.model.pooling)
    log.info(f"embedding {len(splits.train)} pool, {len(splits.validation)} validation and {len(splits.test)} test "
             f"texts once with {encoder.name}")
    bs = recipe.train.eval_batch_size
    return {name: encoder.encode(list(split["text"]), batch_size=bs, desc=f"features ({name})")
            for name, split in (("pool", splits.train), ("validation", splits.validation), ("test", splits.test))}


@dataclass
class _Device:
    """What the head solver reads of an Accelerator: where to fit, and whether to print each L2 fit (no)."""

    device: torch.device = torch.device("cpu")
    is_main_process: bool = False


@contextlib.contextmanager
def _quiet():
    """The head solver's and self-training's per-fit lines hidden: a simulation fits hundreds of heads."""
    logger = logging.getLogger(ROOT)
    level = logger.level
    logger.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        logger.setLevel(level)


class _Fitted:
    """One round's model: its test scores and the class probabilities of pool rows."""

    def __init__(self, scores: dict, probabilities):
        self.scores, self.probabilities = scores, probabilities


def _fit_head(setup: Setup, retrain: Retrain, labeled: list[int], unlabeled: np.ndarray) -> _Fitted:
    """A linear head on the labeled rows' features (self-trained on the unlabeled ones when asked)."""
    recipe = setup.self_training if retrain.kind == "self_training" else setup.recipe
    f, labels = setup.features, torch.tensor(setup.pool_labels)
    val_y = torch.tensor(list(setup.splits.validation["label"]))
    val_docs = torch.arange(len(val_y))
    run = Run(_Device(), recipe, get_method(recipe.model.method), setup.splits, None, None, None, None, None, None,
              make_loss(False, recipe.train.loss, None, recipe.train.focal_gamma), None)

    def evaluate(head):
        with torch.inference_mode():
            logits = head(f["validation"])
        return validation_scores(logits, val_y, val_docs, recipe, False)

    rows = torch.tensor(labeled)
    head = nn.Linear(f["pool"].shape[1], len(setup.splits.labels))
    nn.init.zeros_(head.weight)  # a convex fit: the start only has to be fixed, for reruns to agree
    nn.init.zeros_(head.bias)
    with _quiet():
        if retrain.kind == "self_training":
            cached = CachedFeatures(f["pool"][rows], labels[rows], f["validation"], val_y,
                                    f["pool"][torch.as_tensor(unlabeled)], evaluate)
            self_train(run, head, cached)
        else:
            fit_head_lbfgs(run, head, f["pool"][rows], labels[rows], evaluate)
    head.eval()
    with torch.inference_mode():
        predicted = head(f["test"]).argmax(-1).numpy()
    scores = metrics.summary(np.asarray(setup.splits.test["label"]), predicted)

    def probabilities(pool_rows):
        with torch.inference_mode():
            return head(f["pool"][torch.as_tensor(pool_rows)]).softmax(-1).numpy()

    return _Fitted(scores, probabilities)


def _fit_run(setup: Setup, retrain: Retrain, labeled: list[int], seed: int, tag: str) -> _Fitted:
    """A real run of `retrain.method` on the labeled rows, through `textxfer train`'s path."""
    data, names, pool = setup.work / "data", setup.splits.labels.labels, setup.splits.train
    validation = data / "validation.csv"
    if not validation.is_file():
        write_table(validation, {"text": list(setup.splits.validation["text"]),
                                 "label": [names[i] for i in setup.splits.validation["label"]]}, escape_formulas=False)
    train_file = data / f"train-{tag}.csv"
    texts, labels = list(pool["text"]), list(pool["label"])
    write_table(train_file, {"text": [texts[i] for i in labeled], "label": [names[labels[i]] for i in labeled]},
                escape_formulas=False)
    out = setup.work / "runs" / tag
    cell = load_recipe(setup.recipe_path, ["train.epochs=null", "train.lr=null", *setup.overrides, *SELF_TRAINING_OFF,
                                           f"model.method={retrain.method}", f"train.seed={seed}",
                                           f"data.train={train_file}", f"data.validation={validation}",
                                           "data.text_column=text", "data.label_column=label",
                                           f"output_dir={out}", "overwrite=true"])
    with _quiet():
        scores = train(cell)["test"]
    classifier = load_classifier(out)
    return _Fitted({"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "n": scores["n"]},
                   lambda rows: classifier.predict_proba([texts[i] for i in rows]))


def _remove_run(setup: Setup, tag: str) -> None:
    """A round's run folder, once its predictions are taken (only a finished run textxfer wrote)."""
    folder = setup.work / "runs" / tag
    found = manifest(folder)
    if found is not None and found.get("kind") == "run":
        shutil.rmtree(folder)


def series_key(retrain: Retrain, strategy: str, seed: int, setup: Setup) -> dict:
    """What identifies a series in active_learning.json."""
    return {"retrain": retrain.name, "strategy": strategy, "seed": seed, "start_per_class": setup.start_per_class,
            "batch": setup.batch, "model": setup.recipe.model.name}


def simulate_series(setup: Setup, retrain: Retrain, strategy: str, seed: int) -> dict:
    """One series: rounds of retrain, score, pick; the test figures after each round."""
    pool_size = len(setup.splits.train)
    labeled = per_class_start(setup.pool_labels, setup.start_per_class, seed)
    points, started, previous = [], time.perf_counter(), None
    for round_ in range(setup.rounds + 1):
        begun = time.perf_counter()
        unlabeled = np.setdiff1d(np.arange(pool_size), labeled)
        tag = f"{retrain.name}-{strategy}-seed{seed}-round{round_}"
        fitted = (_fit_run(setup, retrain, labeled, seed, tag) if retrain.kind == "run"
                  else _fit_head(setup, retrain, labeled, unlabeled))
        if previous is not None:
            _remove_run(setup, previous)
        previous = tag if retrain.kind == "run" else None
        last = round_ == setup.rounds or not len(unlabeled)
        if not last:
            embeddings = setup.features["pool"][torch.as_tensor(unlabeled)].numpy() if strategy in NEEDS_EMBEDDINGS else None
            picks = rank(fitted.probabilities(unlabeled), strategy, setup.batch, seed * 1000 + round_, embeddings)
            labeled = sorted(labeled + unlabeled[picks].tolist())
        points.append({"round": round_, "labels": pool_size - len(unlabeled), "test_accuracy": fitted.scores["accuracy"],
                       "test_macro_f1": fitted.scores["macro_f1"], "seconds": time.perf_counter() - begun})
        log.info(f"{retrain.name} / {strategy} / seed {seed}: round {round_}, {points[-1]['labels']} labels, test "
                 f"accuracy {100 * fitted.scores['accuracy']:.2f}%")
        if last:
            break
    return {**series_key(retrain, strategy, seed, setup), "points": points,
            "wall_seconds": time.perf_counter() - started}


def simulate(setup: Setup, retrains: list[Retrain], strategies: list[str], seeds: int, records: list[dict],
             save) -> list[dict]:
    """Every (retrain, seed, strategy) series not already in `records` with as many rounds; `save(records)`
    after each, so an interrupted simulation resumes where it stopped. Returns the records."""
    for retrain in retrains:
        for seed in range(seeds):
            for strategy in strategies:
                key = series_key(retrain, strategy, seed, setup)
                old = [r for r in records if all(r.get(k) == v for k, v in key.items())]
                if old and (len(old[0]["points"]) >= setup.rounds + 1
                            or old[0]["points"][-1]["labels"] == len(setup.splits.train)):  # the pool ran out
                    continue
                records[:] = [r for r in records if r not in old] + [simulate_series(setup, retrain, strategy, seed)]
                save(records)
    return records
