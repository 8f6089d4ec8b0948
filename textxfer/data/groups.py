"""`data.group_column`: each row's group (a channel, a language, a customer tier), kept beside its split.

The group only says where a row comes from; it never reaches the model. Every labeled file (train,
validation, test) must have the column, so that a typo fails before training instead of after it; an
empty or missing cell is the group `(missing)`, and no row is dropped for it.
"""
from __future__ import annotations

import difflib
import math

import datasets

from ..errors import TextxferError

MISSING = "(missing)"


def check_group_column(table: datasets.Dataset, column: str | None, path: str, role: str) -> None:
    """Refuse a labeled file without the `data.group_column` column: the file, the column, the columns it has."""
    if not column or column in table.column_names:
        return
    close = difflib.get_close_matches(column, table.column_names, n=1, cutoff=0.4)
    hint = f"Did you mean `{close[0]}`? Pass `data.group_column={close[0]}`, or add" if close else "Add"
    raise TextxferError(
        f"The {role} file {path} has no column `{column}`, which `data.group_column` names as the column holding "
        f"each row's group (for metrics per group). Its columns are: {', '.join(table.column_names)}. {hint} a "
        f"`{column}` column to every labeled file (train, validation and test; an empty cell is the group "
        f"{MISSING!r}), or leave `data.group_column` unset (`data.group_column=null`) to report no metrics per group."
    )


def group_text(value) -> str:
    """A group cell as text: `(missing)` for an empty or missing cell; 3, 3.0 and "3" are the same group."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or MISSING


def read_groups(table: datasets.Dataset, column: str | None, rows: list[int]) -> list[str] | None:
    """The group of each of `rows` (0-based rows of `table`), or None without a group column."""
    if not column:
        return None
    values = table[column]
    return [group_text(values[i]) for i in rows]
