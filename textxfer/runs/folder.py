"""The run folder: what a run writes, in a staging folder beside it, moved into place only when complete.

A run folder holds the model and tokenizer (safetensors; what exactly follows from the method: a whole
model, a backbone + head, or adapters + head), `textxfer.json` (`RunInfo`), the resolved `recipe.yaml`,
`metrics.json`, plots and `predictions_test.csv`. A crash never leaves a folder that looks finished:
until the final rename everything lives in `<output_dir>.incomplete/` (see `textxfer.outputs.OutputFolder`,
which also decides whether an existing `output_dir` may be replaced, and locks it for the run).
"""
from __future__ import annotations

from pathlib import Path

from ..config import Recipe, save_recipe
import json

import numpy as np

from ..errors import TextxferError
from ..evaluation.report import (plot_confusion_matrix, plot_label_scores, plot_learning_curves, plot_precision_recall,
                                 plot_reliability, plot_risk_coverage)
from ..fsutil import write_json
from ..outputs import OutputFolder
from ..log import get_logger
from ..methods import get_method
from ..models.adapters import save_adapter
from ..models.embedded import resolve_model_path
from ..models.quiet import quiet_loading
from .info import RunInfo

log = get_logger()
# Each validation text's calibrated top score and whether it was right: `predict --coverage` picks its
# threshold on these, never on test.
VALIDATION_SCORES = "validation_scores.json"


def run_output(recipe: Recipe) -> OutputFolder:
    """The run folder of a recipe, with the files the run reads (which it must never replace)."""
    d, m, t = recipe.data, recipe.model, recipe.train
    inputs = [d.train, d.validation, d.test, d.dataset, d.unlabeled, t.resume if t.resume != "auto" else None]
    if Path(m.name).exists():  # a local base model folder
        inputs.append(m.name)
    return OutputFolder(recipe.output_dir, overwrite=recipe.overwrite, inputs=inputs, setting="output_dir",
                        kind="run", overwrite_hint="--overwrite (or `overwrite: true` in the recipe)")


def save_model(staging: Path, recipe: Recipe, info: RunInfo, model, tokenizer, state_dict: dict | None = None) -> None:
    """The trained model as its method saves it, the tokenizer, `textxfer.json` and the resolved recipe."""
    with quiet_loading():
        if get_method(recipe.model.method).saves == "adapter":
            save_adapter(model, staging, resolve_model_path(recipe.model.name))
        elif state_dict is not None:  # gathered from FSDP shards
            model.save_pretrained(staging, state_dict=state_dict)
        else:
            model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info.write(staging)
    save_recipe(recipe, staging / "recipe.yaml")


def draw_plots(staging: Path, run_metrics: dict, labels: list[str], multi_label: bool, decision: dict) -> None:
    """The run's pictures; one that fails is reported and left out (the model and metrics are saved)."""
    report = run_metrics.get("test")
    if report is not None and multi_label:
        draw_safely(staging / "label_scores.png", lambda path: plot_label_scores(
            report["per_class"], decision.get("thresholds", {}), path,
            f"test: micro-F1 {report['micro_f1']:.3f}, macro-F1 {report['macro_f1']:.3f}, "
            f"subset accuracy {report['subset_accuracy']:.3f}"))
    elif report is not None:
        draw_safely(staging / "confusion_matrix.png", lambda path: plot_confusion_matrix(
            report["confusion_matrix"], labels, path,
            f"test: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}"))
    if report is not None and "precision_recall" in report:
        draw_safely(staging / "precision_recall.png", lambda path: plot_precision_recall(report["precision_recall"], path))
    if run_metrics.get("history"):
        draw_safely(staging / "learning_curves.png", lambda path: plot_learning_curves(run_metrics["history"], path))
    draw_trust_plots(staging, run_metrics)


def draw_trust_plots(staging: Path, run_metrics: dict) -> None:
    """`calibration.png` (the test reliability diagram, before and after calibration) and
    `risk_coverage.png` (accuracy against coverage on validation and test), when the metrics have them."""
    test = run_metrics.get("test") or {}
    calibration = test.get("calibration")
    if calibration:
        after = calibration.get("after")
        figures = calibration["before"]
        title = (f"test, {figures['n']} texts: ECE {figures['ece']:.3f} raw"
                 + (f", {after['ece']:.3f} calibrated" if after else ""))
        draw_safely(staging / "calibration.png", lambda path: plot_reliability(
            calibration["reliability_before"], calibration.get("reliability_after"), path, title))
    curves = {name: run_metrics[name]["risk_coverage"] for name in ("validation", "test")
              if (run_metrics.get(name) or {}).get("risk_coverage", {}).get("n")}
    if curves:
        draw_safely(staging / "risk_coverage.png", lambda path: plot_risk_coverage(
            curves, path, "risk-coverage: deciding only the most confident texts"))


def write_validation_scores(staging: Path, confidence: np.ndarray, correct: np.ndarray) -> None:
    """The validation texts' calibrated top scores and correctness (see VALIDATION_SCORES)."""
    write_json(staging / VALIDATION_SCORES, {"confidence": [round(float(c), 7) for c in confidence],
                                             "correct": [bool(c) for c in correct]})


def read_validation_scores(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of a run's validation texts; one clear error for a run without them."""
    path = Path(run_dir) / VALIDATION_SCORES
    if not path.is_file():
        raise TextxferError(f"{run_dir} has no validation scores ({VALIDATION_SCORES}), so a coverage cannot be "
                            f"turned into a threshold: the run was made by an older textxfer, or is multi-label "
                            f"or an export. Give a threshold instead (`--min-confidence 0.8`), or train the run "
                            f"again to choose by coverage.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return np.asarray(data["confidence"], dtype=np.float64), np.asarray(data["correct"], dtype=bool)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TextxferError(f"{path} is damaged ({type(exc).__name__}: {exc}); train the run again, or give a "
                            f"threshold with `--min-confidence` instead of a coverage.") from None


def draw_safely(path: Path, draw) -> bool:
    """`draw(path)` one plot; on failure warn with the reason and go on. Returns whether it was drawn."""
    try:
        draw(path)
        return True
    except Exception as exc:  # noqa: BLE001 - a picture is never worth a trained model
        Path(path).unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning(f"could not draw {Path(path).name} ({type(exc).__name__}: {reason}); the run is saved without it.")
        return False


def model_bytes(model) -> int:
    """Bytes the model's weights take on disk (parameters and buffers, as stored)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
