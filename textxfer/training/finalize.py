"""After the fit: the decision rule chosen on validation, the run's metrics, and the run folder, with
the test set scored by the saved model reloaded (exactly what users of the run will get)."""
from __future__ import annotations

import time

import numpy as np

from ..evaluation.abstention import decided_confidence, risk_coverage, thresholds_on
from ..evaluation.calibration import (calibrate, calibration_metrics, fit_calibration, per_label_calibration,
                                      reliability_table)
from ..evaluation.decisions import decide_by_rule, probabilities, threshold_for_target, tune_label_thresholds
from ..evaluation.extra_metrics import compute_all, load_extra_metrics
from ..evaluation.metrics import full_report
from ..evaluation.report import plot_group_accuracy
from ..evaluation.slices import group_metrics
from ..fsutil import write_json
from ..outputs import OutputFolder
from ..inference.classifier import Classifier
from ..log import get_logger, note
from ..runs.folder import draw_plots, draw_safely, model_bytes, save_model, write_validation_scores
from ..runs.info import RunInfo
from . import tracking
from .context import Run
from .results import FitResult

log = get_logger()


def fit_run_calibration(run: Run, result: FitResult) -> dict | None:
    """The calibration of the kept model's scores, fitted on its validation logits (None when the recipe
    says `train.calibration: none`)."""
    if run.recipe.train.calibration == "none":
        return None
    multi = run.splits.multi_label
    logits, labels = result.best_validation_logits, result.best_validation_labels
    calibration = fit_calibration(logits, labels, multi)
    before = calibration_metrics(probabilities(logits, multi), labels.numpy(), multi)
    after = calibration_metrics(probabilities(calibrate(logits, calibration), multi), labels.numpy(), multi)
    fitted = (f"temperature {calibration['temperature']:.3f}" if "temperature" in calibration else
              f"{calibration['method']} per label")
    log.info(f"calibration: {fitted} fitted on {before['n']} validation texts (validation ECE {before['ece']:.4f} "
             f"-> {after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f})")
    return calibration


def decision_rule(run: Run, result: FitResult, calibration: dict | None = None) -> dict:
    """How (calibrated) probabilities become labels, chosen on validation: per-label thresholds
    (multi-label) or, for a binary task with a precision/recall target, a threshold on the positive
    class; and the recipe's default abstention threshold (`train.min_confidence`)."""
    t, splits = run.recipe.train, run.splits
    labels = splits.labels.labels
    probs = probabilities(calibrate(result.best_validation_logits, calibration), splits.multi_label)
    targets = result.best_validation_labels.numpy()
    if splits.multi_label:
        thresholds = tune_label_thresholds(probs, targets) if t.tune_thresholds else [0.5] * len(labels)
        return {"thresholds": dict(zip(labels, thresholds))}
    abstain = {} if t.min_confidence is None else {"min_confidence": t.min_confidence}
    if splits.positive_label is None:
        return abstain
    rule = {"positive_label": splits.positive_label, **abstain}
    if t.target_precision is None and t.target_recall is None:
        return rule
    positive = labels.index(splits.positive_label)
    threshold, reached = threshold_for_target(probs[:, positive], targets == positive, t.target_precision, t.target_recall)
    target = f"precision {t.target_precision}" if t.target_precision is not None else f"recall {t.target_recall}"
    if threshold is None:
        note(log, f"no decision threshold reaches {target} for `{splits.positive_label}` on the validation set; "
                  f"predictions keep the most probable class.")
        return rule
    note(log, f"decision threshold {threshold:.4f} on P({splits.positive_label}) gives validation precision "
              f"{reached['precision']:.3f} and recall {reached['recall']:.3f} (target: {target})")
    return {**rule, "threshold": threshold, "validation_at_threshold": reached}


def best_validation(result: FitResult, multi_label: bool) -> dict:
    """The validation scores of the kept epoch."""
    best = result.history[result.best_epoch - 1]
    keys = ("micro_f1", "macro_f1", "subset_accuracy") if multi_label else ("accuracy", "macro_f1")
    return {**{k: best[f"validation_{k}"] for k in (*keys, "loss", "n")}, "epoch": result.best_epoch}


