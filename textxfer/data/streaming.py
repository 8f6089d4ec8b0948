"""Reading a table to classify in chunks of rows, so a file larger than memory never loads at once.

Each chunk is a small `datasets.Dataset` holding exactly what `read_table` would give for those rows
(CSV/TSV cells as strings, as written; JSONL values as parsed), so the text checks and the prediction
writer are the same code for a chunk as for a whole file, and a file read in chunks is written out
byte for byte as a file read at once. CSV/TSV are read with Python's csv module, JSONL line by line,
parquet by row batches; a `.json` file (one JSON document) cannot be split and is read whole.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import Features, Value

from ..errors import TextxferError
from .io import _UTF8_BOM, _check_encoding, _header, check_readable, read_table

DEFAULT_CHUNK_ROWS = 20_000
csv.field_size_limit(1 << 30)  # long texts (contracts) in one cell are normal here


@dataclass
class Chunk:
    """Rows `first_row` .. `first_row + len(table) - 1` (0-based data rows) of the file."""
    first_row: int
    table: datasets.Dataset


def iter_chunks(path: str | Path, rows: int = DEFAULT_CHUNK_ROWS, encoding: str = "utf-8",
                role: str = "input") -> Iterator[Chunk]:
    """The file's data rows, `rows` at a time, in file order. Refuses an empty file or one with a
    header and no rows (one paragraph, naming the file), as `read_table` does."""
    path = Path(path)
    fmt = check_readable(path, role)
    if path.stat().st_size == 0 or (fmt != "parquet" and not _head(path).strip(b" \t\r\n" + _UTF8_BOM)):
        raise TextxferError(f"The {role} file {path} is empty. Give it a header row and at least one row to classify.")
    if fmt == "parquet":
        chunks = _parquet_chunks(path, rows)
    elif fmt in ("csv", "tsv"):
        chunks = _csv_chunks(path, fmt, rows, _check_encoding(path, encoding, role), role)
    elif path.suffix.lower() == ".json":
        chunks = _whole_file_chunks(path, rows, encoding, role)
    else:
        chunks = _jsonl_chunks(path, rows, _check_encoding(path, encoding, role), role)
    empty = True
    for chunk in chunks:
        empty = False
        yield chunk
    if empty:
        raise TextxferError(f"The {role} file {path} has a header but no data rows. Add rows to classify.")


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(65536)


def _csv_chunks(path: Path, fmt: str, rows: int, encoding: str, role: str) -> Iterator[Chunk]:
    delimiter = "\t" if fmt == "tsv" else ","
    header = _header(path, delimiter, encoding)
    names = [h.strip() for h in header]
    if not header or any(not n for n in names) or len(set(names)) != len(names):
        raise TextxferError(f"The header row of the {role} file {path} has empty or repeated column names: {header}. "
                            f"Give every column a unique name.")
    features = Features({name: Value("string") for name in header})
    with path.open(encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader)
        buffer, first, index = [], 0, 0
        for record in reader:
            if not record:  # a blank line is no row (as pandas, behind `read_table`, skips it)
                continue
            if len(record) > len(header):
                raise TextxferError(
                    f"The {role} file {path} has {len(record)} fields at line {reader.line_num}, but its header names "
                    f"{len(header)} columns. A text with a `{delimiter}` in it must be quoted (\"...\"); check that "
                    f"line's quotes, or give the missing column a name.")
            buffer.append(record + [None] * (len(header) - len(record)))
            index += 1
            if len(buffer) == rows:
                yield Chunk(first, _from_records(header, buffer, features))
                buffer, first = [], index
        if buffer:
            yield Chunk(first, _from_records(header, buffer, features))


def _from_records(header: list[str], records: list[list], features: Features) -> datasets.Dataset:
    return datasets.Dataset.from_dict({name: [r[j] for r in records] for j, name in enumerate(header)},
                                      features=features)


def _jsonl_chunks(path: Path, rows: int, encoding: str, role: str) -> Iterator[Chunk]:
    names = _jsonl_keys(path, encoding, role)  # every chunk gets every column, in first-seen order
    with path.open(encoding=encoding) as fh:
        buffer, first, index = [], 0, 0
        for record in _jsonl_records(fh, path, role):
            buffer.append(record)
            index += 1
            if len(buffer) == rows:
                yield Chunk(first, _from_objects(names, buffer, path, first, role))
                buffer, first = [], index
        if buffer:
            yield Chunk(first, _from_objects(names, buffer, path, first, role))


def _jsonl_records(fh, path: Path, role: str) -> Iterator[dict]:
    for line_number, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TextxferError(f"The {role} file {path} is not valid JSON Lines: line {line_number}: {exc.msg} "
                                f"(column {exc.colno}). Each line must be one JSON object, e.g. "
                                f"{{\"text\": \"...\"}}.") from None
        if not isinstance(record, dict):
            raise TextxferError(f"The {role} file {path} has {type(record).__name__} at line {line_number}, not an "
                                f"object. Each line must be one JSON object, e.g. {{\"text\": \"...\"}}.")
        yield record


def _jsonl_keys(path: Path, encoding: str, role: str) -> list[str]:
    """The union of the objects' keys in first-seen order: one cheap pass, so that chunks agree."""
    names: dict[str, None] = {}
    with path.open(encoding=encoding) as fh:
        for record in _jsonl_records(fh, path, role):
            names.update(dict.fromkeys(record))
    return list(names)


def _from_objects(names: list[str], records: list[dict], path: Path, first: int, role: str) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_dict({n: [r.get(n) for r in records] for n in names})
    except Exception as exc:  # pyarrow: one column holding, say, numbers and strings
        raise TextxferError(f"The {role} file {path} mixes value types within a field in the lines from "
                            f"{first + 1} on ({str(exc).splitlines()[0][:160]}). Give each field one type (quote "
                            f"numbers that are labels or ids).") from None


def _parquet_chunks(path: Path, rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    first = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        if batch.num_rows:
            yield Chunk(first, datasets.Dataset.from_dict(batch.to_pydict()))
            first += batch.num_rows


def _whole_file_chunks(path: Path, rows: int, encoding: str, role: str) -> Iterator[Chunk]:
    table = read_table(path, encoding, role)
    for first in range(0, len(table), rows):
        yield Chunk(first, table.select(range(first, min(first + rows, len(table)))))
