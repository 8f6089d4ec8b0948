"""Batch prediction at scale: a file read in chunks is written exactly as a file read at once, errors in a
later chunk name the right row, and two processes under `accelerate launch` write the bytes one writes."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, TICKETS
from textxfer import load_classifier
from textxfer.data.streaming import iter_chunks
from textxfer.inference.batch import predict_file


def _ticket_rows(n: int | None = None) -> list[dict]:
    with open(TICKETS["test"], encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:n] if n else rows


def _inputs(folder: Path, n: int = 120) -> dict[str, Path]:
    """The first `n` test tickets as CSV (with a blank line and a quoted comma), JSONL (a key missing
    from the first line) and parquet."""
    rows = _ticket_rows(n)
    rows[3]["text"] = 'an "odd", quoted text'
    paths = {fmt: folder / f"in.{fmt}" for fmt in ("csv", "jsonl", "parquet")}
    with paths["csv"].open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:50])
        fh.write("\n")
        writer.writerows(rows[50:])
    with paths["jsonl"].open("w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            fh.write(json.dumps({"text": row["text"], **({"ticket_id": i} if i else {})}) + "\n")
    pq.write_table(pa.table({"text": [r["text"] for r in rows], "n": list(range(len(rows)))}), paths["parquet"])
    return paths


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_file_read_in_chunks_is_written_as_if_read_at_once(tmp_path, tiny_full_run, fmt):
    source = _inputs(tmp_path)[fmt]
    clf = load_classifier(tiny_full_run)
    chunks = list(iter_chunks(source, 7))
    assert [c.first_row for c in chunks] == list(range(0, 120, 7)) and sum(len(c.table) for c in chunks) == 120
    out_fmt = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}[fmt]
    whole, chunked = tmp_path / f"whole.{out_fmt}", tmp_path / f"chunked.{out_fmt}"
    assert predict_file(clf, source, whole, chunk_rows=100_000) == 120
    assert predict_file(clf, source, chunked, chunk_rows=7) == 120
    if fmt == "parquet":
        assert pq.read_table(whole).equals(pq.read_table(chunked))
    else:
        assert whole.read_bytes() == chunked.read_bytes()
    # ... and both equal the prediction of the texts in one call, in input order
    texts = [r["text"] for r in _ticket_rows(120)]
    texts[3] = 'an "odd", quoted text'
    expected = clf.predict(texts)
    if fmt == "parquet":
        got = pq.read_table(chunked).column("predicted_label").to_pylist()
    elif fmt == "jsonl":
        lines = [json.loads(line) for line in chunked.read_text(encoding="utf-8").splitlines()]
        got = [r["predicted_label"] for r in lines]
        assert lines[0]["ticket_id"] is None and lines[5]["ticket_id"] == 5  # a key the first line lacks
    else:
        with chunked.open(encoding="utf-8", newline="") as fh:
            got = [r["predicted_label"] for r in csv.DictReader(fh)]
    assert got == expected


def test_an_empty_text_in_a_later_chunk_is_named_by_its_row_in_the_file(tmp_path, tiny_full_run, cli):
    rows = _ticket_rows(40)
    rows[29]["text"] = "   "
    source = tmp_path / "in.csv"
    with source.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, _, err = cli("predict", tiny_full_run, source, "-o", tmp_path / "out.csv", "--chunk-rows", "8")
    assert code == 2 and "Traceback" not in err
    assert "row 30 (not counting the header)" in err and str(source) in err
    assert not (tmp_path / "out.csv").exists(), "no half-written output"
    code, _, err = cli("predict", tiny_full_run, source, "-o", tmp_path / "out.csv", "--chunk-rows", "0")
    assert code == 2 and "--chunk-rows" in err


def test_too_many_fields_on_a_csv_line_is_a_clear_error(tmp_path, tiny_full_run, cli):
    source = tmp_path / "in.csv"
    source.write_text("text,label\nhello,a\nmy card, it broke,b\n", encoding="utf-8")
    code, _, err = cli("predict", tiny_full_run, source, "-o", tmp_path / "out.csv")
    assert code == 2 and "line 3" in err and "quoted" in err and "Traceback" not in err


def test_two_processes_write_exactly_what_one_writes(tmp_path, tiny_full_run):
    source = _inputs(tmp_path, 400)["csv"]  # 300-row chunks: 5 + 2 batches of 64, so both processes work
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one = tmp_path / "one.csv"
    done = subprocess.run([sys.executable, "-m", "textxfer.predict", str(tiny_full_run), str(source), "-o", str(one),
                           "--chunk-rows", "300"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = tmp_path / "two.csv"
    accelerate = Path(sys.executable).with_name("accelerate")
    done = subprocess.run([str(accelerate), "launch", "--config_file", str(ROOT / "recipes/accelerate/cpu.yaml"),
                           "-m", "textxfer.predict", str(tiny_full_run), str(source), "-o", str(two),
                           "--chunk-rows", "300"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(2 processes)" in done.stdout + done.stderr
    assert two.read_bytes() == one.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