def validation_trust(run: Run, result: FitResult, decision: dict, calibration: dict | None) -> dict:
    """Calibration figures on validation and, single-label, its risk-coverage view, with the scores
    `predict --coverage` chooses thresholds on."""
    multi = run.splits.multi_label
    logits, labels = result.best_validation_logits, result.best_validation_labels.numpy()
    raw = probabilities(logits, multi)
    probs = probabilities(calibrate(logits, calibration), multi)
    view = {"calibration": {"method": (calibration or {}).get("method", "none"),
                            "before": calibration_metrics(raw, labels, multi),
                            **({"after": calibration_metrics(probs, labels, multi)} if calibration else {})}}
    if not multi:
        decided = decide_by_rule(probs, multi, decision, run.splits.labels.labels)
        view["confidence"] = decided_confidence(probs, decided)
        view["correct"] = decided == labels
        view["risk_coverage"] = risk_coverage(view["confidence"], view["correct"])
    view.update(split_groups(run, "validation", labels,
                             decide_by_rule(probs, multi, decision, run.splits.labels.labels), probs))
    return view


def run_metrics(run: Run, result: FitResult, decision: dict, parameters: tuple[int, int], setup_seconds: float,
                trust: dict | None = None) -> dict:
    """metrics.json without the test part: validation (with its calibration and risk-coverage figures
    from `validation_trust`), decision, training figures and history."""
    accelerator, t = run.accelerator, run.recipe.train
    trainable, total = parameters
    trust = {k: v for k, v in (trust or {}).items() if k in ("calibration", "risk_coverage", "groups")}
    return {
        "validation": {**best_validation(result, run.multi_label), **trust, **validation_extra_metrics(run, result)},
        "decision": decision,
        "train": {
            "samples_per_second": result.samples / max(result.seconds, 1e-9),
            "wall_seconds": result.seconds,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "trainable_parameters": total if t.student_epochs else trainable,  # a noisy student trains the backbone
            "total_parameters": total,
            "num_processes": accelerator.num_processes,
            "effective_batch_size": t.batch_size * accelerator.num_processes * t.gradient_accumulation_steps,
            # where the time went: loading and tokenizing, then the training loop (feature
            # extraction: computing the cached features, then fitting the head)
            "timings": {"setup_seconds": setup_seconds, **result.timings},
        },
        "history": result.history,
    }


def write_run(run: Run, output: OutputFolder, metrics: dict, decision: dict, state_dict: dict | None = None,
              calibration: dict | None = None, trust: dict | None = None) -> dict:
    """The run folder, published when complete: model, run info (with the calibration), recipe, test
    predictions and report, metrics and plots, and the validation scores `predict --coverage` uses.
    Returns the metrics with the test part."""
    model = run.accelerator.unwrap_model(run.model)
    info = RunInfo.for_run(run.recipe, run.splits.labels.labels, run.multi_label, decision).replace(
        calibration=calibration, dataset=run.splits.dataset)
    with output.staging(model_bytes(model)) as staging:
        save_model(staging, run.recipe, info, model, run.tokenizer, state_dict)
        if trust and "confidence" in trust:
            write_validation_scores(staging, trust["confidence"], trust["correct"])
        if run.splits.test is not None:
            metrics = {**metrics, "test": _score_test(run, Classifier.load(staging, info=info), staging,
                                                      metrics["validation"].get("risk_coverage"))}
        write_json(staging / "metrics.json", metrics)
        if run.splits.audit is not None:  # the exact data checks of setup (data.audit_checks)
            write_json(staging / "audit.json", run.splits.audit)
        draw_plots(staging, metrics, run.splits.labels.labels, run.multi_label, decision)
        draw_groups(staging, metrics)
        tracking.finish(run.accelerator, staging, metrics)  # train.report_to: the end logged, its files sealed here
    return metrics


def validation_extra_metrics(run: Run, result: FitResult) -> dict:
    """`train.extra_metrics` on the kept epoch's validation predictions (the most probable class; multi-label:
    each label whose logit is above 0), computed by the main process."""
    extra = load_extra_metrics(run.recipe.train.extra_metrics, run.multi_label)
    if not extra or not run.accelerator.is_main_process:
        return {}
    logits, labels = result.best_validation_logits, result.best_validation_labels
    predicted = (logits > 0).int() if run.multi_label else logits.argmax(-1)
    return {"extra_metrics": compute_all(extra, predicted, labels.int() if run.multi_label else labels, "validation")}


