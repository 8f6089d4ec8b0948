"""Reading labeled tables (CSV, TSV, JSONL, parquet) into `datasets.Dataset` objects.

Every failure becomes a `TextxferError` that names the file and, where it can be found, the line:
a user should never see a traceback from deep inside pandas, pyarrow or datasets.
"""
from __future__ import annotations

import codecs
import csv
import json
import logging
from pathlib import Path

import datasets
from datasets import Features, Value

from ..errors import TextxferError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "json", ".ndjson": "json",
           ".json": "json", ".parquet": "parquet"}
_UTF8_BOM = codecs.BOM_UTF8

datasets.disable_progress_bars()
logging.getLogger("datasets").setLevel(logging.ERROR)


def file_format(path: Path) -> str:
    """`csv`, `tsv`, `json` or `parquet`, from the file name."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TextxferError(
            f"Cannot tell the format of {path} from its extension `{path.suffix}`. "
            f"Use one of {', '.join(sorted(FORMATS))} (rename the file if its content is one of these)."
        )
    return fmt


def _setting(role: str) -> str:
    """Where the user named a file of this role: a recipe key, or the INPUT argument of `textxfer predict`."""
    return "the INPUT argument of `textxfer predict`" if role == "input" else f"`data.{role}` in the recipe"


def check_readable(path: str | Path, role: str = "data") -> str:
    """Refuse a path that is missing, a folder, or of no known format (cheap: run it before loading a
    model); returns the format."""
    path = Path(path)
    if not path.exists():
        fix = "Check the path" if role == "input" else f"Check `data.{role}` in the recipe or pass `data.{role}=PATH`"
        raise TextxferError(f"The {role} file {path} does not exist (looked in {path.resolve().parent}). {fix}.")
    if not path.is_file():
        raise TextxferError(f"The {role} path {path} is a folder, not a file; point {_setting(role)} at a CSV, TSV, "
                            f"JSONL or parquet file.")
    return file_format(path)


def read_table(path: str | Path, encoding: str = "utf-8", role: str = "data") -> datasets.Dataset:
    """Read one labeled file into a `Dataset`; CSV/TSV cells are kept as strings, exactly as written.

    `role` ("train", "validation", "test", ...) is only used to make error messages precise.
    """
    path = Path(path)
    fmt = check_readable(path, role)
    if path.stat().st_size == 0 or (fmt != "parquet" and not path.read_bytes()[:65536].strip(b" \t\r\n" + _UTF8_BOM)):
        raise TextxferError(f"The {role} file {path} is empty. Give it a header row and at least one labeled row.")
    if fmt == "parquet":
        table = _load(path, "parquet", role)
    else:
        encoding = _check_encoding(path, encoding, role)
        table = _read_csv(path, fmt, encoding, role) if fmt in ("csv", "tsv") else _read_json(path, encoding, role)
    if len(table) == 0:
        raise TextxferError(f"The {role} file {path} has a header but no data rows. Add labeled rows to it.")
    return table


def _check_encoding(path: Path, encoding: str, role: str) -> str:
    """Decode the file once, in chunks; name the line of the first bad byte. Returns the codec to use."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise TextxferError(f"`data.encoding` is {encoding!r}, which Python does not know; try utf-8, latin-1 or cp1252.") from None
    with path.open("rb") as fh:
        head = fh.read(3)
    if head == _UTF8_BOM and codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # a BOM is common in files saved by Excel: strip it, don't keep it in the header
    decoder = codecs.getincrementaldecoder(encoding)()
    lines_before = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = lines_before + chunk[: exc.start].count(b"\n") + 1
                bad = chunk[exc.start: exc.start + 4]
                raise TextxferError(
                    f"The {role} file {path} is not valid {encoding} text: line {line} contains the bytes {bad!r}. "
                    f"Save the file as UTF-8, or tell textxfer its encoding with `data.encoding=latin-1` "
                    f"(or cp1252, utf-16, ...)."
                ) from None
            lines_before += chunk.count(b"\n")
    return encoding


