"""Calibration (temperature / Platt scaling fitted on validation), its figures, and abstention with the
risk-coverage view: the functions on synthetic data with a known answer, then runs end to end."""
import csv
import json

import numpy as np
import pytest
import torch

from conftest import SAMPLES, copy_run, train_tiny
from textxfer import load_classifier
from textxfer.evaluation.abstention import risk_coverage, threshold_for_coverage
from textxfer.evaluation.calibration import (calibrate, calibration_metrics, expected_calibration_error,
                                             fit_calibration, fit_temperature, reliability_table)
from textxfer.evaluation.decisions import probabilities


def _sampled(logits: torch.Tensor, temperature: float, seed: int = 0) -> torch.Tensor:
    """Labels drawn from softmax(logits / temperature): the temperature that calibrates them is known."""
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(1)


def test_fitted_temperature_recovers_the_one_the_labels_were_drawn_with():
    logits = torch.randn(20000, 6, generator=torch.Generator().manual_seed(0)) * 3
    for true_t in (0.5, 2.0):
        assert fit_temperature(logits, _sampled(logits, true_t)) == pytest.approx(true_t, rel=0.08)


def test_temperature_scaling_lowers_ece_and_nll_of_over_confident_scores_and_keeps_every_label():
    logits = torch.randn(8000, 10, generator=torch.Generator().manual_seed(1)) * 4
    labels = _sampled(logits, 2.5)  # the raw softmax is over-confident
    calibration = fit_calibration(logits[:4000], labels[:4000], multi_label=False)
    raw = probabilities(logits[4000:], False)
    calibrated = probabilities(calibrate(logits[4000:], calibration), False)
    before = calibration_metrics(raw, labels[4000:].numpy(), False)
    after = calibration_metrics(calibrated, labels[4000:].numpy(), False)
    assert before["ece"] > 0.1 and after["ece"] < 0.03  # measured on rows the temperature was not fitted on
    assert after["nll"] < before["nll"] and after["brier"] < before["brier"]
    assert (raw.argmax(1) == calibrated.argmax(1)).all()


def test_ece_is_near_zero_for_calibrated_forecasts_and_the_gap_for_over_confident_ones():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.0, 1.0, 50000)
    calibrated_outcome = rng.uniform(size=confidence.size) < confidence
    assert expected_calibration_error(confidence, calibrated_outcome) < 0.01
    always_sure = np.full(1000, 0.9)
    right_half_the_time = np.arange(1000) % 2 == 0
    assert expected_calibration_error(always_sure, right_half_the_time) == pytest.approx(0.4)
    table = reliability_table(confidence, calibrated_outcome)
    assert len(table) == 15 and sum(row["count"] for row in table) == confidence.size
    assert reliability_table(np.array([1.0]), np.array([1.0]))[-1]["count"] == 1  # 1.0 lands in the last bin


def test_multi_label_calibration_is_per_label_and_picks_platt_only_when_a_bias_is_needed():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(3000, 4, generator=generator) * 2
    scaled = torch.bernoulli(torch.sigmoid(logits / 2.0), generator=generator)  # only a scale is off
    shifted = torch.bernoulli(torch.sigmoid(logits - 1.5), generator=generator)  # a bias is off
    by_scale = fit_calibration(logits, scaled, multi_label=True)
    by_shift = fit_calibration(logits, shifted, multi_label=True)
    assert by_scale["method"] == "temperature" and np.allclose(by_scale["scale"], 0.5, atol=0.08)
    assert by_shift["method"] == "platt" and np.allclose(by_shift["bias"], -1.5, atol=0.2)
    # a label never positive on validation keeps its raw logits (nothing to fit it on)
    silent = shifted.clone()
    silent[:, 3] = 0
    assert fit_calibration(logits, silent, multi_label=True)["scale"][3] == 1.0


def test_risk_coverage_reports_the_accuracy_of_the_most_confident_share():
    confidence = np.linspace(1.0, 0.01, 100)  # ranked: the first 80 right, the last 20 wrong
    correct = np.arange(100) < 80
    view = risk_coverage(confidence, correct)
    assert view["accuracy_at_coverage"]["0.8"]["accuracy"] == 1.0
    assert view["accuracy_at_coverage"]["1"]["accuracy"] == pytest.approx(0.8)
    assert view["coverage_at_accuracy"]["0.99"]["coverage"] == pytest.approx(0.8)
    assert view["accuracy_at_coverage"]["0.9"]["accuracy"] == pytest.approx(80 / 90)
    threshold = threshold_for_coverage(confidence, 0.9)
    assert (confidence >= threshold).sum() == 90


