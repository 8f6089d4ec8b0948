"""From recipe to labeled splits: column mapping, validation, label space and stratified split.

`load_splits(cfg, seed)` returns `Splits`: `datasets.Dataset`s with a `text` and a `label`
(integer id) column for train / validation / test, the `LabelSpace`, and the raw test table
(all original columns) for the predictions file. Every problem is reported before training starts.
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field

import datasets

from ..config import DataConfig
from ..errors import TextxferError
from ..log import get_logger
from .hub_datasets import DatasetInput, open_dataset
from .io import read_table
from .rows import MAX_LISTED, Examples, check_columns, row_where, to_examples
from .rows import read_texts, read_unlabeled, texts_of  # noqa: F401 - where callers import them from

log = get_logger()



@dataclass
class LabelSpace:
    """The classes of a task: names in a stable, sorted order and their integer ids."""

    labels: list[str]

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_values(cls, values) -> "LabelSpace":
        """Sorted labels; integers sort numerically (2 before 10), everything else as strings."""
        unique = set(values)
        if all(_is_int(v) for v in unique):
            return cls([str(v) for v in sorted(unique, key=int)])
        return cls(sorted(unique))


def _is_int(value: str) -> bool:
    try:
        return str(int(value)) == value
    except ValueError:
        return False


@dataclass
class Origin:
    """Where the rows of one split come from: the file, and each row's 0-based data-row index in it
    (CSV/TSV rows after the header, JSONL lines)."""

    path: str
    rows: list[int]


@dataclass
class Splits:
    """Prepared data per split: `text` (+ `text_pair`) and `label` columns, label space, raw test rows.

    `label` is an integer id, or for multi-label data a multi-hot list over `labels`. `origins` says, per
    split name, which file and rows each example comes from (the validation rows drawn from train name
    the train file); `audit` holds the exact-duplicate checks' summary when training ran them.
    """

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset | None
    labels: LabelSpace
    raw_test: datasets.Dataset | None = None
    notes: list[str] = field(default_factory=list)
    multi_label: bool = False
    positive_label: str | None = None
    origins: dict[str, Origin] = field(default_factory=dict)
    audit: dict | None = None
    dataset: dict | None = None  # `data.dataset`: what was read (id, kind, revision used, splits)
    groups: dict[str, list[str]] | None = None  # `data.group_column`: each validation / test row's group


def per_class_sample(labels: list, per_class: int | None, seed: int) -> list[int]:
    """Seeded, stratified: `per_class` row indices of every class (all of a smaller class), sorted; every
    row for `per_class=None`. The one draw behind `compare`'s label budgets and active learning's start."""
    if per_class is None:
        return list(range(len(labels)))
    rng = random.Random(seed)
    by_class: dict = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    picked = []
    for label in sorted(by_class):
        rows = by_class[label]
        picked += rng.sample(rows, min(per_class, len(rows)))
    return sorted(picked)


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int], list[str]]:
    """Indices of a seeded, per-class split: (train, held_out, classes too small to split).

    A class with fewer than 2 rows cannot appear on both sides; it stays wholly in train.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    train, held, too_small = [], [], []
    for label in sorted(by_class):
        idx = by_class[label]
        rng.shuffle(idx)
        if len(idx) < 2:
            too_small.append(label)
            train += idx
            continue
        n_held = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        held += idx[:n_held]
        train += idx[n_held:]
    return sorted(train), sorted(held), too_small


def _stratification_keys(labels: list, multi_label: bool) -> list[str]:
    """One key per row: its label, or for multi-label rows their rarest label (so rare labels reach validation)."""
    if not multi_label:
        return labels
    counts = Counter(l for row in labels for l in row)
    return [min(row, key=lambda l: (counts[l], l)) for row in labels]


def _subset(examples: Examples, indices: list[int]) -> Examples:
    pick = lambda values: None if values is None else [values[i] for i in indices]  # noqa: E731
    return Examples(pick(examples.texts), pick(examples.pairs), pick(examples.labels), pick(examples.kept_rows),
                    pick(examples.groups))


def _dataset(examples: Examples, space: LabelSpace, multi_label: bool) -> datasets.Dataset:
    ids = space.label2id
    if multi_label:
        label_ids = [[0] * len(space) for _ in examples.labels]
        for row, labels in zip(label_ids, examples.labels):
            for label in labels:
                row[ids[label]] = 1
    else:
        label_ids = [ids[label] for label in examples.labels]
    columns = {"text": examples.texts, "label": label_ids}
    if examples.pairs is not None:
        columns["text_pair"] = examples.pairs
    return datasets.Dataset.from_dict(columns)


def _positive_label(cfg: DataConfig, space: LabelSpace, train_labels: list) -> str | None:
    """The class of interest of a binary task: as configured, else the rarer class in train."""
    if cfg.positive_label is not None:
        if cfg.multi_label or len(space) != 2 or cfg.positive_label not in space.label2id:
            raise TextxferError(
                f"`data.positive_label` is {cfg.positive_label!r}, but it must name one of the two classes of a "
                f"binary single-label task; the train file {cfg.train} has {len(space)} label(s): "
                f"{', '.join(space.labels[:MAX_LISTED * 2])}."
            )
        return cfg.positive_label
    if cfg.multi_label or len(space) != 2:
        return None
    counts = Counter(train_labels)
    return min(space.labels, key=lambda l: (counts[l], space.labels.index(l) * -1))