def _score_test(run: Run, classifier: Classifier, staging, validation_view: dict | None) -> dict:
    """Test predictions (`predictions_test.csv`) and the test report, from the saved model reloaded:
    the metrics, calibration before and after, and the risk-coverage view."""
    splits = run.splits
    pairs = list(splits.test["text_pair"]) if "text_pair" in splits.test.column_names else None
    started = time.perf_counter()
    logits = classifier.predict_logits(list(splits.test["text"]), pairs)
    probs = probabilities(calibrate(logits, classifier.calibration), classifier.multi_label)
    seconds = time.perf_counter() - started
    classifier.write_predictions(splits.raw_test, probs, staging / "predictions_test.csv")
    decided = classifier.decide(probs)
    truth = list(splits.test["label"])
    report = full_report(truth, decided, splits.labels.labels, splits.multi_label, probs, splits.positive_label)
    report["calibration"] = test_calibration(probabilities(logits, classifier.multi_label), probs, np.asarray(truth),
                                             classifier)
    if not splits.multi_label:
        confidence, correct = decided_confidence(probs, decided), decided == np.asarray(truth)
        report["risk_coverage"] = risk_coverage(confidence, correct)
        if validation_view and validation_view.get("n"):
            report["risk_coverage"]["at_validation_thresholds"] = thresholds_on(validation_view, confidence, correct)
    report.update(split_groups(run, "test", truth, decided, probs))
    report["texts_per_second"] = len(probs) / max(seconds, 1e-9)
    extra = load_extra_metrics(run.recipe.train.extra_metrics, run.multi_label)
    if extra:
        report["extra_metrics"] = compute_all(extra, decided, truth, "test")
    return report


def test_calibration(raw: np.ndarray, calibrated: np.ndarray, truth: np.ndarray, classifier: Classifier) -> dict:
    """ECE, Brier and NLL of the raw and the calibrated test probabilities, the reliability tables
    behind `calibration.png`, and for multi-label runs the same per label."""
    multi = classifier.multi_label
    calibration = classifier.calibration
    view = {"method": (calibration or {}).get("method", "none"), "before": calibration_metrics(raw, truth, multi)}
    if calibration:
        view["after"] = calibration_metrics(calibrated, truth, multi)
        if "temperature" in calibration:
            view["temperature"] = calibration["temperature"]
    if multi:
        flat_truth = truth.ravel()
        view["reliability_before"] = reliability_table(raw.ravel(), flat_truth)
        if calibration:
            view["reliability_after"] = reliability_table(calibrated.ravel(), flat_truth)
        view["per_label"] = {"before": per_label_calibration(raw, truth, classifier.labels),
                             **({"after": per_label_calibration(calibrated, truth, classifier.labels)}
                                if calibration else {})}
    else:
        for name, probs in (("before", raw), ("after", calibrated if calibration else None)):
            if probs is not None:
                view[f"reliability_{name}"] = reliability_table(probs.max(1), probs.argmax(1) == truth)
    return view


def split_groups(run: Run, split: str, truth, decided, probs: np.ndarray) -> dict:
    """`data.group_column`: {"groups": the split's figures per group (`evaluation.slices.group_metrics`) and
    the column}, from its calibrated probabilities and decisions; nothing without a group column."""
    groups = (run.splits.groups or {}).get(split)
    if groups is None:
        return {}
    view = group_metrics(groups, np.asarray(truth), np.asarray(decided), probs, run.multi_label)
    worst = view["worst_group"]
    log.info(f"{split} by `{run.recipe.data.group_column}`: {len(view['by_group'])} group(s); worst `{worst}` "
             f"(accuracy {view['by_group'][worst]['accuracy']:.4f} on {view['by_group'][worst]['count']} rows)")
    return {"groups": {"column": run.recipe.data.group_column, **view}}


def draw_groups(staging, metrics: dict) -> None:
    """`groups.png`: accuracy per group on test (else validation), the worst group highlighted."""
    split = next((s for s in ("test", "validation") if (metrics.get(s) or {}).get("groups")), None)
    if split is None:
        return
    scores, view = metrics[split], metrics[split]["groups"]
    accuracy = "accuracy" if "accuracy" in scores else "subset_accuracy"
    title = f"{split} {accuracy.replace('_', ' ')} by `{view['column']}`: worst `{view['worst_group']}`"
    draw_safely(staging / "groups.png", lambda path: plot_group_accuracy(view, path, title, scores.get(accuracy)))
