"""`textxfer audit` and the data checks inside `textxfer train`: exact duplicates and leakage after
normalisation, conflicting labels, where every listed row is in its file, near-duplicates, and
`data.leakage` (warn, error, drop_from_train)."""
import csv
import json
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, TICKETS, tiny_recipe, write, write_recipe
from textxfer.config import DataConfig
from textxfer.data.audit_checks import card_section, find_exact, normalise, summary
from textxfer.data.splits import load_splits

DEMO = ROOT / "recipes" / "tickets_minilm.yaml"


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _file_row(path: str, row: int) -> dict:
    """Data row `row` of a CSV file, counted as the audit counts (from 1, the header not counted)."""
    return _rows(ROOT / path if not Path(path).is_absolute() else Path(path))[row - 1]


def test_normalisation_folds_case_width_and_whitespace():
    assert normalise("  Card\u00a0 ARRIVED\n\tlate ") == "card arrived late"
    assert normalise("\uff23\uff41\uff52\uff44") == "card"  # full-width letters (NFKC)
    assert normalise("STRASSE") == normalise("straße")  # case folding, not just lower()
    assert normalise("\u200b") != ""  # a zero-width space is not whitespace: kept, so such a text is not "empty"


def test_audit_finds_the_duplicate_and_the_overlap_the_samples_readme_documents(tmp_path, tiny_bert, cli):
    """Acceptance 1: data_samples/README.md says 1 train text occurs twice and 1 also occurs in the test
    file; the audit of the demo recipe finds exactly those, with the rows a person can look up."""
    out = tmp_path / "audit"
    code, stdout, err = cli("audit", DEMO, f"model.name={tiny_bert}", "--output", out)
    assert code == 0, err
    report = json.loads((out / "audit.json").read_text())
    assert report["duplicates"]["train"]["extra_rows"] == 1
    assert report["leakage"]["test_in_train"]["rows"] == 1
    assert report["leakage"]["validation_in_train"]["rows"] == 0
    assert report["conflicts"]["groups"] == 0
    assert "1 test row(s) in train" in stdout and str(out) in stdout
    leaked = _rows(out / "leakage.csv")
    assert {(r["split"], Path(r["file"]).name, r["row"]) for r in leaked} == {
        ("test", "tickets_test.csv", "331"), ("train", "tickets_train.csv", "460")}
    for r in leaked + _rows(out / "duplicates.csv"):  # every listed row is where the audit says it is
        assert normalise(_file_row(r["file"], int(r["row"]))["text"]) == normalise(r["text"])
    duplicated = _rows(out / "duplicates.csv")
    assert sorted(int(r["row"]) for r in duplicated) == [474, 930]
    assert {"near_duplicates.csv", "long_texts.csv", "conflicts.csv", "short_texts.csv"} <= {p.name for p in out.iterdir()}
    assert "## Leakage" in (out / "audit.md").read_text()


def test_the_validation_rows_drawn_from_train_keep_their_train_file_rows():
    splits = load_splits(DataConfig(train=TICKETS["train"], test=TICKETS["test"]), seed=3)
    table = _rows(Path(TICKETS["train"]))
    for split in ("train", "validation"):
        origin = splits.origins[split]
        assert origin.path == TICKETS["train"]
        assert [table[i]["text"] for i in origin.rows] == list(getattr(splits, split)["text"])
    assert sorted(splits.origins["train"].rows + splits.origins["validation"].rows) == list(range(len(table)))
    assert splits.origins["test"].rows == list(range(len(splits.test)))


def test_exact_checks_find_conflicts_and_short_texts_and_key_pairs_on_both_texts(tmp_path):
    train = write(tmp_path, "train.csv", "text,label\nMy card is lost,lost\nmy  CARD is lost,found\nhello,greet\n"
                                         "a b,greet\nc d,found\ne f,lost\n")
    found = find_exact(load_splits(DataConfig(train=str(train), validation=str(train)), seed=0))
    assert len(found.conflicts) == 1 and {r.row for r in found.conflicts[0]} == {1, 2}
    assert {r.text for r in found.one_word} == {"hello"}
    report = summary(found, ["found", "greet", "lost"])
    assert report["leakage"]["validation_in_train"]["rows"] == 6  # the same file: every row leaks
    pairs = write(tmp_path, "pairs.csv", "q,a,label\nsame,one,yes\nsame,two,no\nsame,one,yes\n")
    paired = find_exact(load_splits(DataConfig(train=str(pairs), validation=str(pairs), text_column="q",
                                               text_pair_column="a"), seed=0))
    assert [len(g) for g in paired.duplicates["train"]] == [2]  # (same, one) twice; (same, two) is another pair
    assert not paired.conflicts


def test_multi_label_rows_compare_label_sets(tmp_path):
    train = write(tmp_path, "train.csv", "text,labels\nboth,a|b\nBoth,b|a\nother,a\nthird,b\n")
    found = find_exact(load_splits(DataConfig(train=str(train), validation=str(train), label_column="labels",
                                              multi_label=True), seed=0))
    assert not found.conflicts and len(found.duplicates["train"]) == 1


