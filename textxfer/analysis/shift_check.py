"""`measure_shift(run_dir, new_file)`: are new, unlabeled texts from the distribution a run was trained on?

The run's training texts (its recipe's train file, validation rows included) and the new texts are
subsampled (seeded) to at most `max_texts` each, embedded once with the run's frozen features
(`FrozenEncoder.of_run`), and compared by the tests of `textxfer.analysis.shift`; the run's classifier
labels the new texts, to show which classes grew or shrank against the training labels.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import load_recipe
from ..data.io import check_readable
from ..data.splits import load_splits, read_unlabeled
from ..errors import TextxferError
from ..inference import load_classifier
from ..log import get_logger
from ..runs.info import RunInfo
from .features import FrozenEncoder
from .shift import MMD_TEXTS, classifier_two_sample_auc, label_shift, mmd_permutation_test, verdict

log = get_logger("shift")
MIN_TEXTS = 10  # per side: fewer cannot be cross-validated into five folds with both sides in each


@dataclass
class Shift:
    report: dict  # shift.json
    scores: np.ndarray  # the two-sample classifier's out-of-fold P(new), old texts first
    n_old: int


def training_texts(run_dir: Path) -> tuple[list[str], list]:
    """The texts and labels the run was trained on (validation rows included), read as its recipe says."""
    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise TextxferError(f"{run_dir} has no recipe.yaml, so the texts it was trained on are unknown. Give the "
                            f"output_dir of a run written by `textxfer train` (an ensemble's members are in its "
                            f"`members/` folder).")
    recipe = load_recipe(recipe_path)
    try:
        splits = load_splits(recipe.data, recipe.train.seed)
    except TextxferError as exc:
        raise TextxferError(f"`textxfer shift` compares the new texts with the ones {run_dir} was trained on, read from "
                            f"the files its recipe.yaml names, and those cannot be read: {exc}") from None
    names = splits.labels.labels
    texts, labels = [], []
    for dataset in (splits.train, splits.validation):
        texts += list(dataset["text"])
        ids = list(dataset["label"])
        labels += [[names[j] for j, on in enumerate(row) if on] for row in ids] if splits.multi_label \
            else [names[i] for i in ids]
    return texts, labels


def new_texts(path: str | Path, text_column, encoding: str = "utf-8") -> list[str]:
    """The texts of NEW_FILE: a table with the text column, or a .txt file with one text per line."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise TextxferError(f"The new file {path} does not exist (looked in {path.resolve().parent}). Check the path.")
    else:
        check_readable(path, "input")
    return read_unlabeled(str(path), text_column, encoding)


def _sample(items: list, limit: int, seed: int) -> list[int]:
    if len(items) <= limit:
        return list(range(len(items)))
    return sorted(random.Random(seed).sample(range(len(items)), limit))


def measure_shift(run_dir: str | Path, new_file: str | Path, text_column=None, max_texts: int = 5000,
                  seed: int = 0) -> Shift:
    """Compare the new texts with the run's training texts (see the module notes)."""
    run_dir = Path(run_dir)
    if max_texts < MIN_TEXTS:
        raise TextxferError(f"`--max-texts` is {max_texts}; the tests need at least {MIN_TEXTS} texts per side.")
    info = RunInfo.read(run_dir, "`textxfer shift`")
    if info.text_pair_column:
        raise TextxferError(f"{run_dir} classifies text pairs (`{info.text_pair_column}` with each text); `textxfer "
                            f"shift` compares single texts. Compare the two columns' files separately with a run on "
                            f"single texts.")
    new = new_texts(new_file, text_column or info.text_column)
    old, old_labels = training_texts(run_dir)
    for side, texts in (("the new file " + str(new_file), new), (f"the training data of {run_dir}", old)):
        if len(texts) < MIN_TEXTS:
            raise TextxferError(f"{side} holds {len(texts)} text(s); the shift tests need at least {MIN_TEXTS} on each "
                                f"side to say anything. Give more texts.")
    old_pick, new_pick = _sample(old, max_texts, seed), _sample(new, max_texts, seed + 1)
    old_sample, new_sample = [old[i] for i in old_pick], [new[i] for i in new_pick]
    encoder = FrozenEncoder.of_run(run_dir, info)
    log.info(f"embedding {len(old_sample)} training and {len(new_sample)} new texts with {encoder.name}")
    old_x = encoder.encode(old_sample, batch_size=info.eval_batch_size, desc="features (training texts)").numpy()
    new_x = encoder.encode(new_sample, batch_size=info.eval_batch_size, desc="features (new texts)").numpy()
    two_sample = classifier_two_sample_auc(old_x, new_x, seed=seed)
    mmd = mmd_permutation_test(old_x[_sample(old_x, MMD_TEXTS, seed)], new_x[_sample(new_x, MMD_TEXTS, seed)], seed=seed)
    labels = _predicted_shift(run_dir, new_sample, old_labels, info)
    report = {
        "run": str(run_dir), "new_file": str(new_file), "features": encoder.name,
        "texts": {"training": len(old), "new": len(new), "compared_training": len(old_sample),
                  "compared_new": len(new_sample)},
        "verdict": verdict(two_sample.auc, mmd.p_value),
        "classifier_two_sample": {"auc": two_sample.auc, "folds": 5, "model": "logistic regression on standardised features"},
        "mmd": {"mmd2": mmd.mmd2, "p_value": mmd.p_value, "permutations": mmd.permutations,
                "kernel": "rbf", "bandwidth": mmd.bandwidth, "texts_per_side": min(MMD_TEXTS, len(old_x), len(new_x))},
        "labels": labels,
    }
    return Shift(report, two_sample.scores, len(old_x))


def _predicted_shift(run_dir: Path, texts: list[str], train_labels: list, info: RunInfo) -> dict:
    """The run's predictions on the new texts against its training labels."""
    log.info(f"predicting the labels of {len(texts)} new texts with {run_dir}")
    classifier = load_classifier(run_dir)
    decided = classifier.decide(classifier.predict_proba(texts))
    names = classifier.labels
    predicted = ([[names[j] for j in np.flatnonzero(row)] for row in decided] if classifier.multi_label
                 else [names[i] for i in decided])
    return label_shift(train_labels, predicted, info.labels)