def load_splits(cfg: DataConfig, seed: int) -> Splits:
    """Read, validate and split the recipe's data; raise `TextxferError` on any problem."""
    cfg, read, dataset = _inputs(cfg)
    train_table = read(cfg.train, cfg.encoding, "train")
    check_columns(train_table, cfg, cfg.train, "train", need_label=True)
    train = to_examples(train_table, cfg, cfg.train, "train", need_label=True)
    flat = [l for row in train.labels for l in row] if cfg.multi_label else train.labels
    space = LabelSpace.from_values(flat)
    if dataset is not None and dataset.label_names:  # a ClassLabel: its order (the classes train has)
        space = LabelSpace([name for name in dataset.label_names if name in set(flat)])
    if len(space) < 2:
        raise TextxferError(
            f"The train file {cfg.train} has a single class ({space.labels[0]!r} in column `{cfg.label_column}`): "
            f"a classifier needs at least two. Check `data.label_column`, or add examples of the other classes."
        )
    notes = list(dataset.notes) if dataset is not None else []
    if cfg.validation:
        validation = _held_out(cfg, cfg.validation, "validation", space,
                               table=read(cfg.validation, cfg.encoding, "validation"))
    else:
        keys = _stratification_keys(train.labels, cfg.multi_label)
        train_idx, val_idx, too_small = stratified_split(keys, cfg.validation_split, seed)
        if too_small:
            notes.append(
                f"{len(too_small)} class(es) have a single training row and cannot be stratified into the "
                f"validation split: {', '.join(too_small[:MAX_LISTED])}{' ...' if len(too_small) > MAX_LISTED else ''}. "
                f"They stay in train only, so validation scores do not cover them; add rows or give `data.validation`."
            )
        validation, train = _subset(train, val_idx), _subset(train, train_idx)
    origins = {"train": Origin(cfg.train, train.kept_rows),
               "validation": Origin(cfg.validation or cfg.train, validation.kept_rows)}
    test = raw_test = test_examples = None
    if cfg.test:
        raw_test = read(cfg.test, cfg.encoding, "test")
        test_examples = _held_out(cfg, cfg.test, "test", space, table=raw_test)
        keep = test_examples.kept_rows
        raw_test = raw_test.select(keep) if len(keep) != len(raw_test) else raw_test
        test = _dataset(test_examples, space, cfg.multi_label)
        origins["test"] = Origin(cfg.test, keep)
    return Splits(
        train=_dataset(train, space, cfg.multi_label),
        validation=_dataset(validation, space, cfg.multi_label),
        test=test, labels=space, raw_test=raw_test, notes=notes, multi_label=cfg.multi_label,
        positive_label=_positive_label(cfg, space, train.labels), origins=origins,
        dataset=dataset.source if dataset is not None else None,
        groups=None if not cfg.group_column else
        {"validation": validation.groups, **({"test": test_examples.groups} if test_examples is not None else {})},
    )


def _inputs(cfg: DataConfig):
    """The data settings, a reader `(name, encoding, role) -> table`, and the `data.dataset` input or None.
    With `data.dataset`, `train`/`validation`/`test` name its splits (as messages show them) and the reader
    hands out the splits `textxfer.data.hub_datasets` loaded; otherwise they are files, read by `read_table`."""
    if not cfg.dataset:
        return cfg, read_table, None
    dataset: DatasetInput = open_dataset(cfg)
    by_name = {dataset.wheres[role]: table for role, table in dataset.tables.items()}
    named = dataclasses.replace(cfg, **{role: dataset.wheres.get(role) for role in ("train", "validation", "test")})
    return named, lambda name, encoding, role: by_name[name], dataset


def _held_out(cfg: DataConfig, path: str, role: str, space: LabelSpace, table=None) -> Examples:
    table = table if table is not None else read_table(path, cfg.encoding, role)
    check_columns(table, cfg, path, role, need_label=True)
    examples = to_examples(table, cfg, path, role, need_label=True)
    flat = [l for row in examples.labels for l in row] if cfg.multi_label else examples.labels
    unseen = Counter(l for l in flat if l not in space.label2id)
    if unseen:
        listed = ", ".join(f"{l!r} ({n} row{'s' if n > 1 else ''})" for l, n in unseen.most_common(MAX_LISTED * 2))
        first = next(i for i, row in enumerate(examples.labels)
                     if any(l in unseen for l in (row if cfg.multi_label else [row])))
        raise TextxferError(
            f"The {role} file {path} has labels that never occur in the train file {cfg.train}: {listed}; the first "
            f"is at {row_where(path, examples.kept_rows[first])}, column `{cfg.label_column}`. A model cannot "
            f"predict classes it never saw: add training examples of them, or remove those rows."
        )
    return examples
