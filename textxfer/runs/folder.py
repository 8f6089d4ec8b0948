"""The run folder: written in a staging folder beside it and moved into place only when complete.

A run folder holds the model and tokenizer (safetensors), `textxfer.json` (labels, method and
text settings for prediction), the resolved `recipe.yaml`, `metrics.json`, plots and
`predictions_test.csv`. A crash never leaves a folder that looks finished: until the final
rename, everything lives in `<output_dir>.incomplete/` (see `textxfer.fsutil.OutputFolder`, which also
decides whether an existing `output_dir` may be replaced, and locks it for the run).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from .._version import __version__
from ..config.schema import Recipe, save_recipe
from ..data.splits import Splits
from ..fsutil import OutputFolder, write_json  # noqa: F401  (write_json: re-exported for the commands)
from ..evaluation.metrics import full_report
from ..evaluation.report import plot_confusion_matrix, plot_label_scores, plot_learning_curves, plot_precision_recall

RUN_INFO = "textxfer.json"


def run_output(recipe: Recipe) -> OutputFolder:
    """The run folder of a recipe, with the files the run reads (which it must never replace)."""
    d, m, t = recipe.data, recipe.model, recipe.train
    inputs = [d.train, d.validation, d.test, d.unlabeled, t.resume if t.resume != "auto" else None]
    if Path(m.name).exists():  # a local base model folder
        inputs.append(m.name)
    return OutputFolder(recipe.output_dir, overwrite=recipe.overwrite, inputs=inputs, setting="output_dir",
                        kind="run", overwrite_hint="--overwrite (or `overwrite: true` in the recipe)")


def write_run(recipe: Recipe, output: OutputFolder, model, tokenizer, splits: Splits, run_metrics: dict,
              decision: dict | None = None, state_dict: dict | None = None, expected_bytes: int = 0) -> dict:
    """Save model, tokenizer, recipe, test predictions, metrics and plots; returns the final metrics.

    `decision` is the rule chosen on validation (thresholds); prediction applies it. Everything is
    written into the output's staging folder and published only when complete; a plot that cannot be
    drawn is a warning, never the loss of the trained model.
    """
    from ..inference.classifier import Classifier  # predict imports runfolder for RUN_INFO

    with output.staging(expected_bytes) as staging:
        if recipe.model.method in ("lora", "qlora"):
            from ..models.adapters import save_adapter
            from ..models.build import resolve_model_path

            save_adapter(model, staging, resolve_model_path(recipe.model.name))
        elif state_dict is not None:  # gathered from FSDP shards
            model.save_pretrained(staging, state_dict=state_dict)
        else:
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        info = {
            "textxfer_version": __version__,
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
        write_json(staging / "metrics.json", run_metrics)
        _draw_plots(run_metrics, splits, decision or {}, staging)
    return run_metrics


def _draw_plots(run_metrics: dict, splits: Splits, decision: dict, staging: Path) -> None:
    """The run's pictures; one that fails is reported and left out (the model and metrics are saved)."""
    report = run_metrics.get("test")
    if report is not None and splits.multi_label:
        draw_safely(staging / "label_scores.png", lambda path: plot_label_scores(
            report["per_class"], decision.get("thresholds", {}), path,
            f"test: micro-F1 {report['micro_f1']:.3f}, macro-F1 {report['macro_f1']:.3f}, "
            f"subset accuracy {report['subset_accuracy']:.3f}"))
    elif report is not None:
        draw_safely(staging / "confusion_matrix.png", lambda path: plot_confusion_matrix(
            report["confusion_matrix"], splits.labels.labels, path,
            f"test: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}"))
    if report is not None and "precision_recall" in report:
        draw_safely(staging / "precision_recall.png", lambda path: plot_precision_recall(report["precision_recall"], path))
    if run_metrics.get("history"):
        draw_safely(staging / "learning_curves.png", lambda path: plot_learning_curves(run_metrics["history"], path))


def draw_safely(path: Path, draw) -> bool:
    """`draw(path)` one plot; on failure warn with the reason and go on. Returns whether it was drawn."""
    try:
        draw(path)
        return True
    except Exception as exc:  # noqa: BLE001 - a picture is never worth a trained model
        Path(path).unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"textxfer: warning: could not draw {Path(path).name} ({type(exc).__name__}: {reason}); the run is "
              f"saved without it.", file=sys.stderr)
        return False


def model_bytes(model) -> int:
    """Bytes the model's weights take on disk (parameters and buffers, as stored)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
