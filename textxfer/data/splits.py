"""From recipe to labeled splits: column mapping, validation, label space and stratified split.

`load_splits(cfg, seed)` returns `Splits`: `datasets.Dataset`s with a `text` and a `label`
(integer id) column for train / validation / test, the `LabelSpace`, and the raw test table
(all original columns) for the predictions file. Every problem is reported before training starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from ..config import DataConfig
from ..errors import TextxferError
from ..log import get_logger
from .groups import check_group_column, read_groups
from .hub_datasets import DatasetInput, open_dataset
from .io import FORMATS, file_format, read_table

log = get_logger()

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


@dataclass
class Examples:
    """Valid rows of one file as Python lists (`pairs` is None without a pair column)."""

    texts: list[str]
    pairs: list[str] | None
    labels: list  # str per row, a list of str per row (multi-label), or None per row (no labels)
    kept_rows: list[int]
    groups: list[str] | None = None  # each row's `data.group_column` value (see textxfer.data.groups)


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


def _label_set(value, separator: str) -> list[str]:
    """A multi-label cell as a list of distinct labels: a JSON list, or a string split on `separator`."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(separator)
    labels = []
    for item in items:
        label = _label_text(item)
        if label is not None and label not in labels:
            labels.append(label)
    return labels


def _columns(cfg: DataConfig) -> list[str]:
    return cfg.text_column if isinstance(cfg.text_column, list) else [cfg.text_column]


def _check_columns(table: datasets.Dataset, cfg: DataConfig, path: str, role: str, need_label: bool) -> None:
    wanted = [("data.text_column", c) for c in _columns(cfg)]
    if cfg.text_pair_column:
        wanted.append(("data.text_pair_column", cfg.text_pair_column))
    if need_label:
        wanted.append(("data.label_column", cfg.label_column))
    for key, column in wanted:
        if column not in table.column_names and role in ("validation", "test"):
            raise TextxferError(
                f"The {role} file {path} has no column `{column}` (asked for by `{key}`), which the train file "
                f"{cfg.train} has: the two files have different columns (this one has {', '.join(table.column_names)}). "
                f"If {path} is not your data (a recipe's own {role} file, say), point `data.{role}` at yours "
                f"(`data.{role}=PATH`) or leave it out (`data.{role}=null`); otherwise give it the train file's "
                f"column names."
            )
        if column not in table.column_names:
            close = difflib.get_close_matches(column, table.column_names, n=1, cutoff=0.4)
            option = {"data.text_column": "--text-column", "data.text_pair_column": "--pair-column"}.get(key, key)
            option = option if role == "input" else key
            sep = " " if role == "input" else "="
            hint = (f" Did you mean `{close[0]}`? Pass `{option}{sep}{close[0]}`." if close
                    else f" Pass `{option}` with one of them.")
            raise TextxferError(
                f"The {role} file {path} has no column `{column}` (asked for by `{key}`). "
                f"Its columns are: {', '.join(table.column_names)}.{hint}"
            )
    if need_label:
        check_group_column(table, cfg.group_column, path, role)


def _text_values(table: datasets.Dataset, column: str, path: str, role: str, first_row: int = 0) -> list[str]:
    """A text column's cells as strings (a missing value is empty); a cell holding a JSON object or list
    is refused, never turned into its Python repr."""
    values = list(table[column])
    for i, value in enumerate(values):
        if isinstance(value, (dict, list, tuple)):
            kind = "an object" if isinstance(value, dict) else "a list"
            raise TextxferError(
                f"The {role} file {path} has {kind} instead of a text at {_row_where(path, first_row + i)}, column `{column}`: "
                f"{json.dumps(value, ensure_ascii=False, default=str)[:80]}. Each text must be a string; move the text "
                f"into a field of its own (e.g. `\"{column}\": \"...\"`), or point the text column at the field that "
                f"holds it."
            )
    return ["" if v is None else str(v) for v in values]


def _row_where(path: str, index: int) -> str:
    """Human position of data row `index` (0-based): CSV rows after the header, JSONL lines."""
    if Path(path).suffix.lower() not in FORMATS:  # a split of `data.dataset`
        return f"row {index + 1}"
    if file_format(Path(path)) == "json":
        return f"line {index + 1}"
    return f"row {index + 1} (not counting the header)"


def _read_labels(table: datasets.Dataset, cfg: DataConfig, path: str, role: str) -> list:
    values = list(table[cfg.label_column])
    if cfg.multi_label:
        for i, value in enumerate(values):
            items = value if isinstance(value, (list, tuple)) else [value]
            if isinstance(value, dict) or any(isinstance(item, (dict, list, tuple)) for item in items):
                raise TextxferError(
                    f"The {role} file {path} has a nested value as labels at {_row_where(path, i)} (column "
                    f"`{cfg.label_column}`: {json.dumps(value, ensure_ascii=False, default=str)[:80]}). Give a list of "
                    f"label names, e.g. [\"billing\", \"refund\"], or a string such as \"billing|refund\"."
                )
        return [_label_set(v, cfg.label_separator) for v in values]
    for i, value in enumerate(values):
        if isinstance(value, (list, tuple, dict)):
            raise TextxferError(
                f"The {role} file {path} has a list of labels at {_row_where(path, i)} (column `{cfg.label_column}`: "
                f"{str(value)[:80]}), but the recipe trains a single-label classifier. Set `data.multi_label=true` "
                f"if rows can carry several labels, or give one label per row."
            )
    return [_label_text(v) for v in values]


