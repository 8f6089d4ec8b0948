"""The rows of one labeled (or unlabeled) table as Python lists: the text columns joined, the pair text,
the labels (one per row, or a list per row for multi-label data) and the group, with every invalid row
named by file, row and column (`row_where`), and the texts of a file to classify (`read_texts`,
`texts_of`, `read_unlabeled`). `textxfer.data.splits` builds the splits from these."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import datasets

from ..config import DataConfig
from ..errors import TextxferError
from ..log import get_logger
from .groups import check_group_column, read_groups
from .io import FORMATS, file_format, read_table

log = get_logger()

MAX_LISTED = 5


@dataclass
class Examples:
    """Valid rows of one file as Python lists (`pairs` is None without a pair column)."""

    texts: list[str]
    pairs: list[str] | None
    labels: list  # str per row, a list of str per row (multi-label), or None per row (no labels)
    kept_rows: list[int]
    groups: list[str] | None = None  # each row's `data.group_column` value (see textxfer.data.groups)


def label_text(value) -> str | None:
    """A label cell as a canonical string (None when missing). 3, 3.0 and "3" are the same label."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def label_set(value, separator: str) -> list[str]:
    """A multi-label cell as a list of distinct labels: a JSON list, or a string split on `separator`."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(separator)
    labels = []
    for item in items:
        label = label_text(item)
        if label is not None and label not in labels:
            labels.append(label)
    return labels


def text_columns(cfg: DataConfig) -> list[str]:
    return cfg.text_column if isinstance(cfg.text_column, list) else [cfg.text_column]


def check_columns(table: datasets.Dataset, cfg: DataConfig, path: str, role: str, need_label: bool) -> None:
    wanted = [("data.text_column", c) for c in text_columns(cfg)]
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
                f"The {role} file {path} has {kind} instead of a text at {row_where(path, first_row + i)}, column `{column}`: "
                f"{json.dumps(value, ensure_ascii=False, default=str)[:80]}. Each text must be a string; move the text "
                f"into a field of its own (e.g. `\"{column}\": \"...\"`), or point the text column at the field that "
                f"holds it."
            )
    return ["" if v is None else str(v) for v in values]


def row_where(path: str, index: int) -> str:
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
                    f"The {role} file {path} has a nested value as labels at {row_where(path, i)} (column "
                    f"`{cfg.label_column}`: {json.dumps(value, ensure_ascii=False, default=str)[:80]}). Give a list of "
                    f"label names, e.g. [\"billing\", \"refund\"], or a string such as \"billing|refund\"."
                )
        return [label_set(v, cfg.label_separator) for v in values]
    for i, value in enumerate(values):
        if isinstance(value, (list, tuple, dict)):
            raise TextxferError(
                f"The {role} file {path} has a list of labels at {row_where(path, i)} (column `{cfg.label_column}`: "
                f"{str(value)[:80]}), but the recipe trains a single-label classifier. Set `data.multi_label=true` "
                f"if rows can carry several labels, or give one label per row."
            )
    return [label_text(v) for v in values]


def to_examples(table: datasets.Dataset, cfg: DataConfig, path: str, role: str, need_label: bool,
                 first_row: int = 0) -> Examples:
    """Texts, pair texts and labels as Python lists, with invalid rows reported or (if asked) dropped.
    `first_row`: the table's first row is this data row of the file (a chunk of a larger file)."""
    columns = text_columns(cfg)
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
        listed = "; ".join(f"{row_where(path, first_row + i)}: {why}" for i, why in bad[:MAX_LISTED])
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
    check_columns(table, cfg, str(path), "input", need_label=False)
    examples = to_examples(table, cfg, str(path), "input", need_label=False, first_row=first_row)
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
