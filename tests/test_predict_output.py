"""What `predict` writes: the user's columns kept, the extension's format, spreadsheet formulas defused,
and clear errors for a run folder without safetensors weights."""
import csv
import io
import json
import shutil

import pytest

from conftest import TICKETS, copy_run, tiny_recipe, write
from textxfer import load_classifier
from textxfer.data.tables_out import escape_formula


def rows_of(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("textxfer: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_input_columns_named_like_the_prediction_are_kept(tmp_path, tiny_full_run, cli):
    source = rows_of(TICKETS["test"])[:30]
    with open(tmp_path / "in.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "score", "predicted_label", "score_1"])
        writer.writerows([r["text"], "my score", "my label", "mine too"] for r in source)
    code, _, err = cli("predict", tiny_full_run, tmp_path / "in.csv", "-o", tmp_path / "out.csv")
    assert code == 0, err
    assert "renamed" in err and "`score` -> `score_2`" in err and "`predicted_label` -> `predicted_label_1`" in err
    rows = rows_of(tmp_path / "out.csv")
    assert list(rows[0]) == ["text", "score", "predicted_label", "score_1", "predicted_label_1", "score_2"]
    assert all(r["score"] == "my score" and r["predicted_label"] == "my label" and r["score_1"] == "mine too"
               for r in rows)
    clf = load_classifier(tiny_full_run)
    assert [r["predicted_label_1"] for r in rows] == clf.predict([r["text"] for r in source])


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".tsv"])
def test_the_output_format_follows_the_extension(tmp_path, tiny_full_run, cli, suffix):
    import pyarrow.parquet as pq

    out = tmp_path / f"out{suffix}"
    code, _, err = cli("predict", tiny_full_run, TICKETS["test"], "-o", out)
    assert code == 0, err
    expected = rows_of(tiny_full_run / "predictions_test.csv")
    if suffix == ".parquet":
        got = pq.read_table(out).to_pylist()
    elif suffix == ".jsonl":
        got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        got = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")), delimiter="\t"))
    assert len(got) == len(expected) == 400
    assert [g["predicted_label"] for g in got] == [e["predicted_label"] for e in expected]
    assert [g["text"] for g in got] == [e["text"] for e in expected]
    if suffix != ".tsv":  # typed formats keep numbers as numbers
        assert all(isinstance(g["score"], float) and abs(g["score"] - float(e["score"])) < 1e-6
                   for g, e in zip(got, expected))


@pytest.mark.parametrize("name", ["out.json", "out.xlsx", "out", "out.txt"])
def test_unknown_output_formats_are_refused_before_the_model_loads(tmp_path, cli, name):
    code, _, err = cli("predict", tmp_path / "no-such-run", TICKETS["test"], "-o", tmp_path / name)
    assert code == 2 and name in error_line(err) and ".parquet" in err
    assert not (tmp_path / name).exists()


def test_the_input_is_checked_before_the_model_loads_and_never_overwritten(tmp_path, tiny_full_run, cli):
    code, _, err = cli("predict", tmp_path / "no-such-run", tmp_path / "missing.csv", "-o", tmp_path / "o.csv")
    assert code == 2 and "missing.csv" in error_line(err) and "data.input" not in err
    copy = shutil.copy(TICKETS["test"], tmp_path / "tickets.csv")
    before = (tmp_path / "tickets.csv").read_bytes()
    code, _, err = cli("predict", tiny_full_run, copy, "-o", copy)
    assert code == 2 and "input file itself" in error_line(err)
    assert (tmp_path / "tickets.csv").read_bytes() == before


HOSTILE_LABEL = "=HYPERLINK(\"http://x\",\"card\")"
HOSTILE_TEXTS = ["=1+2 my card", "+SUM(A1) where is my card", "-2+3 card arrival?", "@cmd card", "\tcard tab",
                 "my card arrives when?"]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, tiny_bert):
    """A run whose training labels and test texts hold spreadsheet formulas."""
    from textxfer import load_recipe, train

    folder = tmp_path_factory.mktemp("hostile")
    train_rows = open(TICKETS["train"], encoding="utf-8").read().replace("card_arrival", f'"{HOSTILE_LABEL.replace(chr(34), chr(34) * 2)}"')
    write(folder, "train.csv", train_rows)
    with open(folder / "test.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label", "amount"])
        writer.writerows([text, HOSTILE_LABEL, "-5"] for text in HOSTILE_TEXTS)
    train(load_recipe(tiny_recipe(folder, tiny_bert, epochs=1, data={"train": str(folder / "train.csv"),
                                                                       "test": str(folder / "test.csv")})))
    return folder


