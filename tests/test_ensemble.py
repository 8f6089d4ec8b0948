"""`textxfer ensemble`: the combined probabilities are the members' mean (or geometric mean), the
rule is the one best on validation, the folder reloads and predicts on its own, and members that do
not share one validation split are refused."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_RUN, TICKETS, train_tiny
from textxfer import load_classifier
from textxfer.commands.ensemble import build_ensemble
from textxfer.inference.ensemble import COMBINE_RULES, calibrate_combined, combine
from textxfer.errors import TextxferError

DATA = TICKETS


def _train(tmp: Path, model: str, method: str, seed: int = 1, **train_extra) -> Path:
    return train_tiny(tmp, model, method, **{**SHARED_RUN, "seed": seed, **train_extra})[1]


@pytest.fixture(scope="module")
def members(tiny_full_run, tiny_fe_run):
    return tiny_full_run, tiny_fe_run


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, members):
    out = tmp_path_factory.mktemp("ens") / "ensemble"
    return out, build_ensemble(list(members), out)


def _test_rows():
    with open(DATA["test"], encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_combine_rules_are_the_mean_and_the_normalised_geometric_mean():
    a = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]], dtype=np.float32)
    b = np.array([[0.1, 0.6, 0.3], [0.2, 0.3, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(combine([a, b], "mean_prob"), (a + b) / 2, rtol=1e-6)
    geo = np.sqrt(np.clip(a, 1e-12, 1) * np.clip(b, 1e-12, 1))
    np.testing.assert_allclose(combine([a, b], "mean_log_prob"), geo / geo.sum(1, keepdims=True), rtol=1e-5)
    # a class one member rules out stays unlikely under the geometric mean, not under the mean
    assert combine([a, b], "mean_log_prob")[1, 2] < 1e-4 < combine([a, b], "mean_prob")[1, 2]


def test_ensemble_predicts_the_combined_member_probabilities(ensemble, members):
    out, metrics = ensemble
    clf = load_classifier(out)
    texts = [r["text"] for r in _test_rows()]
    parts = []
    for run in members:
        member = load_classifier(run)
        p = member.predict_proba(texts)
        parts.append(p[:, [member.labels.index(l) for l in clf.labels]])
    expected = calibrate_combined(combine(parts, metrics["combine"]), clf.calibration)
    assert clf.calibration and clf.calibration["temperature"] > 0  # the ensemble's own temperature
    got = clf.predict_proba(texts)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert clf.predict(texts) == [clf.labels[i] for i in expected.argmax(1)]


def test_rule_is_the_best_on_validation_and_test_metrics_match_the_predictions(ensemble):
    out, metrics = ensemble
    rules = metrics["validation"]["rules"]
    assert set(rules) == set(COMBINE_RULES)
    best = max(rules[r]["macro_f1"] for r in COMBINE_RULES)
    assert rules[metrics["combine"]]["macro_f1"] == best
    assert json.loads((out / "textxfer.json").read_text())["combine"] == metrics["combine"]
    with open(out / "predictions_test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(_test_rows())
    accuracy = np.mean([r["predicted_label"] == r["label"] for r in rows])
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy)
    assert len(metrics["members"]) == 2 and all("test" in m and "validation" in m for m in metrics["members"])
    assert (out / "confusion_matrix.png").is_file()


def test_ensemble_folder_is_self_contained(ensemble, members, tmp_path):
    out, _ = ensemble
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    texts = [r["text"] for r in _test_rows()[:8]]
    np.testing.assert_allclose(load_classifier(moved).predict_proba(texts), load_classifier(out).predict_proba(texts),
                               atol=1e-6)
    assert len(list((moved / "members").iterdir())) == 2


def test_cli_predict_on_an_ensemble(ensemble, cli, tmp_path):
    out, _ = ensemble
    code, stdout, err = cli("predict", out, DATA["test"], "-o", tmp_path / "p.csv")
    assert code == 0, err
    with open(tmp_path / "p.csv", encoding="utf-8", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(_test_rows())


def test_members_with_another_seed_are_refused(members, tmp_path, tiny_bert, cli):
    other = _train(tmp_path / "seed2", tiny_bert, "full", seed=2)
    code, _, err = cli("ensemble", members[0], other, "--output", tmp_path / "ens")
    assert code == 2
    assert "train.seed" in err and str(other) in err and str(members[0]) in err
    assert not (tmp_path / "ens").exists()


def test_single_member_duplicates_and_ensembles_of_ensembles_are_refused(members, ensemble, tmp_path):
    with pytest.raises(TextxferError, match="at least two runs"):
        build_ensemble([members[0]], tmp_path / "e1")
    with pytest.raises(TextxferError, match="given twice"):
        build_ensemble([members[0], members[0]], tmp_path / "e2")
    with pytest.raises(TextxferError, match="itself an ensemble"):
        build_ensemble([ensemble[0], members[0]], tmp_path / "e3")


def test_push_and_onnx_refuse_an_ensemble(ensemble, cli, tmp_path):
    out, _ = ensemble
    code, _, err = cli("push", out, "--repo-id", "me/ens", "--dry-run", tmp_path / "dry")
    assert code == 2 and "ensemble" in err
    code, _, err = cli("export-onnx", out, tmp_path / "onnx")
    assert code == 2 and "ensemble" in err
