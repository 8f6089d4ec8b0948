"""After the fit: the decision rule chosen on validation, the run's metrics, and the run folder, with
the test set scored by the saved model reloaded (exactly what users of the run will get)."""
from __future__ import annotations

import time

from ..evaluation.decisions import probabilities, threshold_for_target, tune_label_thresholds
from ..evaluation.metrics import full_report
from ..fsutil import write_json
from ..outputs import OutputFolder
from ..inference.classifier import Classifier
from ..log import get_logger, note
from ..runs.folder import draw_plots, model_bytes, save_model
from ..runs.info import RunInfo
from .context import Run
from .results import FitResult

log = get_logger()


def decision_rule(run: Run, result: FitResult) -> dict:
    """How probabilities become labels, chosen on validation: per-label thresholds (multi-label) or,
    for a binary task with a precision/recall target, a threshold on the positive class."""
    t, splits = run.recipe.train, run.splits
    labels = splits.labels.labels
    probs = probabilities(result.best_validation_logits, splits.multi_label)
    targets = result.best_validation_labels.numpy()
    if splits.multi_label:
        thresholds = tune_label_thresholds(probs, targets) if t.tune_thresholds else [0.5] * len(labels)
        return {"thresholds": dict(zip(labels, thresholds))}
    if splits.positive_label is None:
        return {}
    rule = {"positive_label": splits.positive_label}
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


def run_metrics(run: Run, result: FitResult, decision: dict, parameters: tuple[int, int], setup_seconds: float) -> dict:
    """metrics.json without the test part: validation, decision, training figures and history."""
    accelerator, t = run.accelerator, run.recipe.train
    trainable, total = parameters
    return {
        "validation": best_validation(result, run.multi_label),
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


def write_run(run: Run, output: OutputFolder, metrics: dict, decision: dict, state_dict: dict | None = None) -> dict:
    """The run folder, published when complete: model, run info, recipe, test predictions and report,
    metrics and plots. Returns the metrics with the test part."""
    model = run.accelerator.unwrap_model(run.model)
    info = RunInfo.for_run(run.recipe, run.splits.labels.labels, run.multi_label, decision)
    with output.staging(model_bytes(model)) as staging:
        save_model(staging, run.recipe, info, model, run.tokenizer, state_dict)
        if run.splits.test is not None:
            metrics = {**metrics, "test": _score_test(run, Classifier.load(staging, info=info), staging)}
        write_json(staging / "metrics.json", metrics)
        draw_plots(staging, metrics, run.splits.labels.labels, run.multi_label, decision)
    return metrics


def _score_test(run: Run, classifier: Classifier, staging) -> dict:
    """Test predictions (`predictions_test.csv`) and the test report, from the saved model reloaded."""
    splits = run.splits
    pairs = list(splits.test["text_pair"]) if "text_pair" in splits.test.column_names else None
    started = time.perf_counter()
    probs = classifier.predict_proba(list(splits.test["text"]), pairs)
    seconds = time.perf_counter() - started
    classifier.write_predictions(splits.raw_test, probs, staging / "predictions_test.csv")
    report = full_report(list(splits.test["label"]), classifier.decide(probs), splits.labels.labels,
                         splits.multi_label, probs, splits.positive_label)
    report["texts_per_second"] = len(probs) / max(seconds, 1e-9)
    return report
