"""The run folder: written in a staging folder beside it and moved into place only when complete.

A run folder holds the model and tokenizer (safetensors), `textxfer.json` (labels, method and
text settings for prediction), the resolved `recipe.yaml`, `metrics.json`, plots and
`predictions_test.csv`. A crash never leaves a folder that looks finished: until the final
rename, everything lives in `<output_dir>.incomplete/`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import textxfer

from .config import Recipe, save_recipe
from .data import Splits
from .metrics import full_report
from .report import plot_confusion_matrix, plot_label_scores, plot_learning_curves, plot_precision_recall

RUN_INFO = "textxfer.json"


def write_json(path: Path, data) -> None:
    """Write JSON atomically: a temporary file renamed over the target."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def write_run(recipe: Recipe, model, tokenizer, splits: Splits, run_metrics: dict, decision: dict | None = None,
              state_dict: dict | None = None) -> dict:
    """Save model, tokenizer, recipe, test predictions, metrics and plots; returns the final metrics.

    `decision` is the rule chosen on validation (thresholds); prediction applies it.
    """
    from .predict import Classifier  # predict imports runfolder for RUN_INFO

    final = Path(recipe.output_dir)
    staging = final.with_name(final.name + ".incomplete")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if recipe.model.method in ("lora", "qlora"):
        from .adapters import save_adapter
        from .models import resolve_model_path

        save_adapter(model, staging, resolve_model_path(recipe.model.name))
    elif state_dict is not None:  # gathered from FSDP shards
        model.save_pretrained(staging, state_dict=state_dict)
    else:
        model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info = {
        "textxfer_version": textxfer.__version__,
        "method": recipe.model.method,
        "base_model": recipe.model.name,
        "labels": splits.labels.labels,
        "multi_label": splits.multi_label,
        "label_separator": recipe.data.label_separator,
        "text_column": recipe.data.text_column,
        "text_pair_column": recipe.data.text_pair_column,
        "max_length": recipe.data.max_length,
        "long_text": recipe.data.long_text,
        "stride": recipe.data.stride,
        "chunk_aggregation": recipe.data.chunk_aggregation,
        "max_chunks": recipe.data.max_chunks,
        "eval_batch_size": recipe.train.eval_batch_size,
        "decision": decision or {},
    }
    if recipe.model.method in ("lora", "qlora"):
        info["lora"] = dataclasses.asdict(recipe.model.lora)
    write_json(staging / RUN_INFO, info)
    save_recipe(recipe, staging / "recipe.yaml")

    if splits.test is not None:
        # Test metrics come from the saved model, reloaded: exactly what users will get.
        classifier = Classifier.load(staging)
        pairs = list(splits.test["text_pair"]) if "text_pair" in splits.test.column_names else None
        started = time.perf_counter()
        probs = classifier.predict_proba(list(splits.test["text"]), pairs)
        seconds = time.perf_counter() - started
        classifier.write_predictions(splits.raw_test, probs, staging / "predictions_test.csv")
        labels = splits.labels.labels
        report = full_report(list(splits.test["label"]), classifier.decide(probs), labels, splits.multi_label,
                             probs, splits.positive_label)
        report["texts_per_second"] = len(probs) / max(seconds, 1e-9)
        run_metrics = {**run_metrics, "test": report}
        if splits.multi_label:
            plot_label_scores(report["per_class"], (decision or {}).get("thresholds", {}), staging / "label_scores.png",
                              f"test: micro-F1 {report['micro_f1']:.3f}, macro-F1 {report['macro_f1']:.3f}, "
                              f"subset accuracy {report['subset_accuracy']:.3f}")
        else:
            plot_confusion_matrix(report["confusion_matrix"], labels, staging / "confusion_matrix.png",
                                  f"test: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
        if "precision_recall" in report:
            plot_precision_recall(report["precision_recall"], staging / "precision_recall.png")
    if run_metrics.get("history"):
        plot_learning_curves(run_metrics["history"], staging / "learning_curves.png")
    write_json(staging / "metrics.json", run_metrics)
    swap_into_place(staging, final)
    return run_metrics


def swap_into_place(staging: Path, final: Path) -> None:
    """Replace `final` by `staging`; an earlier run at `final` is removed only after the move."""
    old = final.with_name(final.name + ".previous")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        shutil.rmtree(old)