def test_a_run_is_calibrated_on_validation_and_reports_the_figures_and_plots(tiny_full_run):
    info = json.loads((tiny_full_run / "textxfer.json").read_text())
    metrics = json.loads((tiny_full_run / "metrics.json").read_text())
    assert info["calibration"]["method"] == "temperature" and info["calibration"]["temperature"] > 0
    test = metrics["test"]
    assert set(test["calibration"]) >= {"before", "after", "temperature", "reliability_before", "reliability_after"}
    for figures in (test["calibration"]["before"], test["calibration"]["after"]):
        assert set(figures) == {"ece", "brier", "nll", "n"} and figures["n"] == test["n"]
    assert metrics["validation"]["calibration"]["after"]["nll"] <= metrics["validation"]["calibration"]["before"]["nll"] + 1e-6
    assert set(test["risk_coverage"]["accuracy_at_coverage"]) == {"1", "0.95", "0.9", "0.8", "0.7"}
    assert test["risk_coverage"]["accuracy_at_coverage"]["1"]["accuracy"] == pytest.approx(test["accuracy"])
    assert set(metrics["validation"]["risk_coverage"]["coverage_at_accuracy"]) == {"0.95", "0.99"}
    for plot in ("calibration.png", "risk_coverage.png"):
        assert (tiny_full_run / plot).stat().st_size > 10_000
    scores = json.loads((tiny_full_run / "validation_scores.json").read_text())
    assert len(scores["confidence"]) == len(scores["correct"]) == metrics["validation"]["n"]


def test_predicted_scores_are_the_calibrated_ones_and_predict_reproduces_the_test_file(tiny_full_run, tmp_path, cli):
    clf = load_classifier(tiny_full_run)
    texts = ["my card was charged twice", "how do I reset my pin"]
    temperature = clf.calibration["temperature"]
    expected = torch.softmax(clf.predict_logits(texts) / temperature, -1).numpy()
    assert np.allclose(clf.predict_proba(texts), expected, atol=1e-6)
    code, _, err = cli("predict", tiny_full_run, SAMPLES / "tickets_test.csv", "-o", tmp_path / "p.csv")
    assert code == 0, err
    assert (tmp_path / "p.csv").read_bytes() == (tiny_full_run / "predictions_test.csv").read_bytes()


def test_calibration_none_keeps_the_raw_softmax(tmp_path, tiny_bert):
    metrics, run = train_tiny(tmp_path, tiny_bert, epochs=1, calibration="none")
    assert "calibration" not in json.loads((run / "textxfer.json").read_text())
    assert "after" not in metrics["test"]["calibration"]
    clf = load_classifier(run)
    texts = ["my card was charged twice"]
    assert np.allclose(clf.predict_proba(texts), torch.softmax(clf.predict_logits(texts), -1).numpy(), atol=1e-6)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_min_confidence_abstains_under_the_threshold_and_keeps_the_best_guess(tiny_full_run, tmp_path, cli):
    plain = _rows(tiny_full_run / "predictions_test.csv")
    clf = load_classifier(tiny_full_run)
    confidence = clf.predict_proba([r["text"] for r in plain]).max(1)  # unrounded: the file keeps 6 decimals
    threshold = float(np.median(confidence))
    code, _, err = cli("predict", tiny_full_run, SAMPLES / "tickets_test.csv", "-o", tmp_path / "p.csv",
                       "--min-confidence", threshold)
    assert code == 0, err
    rows = _rows(tmp_path / "p.csv")
    assert list(rows[0])[-4:] == ["predicted_label", "score", "abstained", "suggested_label"]
    abstained = [r for r in rows if r["abstained"] == "true"]
    assert 0 < len(abstained) < len(rows)
    for row, before, c in zip(rows, plain, confidence):
        assert row["suggested_label"] == before["predicted_label"] and row["score"] == before["score"]
        below = c < threshold
        assert (row["abstained"] == "true") == below
        assert row["predicted_label"] == ("" if below else before["predicted_label"])
    labels = clf.predict([r["text"] for r in rows[:40]], min_confidence=threshold)
    assert labels == [None if r["abstained"] == "true" else r["predicted_label"] for r in rows[:40]]


def test_coverage_picks_the_threshold_on_validation_and_says_its_accuracy(tiny_full_run, tmp_path, cli):
    code, out, err = cli("predict", tiny_full_run, SAMPLES / "tickets_test.csv", "-o", tmp_path / "p.jsonl",
                         "--coverage", "0.5")
    assert code == 0, err
    scores = json.loads((tiny_full_run / "validation_scores.json").read_text())
    threshold = threshold_for_coverage(np.array(scores["confidence"]), 0.5)
    assert f"minimum confidence {threshold:.4f}" in out and "validation accuracy" in out
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    confidence = load_classifier(tiny_full_run).predict_proba([r["text"] for r in rows]).max(1)
    assert [r["abstained"] for r in rows] == [bool(c < threshold) for c in confidence]
    assert all((r["predicted_label"] is None) == r["abstained"] for r in rows)
    assert 0.2 < np.mean([not r["abstained"] for r in rows]) < 0.8  # about half of similar texts decided


