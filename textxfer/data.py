"""From recipe to labeled splits: column mapping, validation, label space and stratified split.

`load_splits(cfg, seed)` returns `Splits`: `datasets.Dataset`s with a `text` and a `label`
(integer id) column for train / validation / test, the `LabelSpace`, and the raw test table
(all original columns) for the predictions file. Every problem is reported before training starts.
"""
from __future__ import annotations

import difflib
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from .config import DataConfig
from .errors import TextxferError
from .io import file_format, read_table

MAX_LISTED = 5


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
class Splits:
    """Prepared data: `text`/`label` datasets per split, the label space and the raw test rows."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset | None
    labels: LabelSpace
    raw_test: datasets.Dataset | None = None
    notes: list[str] = field(default_factory=list)


def _label_text(value) -> str | None:
    """A label cell as a canonical string (None when missing). 3, 3.0 and "3" are the same label."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _columns(cfg: DataConfig) -> list[str]:
    return cfg.text_column if isinstance(cfg.text_column, list) else [cfg.text_column]


def _check_columns(table: datasets.Dataset, cfg: DataConfig, path: str, role: str, need_label: bool) -> None:
    wanted = [("data.text_column", c) for c in _columns(cfg)]
    if need_label:
        wanted.append(("data.label_column", cfg.label_column))
    for key, column in wanted:
        if column not in table.column_names:
            close = difflib.get_close_matches(column, table.column_names, n=1, cutoff=0.4)
            option = "--text-column" if role == "input" else key
            sep = " " if role == "input" else "="
            hint = (f" Did you mean `{close[0]}`? Pass `{option}{sep}{close[0]}`." if close
                    else f" Pass `{option}` with one of them.")
            raise TextxferError(
                f"The {role} file {path} has no column `{column}` (asked for by `{key}`). "
                f"Its columns are: {', '.join(table.column_names)}.{hint}"
            )


def _row_where(path: str, index: int) -> str:
    """Human position of data row `index` (0-based): CSV rows after the header, JSONL lines."""
    if file_format(Path(path)) == "json":
        return f"line {index + 1}"
    return f"row {index + 1} (not counting the header)"


def _to_examples(table: datasets.Dataset, cfg: DataConfig, path: str, role: str, need_label: bool):
    """Texts and labels as Python lists, with invalid rows reported or (if asked) dropped."""
    columns = _columns(cfg)
    parts = [list(table[c]) for c in columns]
    texts = ["\n".join("" if p is None else str(p) for p in row).strip() for row in zip(*parts)]
    labels = [_label_text(v) for v in list(table[cfg.label_column])] if need_label else [None] * len(texts)
    bad = []
    for i, (text, label) in enumerate(zip(texts, labels)):
        if not text:
            bad.append((i, f"the text ({' + '.join(f'`{c}`' for c in columns)}) is empty"))
        elif need_label and label is None:
            bad.append((i, f"the label (`{cfg.label_column}`) is missing"))
    keep = list(range(len(texts)))
    if bad:
        listed = "; ".join(f"{_row_where(path, i)}: {why}" for i, why in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        if not cfg.drop_invalid_rows:
            fix = ("Fix those rows, or set `data.drop_invalid_rows=true` to drop them (textxfer then says how many it dropped)."
                   if role != "input" else "Fix or remove those rows: every input row gets a prediction, so none is skipped.")
            raise TextxferError(f"The {role} file {path} has {len(bad)} invalid row(s): {listed}{more}. {fix}")
        dropped = {i for i, _ in bad}
        keep = [i for i in keep if i not in dropped]
        print(f"textxfer: dropped {len(bad)} invalid row(s) of {len(texts)} from the {role} file {path} "
              f"(data.drop_invalid_rows=true): {listed}{more}.", file=sys.stderr)
        if not keep:
            raise TextxferError(f"Every row of the {role} file {path} is invalid; nothing is left to use.")
    return [texts[i] for i in keep], [labels[i] for i in keep], keep


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


def _dataset(texts: list[str], label_ids: list[int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": texts, "label": label_ids})


def load_splits(cfg: DataConfig, seed: int) -> Splits:
    """Read, validate and split the recipe's data; raise `TextxferError` on any problem."""
    train_table = read_table(cfg.train, cfg.encoding, "train")
    _check_columns(train_table, cfg, cfg.train, "train", need_label=True)
    train_texts, train_labels, _ = _to_examples(train_table, cfg, cfg.train, "train", need_label=True)
    space = LabelSpace.from_values(train_labels)
    if len(space) < 2:
        raise TextxferError(
            f"The train file {cfg.train} has a single class ({space.labels[0]!r} in column `{cfg.label_column}`): "
            f"a classifier needs at least two. Check `data.label_column`, or add examples of the other classes."
        )
    notes = []
    if cfg.validation:
        val_texts, val_labels, _ = _held_out(cfg, cfg.validation, "validation", space)
    else:
        train_idx, val_idx, too_small = stratified_split(train_labels, cfg.validation_split, seed)
        if too_small:
            notes.append(
                f"{len(too_small)} class(es) have a single training row and cannot be stratified into the "
                f"validation split: {', '.join(too_small[:MAX_LISTED])}{' ...' if len(too_small) > MAX_LISTED else ''}. "
                f"They stay in train only, so validation scores do not cover them; add rows or give `data.validation`."
            )
        val_texts, val_labels = [train_texts[i] for i in val_idx], [train_labels[i] for i in val_idx]
        train_texts, train_labels = [train_texts[i] for i in train_idx], [train_labels[i] for i in train_idx]
    test = raw_test = None
    if cfg.test:
        raw_test = read_table(cfg.test, cfg.encoding, "test")
        test_texts, test_labels, keep = _held_out(cfg, cfg.test, "test", space, table=raw_test)
        raw_test = raw_test.select(keep) if len(keep) != len(raw_test) else raw_test
        test = _dataset(test_texts, [space.label2id[l] for l in test_labels])
    ids = space.label2id
    return Splits(
        train=_dataset(train_texts, [ids[l] for l in train_labels]),
        validation=_dataset(val_texts, [ids[l] for l in val_labels]),
        test=test, labels=space, raw_test=raw_test, notes=notes,
    )


def _held_out(cfg: DataConfig, path: str, role: str, space: LabelSpace, table=None):
    table = table if table is not None else read_table(path, cfg.encoding, role)
    _check_columns(table, cfg, path, role, need_label=True)
    texts, labels, keep = _to_examples(table, cfg, path, role, need_label=True)
    unseen = Counter(l for l in labels if l not in space.label2id)
    if unseen:
        listed = ", ".join(f"{l!r} ({n} row{'s' if n > 1 else ''})" for l, n in unseen.most_common(MAX_LISTED * 2))
        raise TextxferError(
            f"The {role} file {path} has labels that never occur in the train file {cfg.train}: {listed}. "
            f"A model cannot predict classes it never saw: add training examples of them, or remove those rows."
        )
    return texts, labels, keep


def read_texts(path: str | Path, text_column: str | list[str], encoding: str = "utf-8"):
    """Texts to classify from a file, plus the raw table: used by prediction (no label needed)."""
    cfg = DataConfig(train=str(path), text_column=text_column, encoding=encoding)
    table = read_table(path, encoding, "input")
    _check_columns(table, cfg, str(path), "input", need_label=False)
    texts, _, _ = _to_examples(table, cfg, str(path), "input", need_label=False)
    return texts, table