def _to_examples(table: datasets.Dataset, cfg: DataConfig, path: str, role: str, need_label: bool,
                 first_row: int = 0) -> Examples:
    """Texts, pair texts and labels as Python lists, with invalid rows reported or (if asked) dropped.
    `first_row`: the table's first row is this data row of the file (a chunk of a larger file)."""
    columns = _columns(cfg)
    parts = [_text_values(table, c, path, role, first_row) for c in columns]
    texts = ["\n".join(row).strip() for row in zip(*parts)]
    pairs = None
    if cfg.text_pair_column:
        pairs = [p.strip() for p in _text_values(table, cfg.text_pair_column, path, role, first_row)]
    labels = _read_labels(table, cfg, path, role) if need_label else [None] * len(texts)
    bad = []
    for i, (text, label) in enumerate(zip(texts, labels)):
        if not text:
            bad.append((i, f"the text ({' + '.join(f'`{c}`' for c in columns)}) is empty"))
        elif pairs is not None and not pairs[i]:
            bad.append((i, f"the pair text (`{cfg.text_pair_column}`) is empty"))
        elif need_label and cfg.multi_label and not label:
            bad.append((i, f"the label list (`{cfg.label_column}`) is empty"))
        elif need_label and label is None:
            bad.append((i, f"the label (`{cfg.label_column}`) is missing"))
    keep = list(range(len(texts)))
    if bad:
        listed = "; ".join(f"{_row_where(path, first_row + i)}: {why}" for i, why in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        if not cfg.drop_invalid_rows:
            fix = ("Fix those rows, or set `data.drop_invalid_rows=true` to drop them (textxfer then says how many it dropped)."
                   if role != "input" else "Fix or remove those rows: every input row gets a prediction, so none is skipped.")
            raise TextxferError(f"The {role} file {path} has {len(bad)} invalid row(s): {listed}{more}. {fix}")
        dropped = {i for i, _ in bad}
        keep = [i for i in keep if i not in dropped]
        log.warning(f"dropped {len(bad)} invalid row(s) of {len(texts)} from the {role} file {path} "
                    f"(data.drop_invalid_rows=true): {listed}{more}.")
        if not keep:
            raise TextxferError(f"Every row of the {role} file {path} is invalid; nothing is left to use.")
    return Examples(texts=[texts[i] for i in keep], pairs=None if pairs is None else [pairs[i] for i in keep],
                    labels=[labels[i] for i in keep], kept_rows=keep,
                    groups=read_groups(table, cfg.group_column if need_label else None, keep))


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
    _check_columns(train_table, cfg, cfg.train, "train", need_label=True)
    train = _to_examples(train_table, cfg, cfg.train, "train", need_label=True)
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
    _check_columns(table, cfg, path, role, need_label=True)
    examples = _to_examples(table, cfg, path, role, need_label=True)
    flat = [l for row in examples.labels for l in row] if cfg.multi_label else examples.labels
    unseen = Counter(l for l in flat if l not in space.label2id)
    if unseen:
        listed = ", ".join(f"{l!r} ({n} row{'s' if n > 1 else ''})" for l, n in unseen.most_common(MAX_LISTED * 2))
        first = next(i for i, row in enumerate(examples.labels)
                     if any(l in unseen for l in (row if cfg.multi_label else [row])))
        raise TextxferError(
            f"The {role} file {path} has labels that never occur in the train file {cfg.train}: {listed}; the first "
            f"is at {_row_where(path, examples.kept_rows[first])}, column `{cfg.label_column}`. A model cannot "
            f"predict classes it never saw: add training examples of them, or remove those rows."
        )
    return examples


def read_texts(path: str | Path, text_column: str | list[str], encoding: str = "utf-8",
               text_pair_column: str | None = None):
    """Texts (and pair texts, or None) to classify from a file, plus the raw table: used by prediction."""
    table = read_table(path, encoding, "input")
    texts, pairs = texts_of(table, path, text_column, text_pair_column)
    return texts, pairs, table


def texts_of(table: datasets.Dataset, path: str | Path, text_column: str | list[str],
             text_pair_column: str | None = None, first_row: int = 0) -> tuple[list[str], list[str] | None]:
    """Texts (and pair texts, or None) of a table to classify, checked as training data is: a missing
    column or an empty text is an error naming the file and row (`first_row`: the table's first row is
    this data row of the file)."""
    cfg = DataConfig(train=str(path), text_column=text_column, text_pair_column=text_pair_column)
    _check_columns(table, cfg, str(path), "input", need_label=False)
    examples = _to_examples(table, cfg, str(path), "input", need_label=False, first_row=first_row)
    return examples.texts, examples.pairs


def read_unlabeled(path: str, text_column: str | list[str], encoding: str = "utf-8") -> list[str]:
    """Texts of an unlabeled file: .txt (one text per non-empty line) or any table with the text column."""
    if Path(path).suffix.lower() == ".txt":
        if not Path(path).is_file():
            raise TextxferError(f"The unlabeled file {path} does not exist. Check `data.unlabeled`.")
        try:
            lines = Path(path).read_text(encoding=encoding).splitlines()
        except UnicodeDecodeError as exc:
            raise TextxferError(f"The unlabeled file {path} is not valid {encoding} text ({exc.reason} at byte "
                                f"{exc.start}). Set `data.encoding` (e.g. latin-1 or cp1252) or re-save it as UTF-8.") from None
        texts = [line.strip() for line in lines if line.strip()]
    else:
        texts, _, _ = read_texts(path, text_column, encoding)
    if not texts:
        raise TextxferError(f"The unlabeled file {path} holds no text. Put one text per line (.txt) or fill the text "
                            f"column, or leave `data.unlabeled` unset.")
    return texts