def test_formula_cells_are_escaped_in_csv_and_predict_reproduces_the_file(hostile_run, cli, tmp_path):
    run = hostile_run / "run"
    rows = rows_of(run / "predictions_test.csv")
    assert [r["text"] for r in rows] == ["'" + t if t[0] in "=+-@\t" else t for t in HOSTILE_TEXTS]
    assert all(r["label"] == "'" + HOSTILE_LABEL for r in rows)
    assert all(r["amount"] == "-5" for r in rows), "plain numbers are not formulas"
    assert not any(cell.startswith(("=", "+", "@", "\t")) for r in rows for cell in r.values())
    predicted = [r["predicted_label"] for r in rows]
    assert all(not p.startswith("=") for p in predicted)

    code, _, err = cli("predict", run, hostile_run / "test.csv", "-o", tmp_path / "again.csv")
    assert code == 0, err
    assert (tmp_path / "again.csv").read_bytes() == (run / "predictions_test.csv").read_bytes()

    code, _, err = cli("predict", run, hostile_run / "test.csv", "-o", tmp_path / "raw.csv", "--raw-csv")
    assert code == 0, err
    assert [r["text"] for r in rows_of(tmp_path / "raw.csv")] == HOSTILE_TEXTS
    code, _, err = cli("predict", run, hostile_run / "test.csv", "-o", tmp_path / "raw.jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in lines] == HOSTILE_TEXTS and lines[0]["label"] == HOSTILE_LABEL


@pytest.mark.parametrize("cell,escaped", [("=1+1", "'=1+1"), ("+1", "+1"), ("-1.5e3", "-1.5e3"), ("-x", "'-x"),
                                          ("@SUM(1)", "'@SUM(1)"), ("\r=1", "'\r=1"), ("a=1", "a=1"), ("", "")])
def test_escaping_follows_owasp(cell, escaped):
    assert escape_formula(cell) == escaped


@pytest.mark.parametrize("remove,pickle", [("model.safetensors", None), ("model.safetensors", "pytorch_model.bin")])
def test_a_run_without_safetensors_weights_is_a_clear_error(tmp_path, tiny_full_run, cli, remove, pickle):
    run = copy_run(tiny_full_run, tmp_path)
    (run / remove).unlink()
    if pickle:
        (run / pickle).write_bytes(b"not loaded")
    code, _, err = cli("predict", run, TICKETS["test"], "-o", tmp_path / "o.csv")
    assert code == 2 and "model.safetensors" in error_line(err) and "missing" in err
    assert ("pickled" in err and "pytorch_model.bin" in err) if pickle else "pickled" not in err


def test_commands_are_quiet_by_default_and_verbose_on_request(tmp_path, tiny_lora_run):
    """Only textxfer's own lines by default: no load reports or file progress bars from transformers, no
    note from bitsandbytes about an optional kernels package; `-v` shows what the libraries print."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "textxfer", "predict", str(tiny_lora_run), TICKETS["test"], "-o",
               str(tmp_path / "p.csv")]
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    lines = [line for line in (quiet.stdout + quiet.stderr).replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all(line.startswith("textxfer") for line in lines), lines
    loud = subprocess.run([sys.executable, "-m", "textxfer", "-v", *command[3:]], env=env, capture_output=True,
                          text=True, timeout=300)
    assert loud.returncode == 0 and ("LOAD REPORT" in loud.stderr or "Loading weights" in loud.stderr), loud.stderr
