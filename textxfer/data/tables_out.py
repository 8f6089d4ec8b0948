"""Writing prediction tables: the input's columns kept as they are, the prediction's added beside them.

The format follows the output file's extension (CSV, TSV, JSONL, parquet); anything else is refused
before any work. CSV and TSV cells that a spreadsheet would run as a formula (starting with `=`, `+`,
`-`, `@`, a tab or a carriage return) are escaped the OWASP way, with a leading `'`, unless raw
output is asked for; JSONL and parquet hold the values as they are. The file is written beside its
final name and renamed into place, so it is never half-written.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import TextxferError
from ..fsutil import atomic_file
from ..log import get_logger, note

log = get_logger()

OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def output_format(path: str | Path) -> str:
    """`csv`, `tsv`, `jsonl` or `parquet` from the output's extension; a clear error for anything else."""
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TextxferError(f"Cannot write predictions to {path}: textxfer writes {', '.join(sorted(OUTPUT_FORMATS))} "
                            f"files, chosen by the extension, and `{path.suffix or '(none)'}` is not one of them. "
                            f"Name the output e.g. `{path.with_suffix('.csv').name}`"
                            + (" (JSON Lines: `.jsonl`)." if path.suffix.lower() == ".json" else "."))
    return fmt


def check_output_path(output: str | Path, inputs: list[str | Path] = ()) -> None:
    """Refuse, before any work, an output that has no known format, is a folder, or is one of the inputs."""
    output = Path(output)
    output_format(output)
    if output.is_dir():
        raise TextxferError(f"The output {output} is a folder; give a file name such as {output / 'predictions.csv'}.")
    for source in inputs:
        if Path(source).exists() and output.exists() and output.resolve() == Path(source).resolve():
            raise TextxferError(f"The output {output} is the input file itself; textxfer does not overwrite its "
                                f"input. Give another output name, e.g. `{output.with_stem(output.stem + '-predicted')}`.")


def escape_formula(cell: str) -> str:
    """OWASP CSV-injection escaping: a leading `'` on a cell a spreadsheet would evaluate (numbers stay)."""
    if cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def added_names(wanted: list[str], existing: list[str]) -> list[str]:
    """Names for the prediction's columns that collide with none of the input's: `score` -> `score_1`."""
    taken, names = set(existing), []
    for name in wanted:
        unique, k = name, 0
        while unique in taken:
            k += 1
            unique = f"{name}_{k}"
        taken.add(unique)
        names.append(unique)
    return names


def write_table(path: str | Path, columns: dict[str, list], escape_formulas: bool = True) -> None:
    """Write `columns` (name -> values, all of one length) in the format of `path`'s extension; lists
    and objects become JSON text in CSV/TSV cells."""
    with TableWriter(path, escape_formulas) as writer:
        writer.write(columns)


class TableWriter:
    """A table written chunk by chunk (`write(columns)` per chunk, the same columns each time) into a
    temporary file beside `path`, renamed over it only when the `with` block ends without error: the
    output is never half-written, and the rows of a file too large for memory stream through."""

    def __init__(self, path: str | Path, escape_formulas: bool = True):
        self.path = Path(path)
        self.format = output_format(self.path)
        self.escape_formulas = escape_formulas
        self._names: list[str] | None = None

    def __enter__(self) -> "TableWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._atomic = atomic_file(self.path, f"the predictions {self.path}")
        tmp = self._atomic.__enter__()
        self._parquet = None
        self._fh = None if self.format == "parquet" else tmp.open("w", encoding="utf-8", newline="")
        self._tmp = tmp
        if self.format in ("csv", "tsv"):
            self._csv = csv.writer(self._fh, delimiter="\t" if self.format == "tsv" else ",")
        return self

    def write(self, columns: dict[str, list]) -> None:
        """Append the rows of `columns` (name -> values)."""
        names, n = list(columns), len(next(iter(columns.values()), []))
        first = self._names is None
        if first:
            self._names = names
        if self.format == "parquet":
            table = pa.table(columns) if first else pa.table(columns).cast(self._parquet.schema)
            if first:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table)
        elif self.format == "jsonl":
            for i in range(n):
                self._fh.write(json.dumps({c: columns[c][i] for c in names}, ensure_ascii=False) + "\n")
        else:
            cell = (lambda v: escape_formula(_text(v))) if self.escape_formulas else _text
            if first:
                self._csv.writerow([cell(c) for c in names])
            for i in range(n):
                self._csv.writerow([cell(columns[c][i]) for c in names])

    def __exit__(self, *exc) -> bool:
        try:
            if self._parquet is not None:
                self._parquet.close()
            elif self.format == "parquet" and exc[0] is None:  # no rows at all: still a valid (empty) file
                pq.write_table(pa.table({}), self._tmp)
            if self._fh is not None:
                self._fh.close()
        except BaseException as failure:  # closing failed (a full disk): the temporary file goes, nothing is renamed
            if not self._atomic.__exit__(type(failure), failure, failure.__traceback__):
                raise
            return False
        return self._atomic.__exit__(*exc)


def note_renamed(wanted: list[str], names: list[str], source: str) -> None:
    """Say which prediction columns were renamed because the input already had columns of that name."""
    renamed = [f"`{w}` -> `{n}`" for w, n in zip(wanted, names) if w != n]
    if renamed:
        note(log, f"{source} already has column(s) of the names textxfer writes; its columns are kept as they are "
                  f"and the prediction's are renamed: {', '.join(renamed)}.")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