def _header(path: Path, delimiter: str, encoding: str) -> list[str]:
    with path.open(encoding=encoding, newline="") as fh:
        return next(csv.reader(fh, delimiter=delimiter), [])


def _read_csv(path: Path, fmt: str, encoding: str, role: str) -> datasets.Dataset:
    delimiter = "\t" if fmt == "tsv" else ","
    header = _header(path, delimiter, encoding)
    names = [h.strip() for h in header]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise TextxferError(
            f"The header row of the {role} file {path} has empty or repeated column names: {header}. "
            f"Give every column a unique name."
        )
    features = Features({name: Value("string") for name in header})
    try:
        # na_filter=False keeps texts like "NA" or "None" and empty cells as strings, never NaN.
        return _load(path, "csv", role, sep=delimiter, encoding=encoding, na_filter=False, features=features)
    except _LoadFailed:
        raise _diagnose_csv(path, delimiter, encoding, len(header), role) from None


def _read_json(path: Path, encoding: str, role: str) -> datasets.Dataset:
    try:
        return _load(path, "json", role, encoding=encoding)
    except _LoadFailed as failure:
        raise _diagnose_json(path, encoding, role, failure.reason) from None


class _LoadFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _load(path: Path, builder: str, role: str, **kwargs) -> datasets.Dataset:
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except ValueError as exc:
        if "corresponds to no data" in str(exc):
            return datasets.Dataset.from_dict({})  # header only: reported by the caller
        raise _LoadFailed(_root_message(exc)) from exc
    except Exception as exc:  # datasets wraps pandas/pyarrow errors in DatasetGenerationError
        if builder == "parquet":
            raise TextxferError(f"Could not read the {role} file {path} as parquet: {_root_message(exc)}.") from None
        raise _LoadFailed(_root_message(exc)) from exc


def _root_message(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _diagnose_csv(path: Path, delimiter: str, encoding: str, n_columns: int, role: str) -> TextxferError:
    """Find the first line that makes the file unreadable and explain it."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    with path.open(encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        start_line = 1
        try:
            for row_number, row in enumerate(reader):
                if row and len(row) != n_columns:
                    return TextxferError(
                        f"The {role} file {path} is not a valid {kind} file: the record starting on line {start_line} "
                        f"(data row {row_number}) has {len(row)} fields but the header has {n_columns}. "
                        f"Quote fields that contain `{delimiter!s}` (\"like, this\") or fix that row."
                    )
                start_line = reader.line_num + 1
        except csv.Error as exc:
            return TextxferError(
                f"The {role} file {path} is not a valid {kind} file: the record starting on line {start_line} "
                f"cannot be parsed ({exc}). This is usually a quote that is opened but never closed; "
                f"write a literal quote inside a quoted field as two quotes (\"\")."
            )
    return TextxferError(f"Could not read the {role} file {path} as {kind}. Check that it is a well-formed {kind} file with a header row.")


def _diagnose_json(path: Path, encoding: str, role: str, reason: str) -> TextxferError:
    if path.suffix.lower() == ".json":
        try:
            json.loads(path.read_text(encoding=encoding))
            return TextxferError(f"Could not read the {role} file {path}: {reason}. Use JSON Lines: one JSON object per line.")
        except json.JSONDecodeError:
            pass
    with path.open(encoding=encoding) as fh:
        for line_number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                return TextxferError(
                    f"The {role} file {path} has an invalid JSON line: line {line_number}, column {exc.colno}: "
                    f"{exc.msg}. Each line of a JSONL file must be one complete JSON object, "
                    f'e.g. {{"text": "my card was charged twice", "label": "charge"}}.'
                )
            if not isinstance(value, dict):
                return TextxferError(
                    f"Line {line_number} of the {role} file {path} is a JSON {type(value).__name__}, not an object. "
                    f'Each line must be an object such as {{"text": "...", "label": "..."}}.'
                )
    return TextxferError(
        f"Could not read the {role} file {path} as JSON Lines: {reason}. Check that each column holds one type "
        f"(all labels strings, or all integers) and that each line is a JSON object."
    )