@pytest.mark.parametrize("args, words", [
    (["--near-duplicate-threshold", "1.5"], ["--near-duplicate-threshold", "1.5", "(0, 1]"]),
    (["--near-duplicate-threshold", "0"], ["--near-duplicate-threshold", "(0, 1]"]),
    (["--label-errors", "--folds", "1"], ["--folds", "at least 2"]),
    (["data.train=missing.csv"], ["missing.csv", "does not exist"]),
    (["data.label_column=intent"], ["tickets_train.csv", "`intent`", "data.label_column"]),
])
def test_bad_input_is_one_paragraph_and_exit_2(tmp_path, tiny_bert, cli, args, words):
    code, _, err = cli("audit", DEMO, f"model.name={tiny_bert}", "--output", tmp_path / "audit", *args)
    assert code == 2
    assert err.startswith("textxfer: error: ") and err.strip().count("\n") == 0 and "Traceback" not in err
    for word in words:
        assert word in err
    assert not (tmp_path / "audit").exists()


def test_a_row_of_the_wrong_shape_is_named_by_file_row_and_column(tmp_path, tiny_bert, cli):
    train = write(tmp_path, "train.jsonl", '{"text": "fine", "label": "a"}\n{"text": ["not", "a text"], "label": "b"}\n')
    recipe = write_recipe(tmp_path, data={"train": str(train)}, model={"name": tiny_bert})
    code, _, err = cli("audit", recipe, "--output", tmp_path / "audit", "--no-near-duplicates")
    assert code == 2 and "train.jsonl" in err and "line 2" in err and "`text`" in err


def _leaky_test_file(folder: Path) -> tuple[Path, int]:
    """The test sample plus one text of the small sample's train split (seed 3, as `tiny_recipe` trains),
    re-cased and re-spaced; returns the file and that text's row in the train file."""
    index = load_splits(DataConfig(train=TICKETS["train"]), seed=3).origins["train"].rows[0]
    row = _rows(Path(TICKETS["train"]))[index]
    test = (SAMPLES / "tickets_test.csv").read_text(encoding="utf-8")
    return write(folder, "test.csv", test + f'"  {row["text"].upper()} ",{row["label"]}\n'), index + 1


def test_train_warns_about_leakage_and_lists_it_in_the_run_folder(tmp_path, tiny_bert, cli):
    test, train_row = _leaky_test_file(tmp_path)
    recipe = tiny_recipe(tmp_path, tiny_bert, "feature_extraction", data={"test": str(test)})
    code, _, err = cli("train", recipe)
    assert code == 0, err
    assert "1 of 401 test rows (0.2%) also occur in train" in err and "data.leakage=drop_from_train" in err
    assert str(tmp_path / "run" / "audit.json") in err
    report = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert report["leakage_action"] == "warn" and report["leakage"]["test_in_train"]["rows"] == 1
    listed = report["listed"]["test_in_train"][0]
    assert [(r["split"], r["row"]) for r in listed] == [("test", 401), ("train", train_row)]
    section = card_section(tmp_path / "run")
    assert "1 test row(s) also in train (kept)" in section and listed[0]["text"] not in section


def test_leakage_error_refuses_to_train(tmp_path, tiny_bert, cli):
    recipe = tiny_recipe(tmp_path, tiny_bert, data={"test": str(_leaky_test_file(tmp_path)[0])})
    code, _, err = cli("train", recipe, "data.leakage=error")
    assert code == 2
    assert "1 of 401 test rows" in err and "data.leakage=error" in err and "textxfer audit" in err
    assert err.strip().count("\n") == 0
    assert not (tmp_path / "run").exists()


def test_drop_from_train_trains_without_the_leaked_rows_and_says_so(tmp_path, tiny_bert, cli):
    recipe = tiny_recipe(tmp_path, tiny_bert, "feature_extraction", data={"test": str(_leaky_test_file(tmp_path)[0])})
    code, out, err = cli("train", recipe, "data.leakage=drop_from_train")
    assert code == 0, err
    assert "dropped 1 train row(s)" in err and "data.leakage=drop_from_train" in err
    report = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert report["dropped_from_train"] == 1
    splits = load_splits(DataConfig(train=TICKETS["train"]), seed=3)
    assert f"{len(splits.train) - 1} train" in out  # the run's row count, as training reports it
    assert "dropped from train: 1 row(s)" in card_section(tmp_path / "run")


def test_a_clean_run_has_an_audit_without_findings(tmp_path, tiny_fe_run):
    report = json.loads((tiny_fe_run / "audit.json").read_text())
    assert report["leakage"]["test_in_train"]["rows"] == 0 and report["leakage_action"] == "warn"
    assert "texts shared between splits: none" in card_section(tiny_fe_run)


@pytest.mark.slow
def test_near_duplicates_on_the_demo_data_with_minilm(tmp_path, cli):
    """The real embedded model finds re-worded copies across splits that the exact checks cannot."""
    out = tmp_path / "audit"
    code, _, err = cli("audit", DEMO, "--output", out, "--near-duplicate-threshold", "0.97")
    assert code == 0, err
    pairs = _rows(out / "near_duplicates.csv")
    found = {(Path(p["file"]).name, p["row"], Path(p["nearest_file"]).name, p["nearest_row"]) for p in pairs}
    # "How can I activate my card so I can start using it?" / "How do I activate my card so I can start using it?"
    assert ("tickets_test.csv", "382", "tickets_train.csv", "264") in found
    assert all(float(p["similarity"]) >= 0.97 and normalise(p["text"]) != normalise(p["nearest_text"]) for p in pairs)
    assert json.loads((out / "audit.json").read_text())["near_duplicates"]["test_in_train"] == sum(
        p["finding"] == "test_in_train" for p in pairs)