def test_a_recipe_min_confidence_is_the_run_default(tmp_path, tiny_bert, cli):
    metrics, run = train_tiny(tmp_path, tiny_bert, epochs=1, min_confidence=0.5)
    assert json.loads((run / "textxfer.json").read_text())["decision"]["min_confidence"] == 0.5
    rows = _rows(run / "predictions_test.csv")
    assert "abstained" in rows[0] and all((r["abstained"] == "true") == (float(r["score"]) < 0.5) for r in rows)
    code, _, err = cli("predict", run, SAMPLES / "tickets_test.csv", "-o", tmp_path / "p.csv")
    assert code == 0, err
    assert (tmp_path / "p.csv").read_bytes() == (run / "predictions_test.csv").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--min-confidence", "1.5"], "must be a probability from 0 to 1"),
    (["--min-confidence", "high"], "must be a probability from 0 to 1"),
    (["--coverage", "0"], "above 0 and at most 1"),
    (["--coverage", "0.9", "--min-confidence", "0.5"], "not both"),
])
def test_bad_abstention_arguments_are_one_paragraph_and_exit_2(tiny_full_run, tmp_path, cli, args, message):
    code, _, err = cli("predict", tiny_full_run, SAMPLES / "tickets_test.csv", "-o", tmp_path / "p.csv", *args)
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()


def test_coverage_without_validation_scores_in_the_run_is_a_clear_error(tiny_full_run, tmp_path, cli):
    run = copy_run(tiny_full_run, tmp_path)
    (run / "validation_scores.json").unlink()
    code, _, err = cli("predict", run, SAMPLES / "tickets_test.csv", "-o", tmp_path / "p.csv", "--coverage", "0.9")
    assert code == 2 and "has no validation scores" in err and "--min-confidence" in err and "Traceback" not in err


def test_multi_label_runs_calibrate_per_label_tune_thresholds_after_and_refuse_abstention(tmp_path, tiny_bert, cli):
    data = {"train": str(SAMPLES / "tickets_multilabel_train.csv"), "test": str(SAMPLES / "tickets_multilabel_test.csv"),
            "label_column": "labels", "multi_label": True, "max_length": 32}
    metrics, run = train_tiny(tmp_path, tiny_bert, data=data, epochs=2)
    info = json.loads((run / "textxfer.json").read_text())
    assert info["calibration"]["method"] in ("temperature", "platt")
    assert len(info["calibration"]["scale"]) == len(info["labels"]) == len(info["decision"]["thresholds"])
    per_label = metrics["test"]["calibration"]["per_label"]
    assert set(per_label["before"]) == set(per_label["after"]) == set(info["labels"])
    clf = load_classifier(run)
    rows = _rows(run / "predictions_test.csv")[:30]
    probs = clf.predict_proba([r["text"] for r in rows])
    logits = clf.predict_logits([r["text"] for r in rows])
    scale, bias = np.array(info["calibration"]["scale"]), np.array(info["calibration"]["bias"])
    assert np.allclose(probs, 1 / (1 + np.exp(-(logits.numpy() * scale + bias))), atol=1e-5)
    code, _, err = cli("predict", run, SAMPLES / "tickets_multilabel_test.csv", "-o", tmp_path / "p.csv",
                       "--min-confidence", "0.8")
    assert code == 2 and "single-label" in err
    code, _, err = cli("train", tmp_path / "recipe.yaml", "train.min_confidence=0.8", f"output_dir={tmp_path / 'x'}")
    assert code == 2 and "`train.min_confidence`" in err and "single-label" in err


def test_the_model_card_reports_the_temperature_and_the_calibration_figures(tiny_full_run):
    from textxfer.commands.model_card import Base, build_card

    card = build_card(tiny_full_run, "acme/tickets", Base(hub_id=None, name="tiny"), "other", adapter=False)
    info = json.loads((tiny_full_run / "textxfer.json").read_text())
    test = json.loads((tiny_full_run / "metrics.json").read_text())["test"]
    section = card.split("## Calibration and abstention", 1)[1].split("\n## ", 1)[0]
    assert f"T = {info['calibration']['temperature']:.4f}" in section
    assert f"| raw scores | {test['calibration']['before']['ece']:.4f} |" in section
    assert f"| calibrated | {test['calibration']['after']['ece']:.4f} |" in section
    assert "![Reliability diagram" in section and "| test accuracy |" in section
