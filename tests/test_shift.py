"""`textxfer shift`: the two-sample tests tell a shifted pair from an unshifted one, the predicted label
distribution says which classes grew, and bad input is one paragraph."""
import json

import numpy as np
import pytest

from conftest import SAMPLES, write
from textxfer.analysis.shift import classifier_two_sample_auc, label_shift, mmd_permutation_test, verdict


def _blobs(seed: int, n: int, offset: float) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 16))
    x[:, 0] += offset
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_two_sample_tests_separate_a_shifted_pair_from_an_unshifted_one():
    old = _blobs(0, 300, 0.0)
    same, moved = _blobs(1, 300, 0.0), _blobs(2, 300, 3.0)
    assert abs(classifier_two_sample_auc(old, same).auc - 0.5) < 0.08
    assert classifier_two_sample_auc(old, moved).auc > 0.85
    unshifted, shifted = mmd_permutation_test(old, same, 200), mmd_permutation_test(old, moved, 200)
    assert unshifted.p_value > 0.05 and shifted.p_value < 0.01
    assert shifted.mmd2 > unshifted.mmd2 and shifted.p_value >= 1 / 201


def test_label_shift_names_the_classes_that_grew_and_shrank():
    change = label_shift(["a"] * 50 + ["b"] * 50, ["a"] * 80 + ["b"] * 20, ["a", "b", "c"])
    assert change["grew"] == ["a"] and change["shrank"] == ["b"]
    assert change["change"]["a"] == pytest.approx(0.3) and change["total_variation"] == pytest.approx(0.3)
    multi = label_shift([["a", "b"], ["a"]], [["c"]], ["a", "b", "c"])
    assert multi["train_share"]["a"] == pytest.approx(2 / 3) and multi["predicted_share"]["c"] == 1.0


def test_verdict_levels():
    assert verdict(0.5, 0.6) == "none"
    assert verdict(0.52, 0.01) == "slight"
    assert verdict(0.7, 0.001) == "moderate"
    assert verdict(0.95, 0.001) == "strong"


@pytest.mark.parametrize("run_name", ["tiny_fe_run", "tiny_full_run"])
def test_shift_separates_other_texts_from_more_of_the_same(tmp_path, cli, request, run_name):
    """The runs trained on the small tickets sample: the tickets' test file holds the same intents (no
    shift expected); the newsgroup posts are another domain. A feature_extraction run is compared on its
    own backbone, a full run on its base model."""
    run = request.getfixturevalue(run_name)
    code, same_out, err = cli("shift", run, SAMPLES / "tickets_test.csv", "--output", tmp_path / "same")
    assert code == 0, err
    code, other_out, err = cli("shift", run, SAMPLES / "newsgroups_test.jsonl", "--output", tmp_path / "other")
    assert code == 0, err
    same = json.loads((tmp_path / "same" / "shift.json").read_text())
    other = json.loads((tmp_path / "other" / "shift.json").read_text())
    assert other["classifier_two_sample"]["auc"] > 0.9 > same["classifier_two_sample"]["auc"] + 0.2
    assert other["mmd"]["p_value"] < 0.01 and same["mmd"]["p_value"] > other["mmd"]["p_value"]
    assert other["verdict"] == "strong" and same["verdict"] in ("none", "slight")
    assert same["texts"] == {"training": 60, "new": 400, "compared_training": 60, "compared_new": 400}
    assert abs(sum(same["labels"]["predicted_share"].values()) - 1) < 1e-6
    assert (tmp_path / "other" / "shift.png").stat().st_size > 10_000
    assert "strong shift" in other_out and "two-sample AUC" in other_out and str(tmp_path / "other") in other_out


def test_a_txt_file_and_a_subsample(tmp_path, cli, tiny_fe_run):
    lines = [row.split(",")[0] for row in (SAMPLES / "tickets_test.csv").read_text().splitlines()[1:]]
    new = write(tmp_path, "new.txt", "\n".join(lines) + "\n")
    code, _, err = cli("shift", tiny_fe_run, new, "--output", tmp_path / "out", "--max-texts", "50")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "shift.json").read_text())
    assert report["texts"]["compared_new"] == 50 and report["texts"]["new"] == len(lines)


@pytest.mark.parametrize("make_args, words", [
    (lambda tmp, run: [run, tmp / "nope.csv"], ["nope.csv", "does not exist"]),
    (lambda tmp, run: [run, tmp / "nope.txt"], ["nope.txt", "does not exist"]),
    (lambda tmp, run: [run, write(tmp, "other.csv", "body\nhello there\n")], ["other.csv", "`text`", "--text-column"]),
    (lambda tmp, run: [tmp / "plain", SAMPLES / "tickets_test.csv"], ["plain is not a textxfer run folder"]),
    (lambda tmp, run: [run, SAMPLES / "tickets_test.csv", "--max-texts", "3"], ["--max-texts", "at least 10"]),
    (lambda tmp, run: [run, write(tmp, "few.txt", "one\ntwo\n")], ["few.txt", "2 text(s)", "at least 10"]),
])
def test_bad_input_is_one_paragraph_and_exit_2(tmp_path, cli, tiny_fe_run, make_args, words):
    (tmp_path / "plain").mkdir()  # a folder that is not a run
    code, _, err = cli("shift", *make_args(tmp_path, tiny_fe_run), "--output", tmp_path / "out")
    assert code == 2, err
    assert err.startswith("textxfer: error: ") and err.strip().count("\n") == 0
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists()
