"""`textxfer ensemble`: build an ensemble of finished runs: several classifiers trained on the same data, one prediction.

    textxfer ensemble runs/banking77-full runs/banking77-fe --output runs/banking77-ensemble

Models that reach similar accuracy by different routes (a fine-tuned encoder and a linear head on
frozen features, say) make different mistakes, so averaging them beats either one. The combination
rule (mean of log-probabilities, or mean of probabilities) is chosen on the members' shared
validation split, never on test. Members must have been trained on the same data with the same seed,
otherwise one member's training rows could sit in another's validation split and the choice would
be made on data it had seen; that is checked. The ensemble folder holds a copy of every member, so it
stays usable when the member runs are moved or deleted, and `textxfer predict` / `load_classifier`
load it like any run.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import torch

from ..config import load_recipe
from ..data.splits import load_splits
from ..errors import TextxferError
from ..evaluation.abstention import risk_coverage, thresholds_on
from ..evaluation.calibration import calibration_metrics, fit_temperature, reliability_table
from ..evaluation.metrics import full_report, selection_metric, summary
from ..evaluation.report import plot_confusion_matrix
from ..fsutil import write_json
from ..outputs import OutputFolder
from ..inference.classifier import Classifier
from ..inference.ensemble import (COMBINE_RULES, MEMBERS_DIR, EnsembleClassifier, calibrate_combined, combine,
                                  in_order)
from ..log import get_logger, note
from ..runs.folder import draw_safely, draw_trust_plots, write_validation_scores
from ..runs.info import RunInfo

log = get_logger()
# Recipe keys that decide which rows land in train, validation and test: members must agree on all.
SPLIT_KEYS = ("data.train", "data.validation", "data.test", "data.validation_split", "data.text_column",
              "data.label_column", "data.text_pair_column", "data.multi_label", "data.drop_invalid_rows",
              "data.encoding", "train.seed")


def _flat(raw: dict) -> dict:
    return {f"{section}.{key}": value for section, values in raw.items() if isinstance(values, dict)
            for key, value in values.items()}


def _read_member(run_dir: Path) -> tuple[RunInfo, dict]:
    """A member's run info and flattened `recipe.yaml`, with what makes it unusable refused."""
    info = RunInfo.read(run_dir, "`textxfer ensemble`")
    if info.is_ensemble:
        raise TextxferError(f"{run_dir} is itself an ensemble. Give its member runs instead (they are copied in "
                            f"{run_dir / MEMBERS_DIR}), so every model is weighed once.")
    if info.multi_label:
        raise TextxferError(f"{run_dir} is a multi-label run; `textxfer ensemble` combines single-label runs only "
                            f"(multi-label decisions use per-label thresholds tuned per run).")
    if not (run_dir / "recipe.yaml").is_file():
        raise TextxferError(f"{run_dir} has no recipe.yaml, so its data and validation split are unknown. "
                            f"Use runs written by `textxfer train`.")
    recipe = load_recipe(run_dir / "recipe.yaml")  # defaults filled in, as the run saw them
    return info, _flat(dataclasses.asdict(recipe))


def _check_members(run_dirs: list[Path], infos: list[RunInfo], recipes: list[dict]) -> None:
    """Same labels, same text columns, same data and seed (so the same validation split) for all."""
    first, first_info, first_recipe = run_dirs[0], infos[0], recipes[0]
    for run_dir, info, recipe in zip(run_dirs[1:], infos[1:], recipes[1:]):
        if sorted(info.labels) != sorted(first_info.labels):
            only = sorted(set(info.labels) ^ set(first_info.labels))
            raise TextxferError(f"{run_dir} and {first} predict different labels ({', '.join(only[:5])} in one only). "
                                f"An ensemble needs members trained on the same label set.")
        for key in SPLIT_KEYS:
            if recipe.get(key) != first_recipe.get(key):
                raise TextxferError(
                    f"{run_dir} and {first} differ in `{key}` ({recipe.get(key)!r} vs {first_recipe.get(key)!r}) in "
                    f"their recipe.yaml. Ensemble members must be trained on the same data with the same seed, so "
                    f"that they share one validation split: the combination is chosen on it, and a member that "
                    f"trained on another's validation rows would make that choice on seen data. Retrain one of them "
                    f"with the other's `{key}`.")
    for run_dir, info in zip(run_dirs, infos):
        if info.decision.get("threshold") is not None:
            note(log, f"{run_dir} decides by a threshold tuned on validation ({info.decision['threshold']:.3f} on "
                      f"{info.decision.get('positive_label')}); the ensemble decides by the highest combined "
                      f"probability.")


def _member_folder(index: int, run_dir: Path) -> str:
    return f"{MEMBERS_DIR}/{index}-{run_dir.resolve().name}"


def build_ensemble(run_dirs: list[str | Path], output_dir: str | Path, rule: str | None = None,
                   overwrite: bool = False) -> dict:
    """Combine finished runs into an ensemble folder at `output_dir`; returns its metrics.

    The rule is `rule` when given, else the one of COMBINE_RULES with the best validation macro-F1
    (ties: the first). Test metrics, predictions and the confusion matrix are written as for a run."""
    run_dirs = [Path(r) for r in run_dirs]
    if len(run_dirs) < 2:
        raise TextxferError("An ensemble needs at least two runs: `textxfer ensemble RUN RUN [RUN ...] --output DIR`.")
    if len({r.resolve() for r in run_dirs}) != len(run_dirs):
        raise TextxferError("The same run is given twice; each member of an ensemble must be a different run.")
    if rule is not None and rule not in COMBINE_RULES:
        raise TextxferError(f"Unknown ensemble rule {rule!r}; use one of {', '.join(COMBINE_RULES)}.")
    target = OutputFolder(output_dir, overwrite=overwrite, inputs=run_dirs, setting="--output", kind="ensemble",
                          overwrite_hint="--overwrite")
    with target:
        read = [_read_member(r) for r in run_dirs]
        infos = [i for i, _ in read]
        _check_members(run_dirs, infos, [r for _, r in read])
        recipe = load_recipe(run_dirs[0] / "recipe.yaml")
        splits = load_splits(recipe.data, recipe.train.seed)
        if sorted(splits.labels.labels) != sorted(infos[0].labels):
            raise TextxferError(f"The data in {run_dirs[0] / 'recipe.yaml'} no longer has the labels the runs were "
                                f"trained on (the files changed since training). Retrain the members on the current data.")
        probs, members = _member_probabilities(run_dirs, infos, splits)
        select = selection_metric(False)
        val_labels = list(splits.validation["label"])
        candidates = {r: summary(val_labels, combine(probs["validation"], r).argmax(1)) for r in COMBINE_RULES}
        chosen = rule or max(COMBINE_RULES, key=lambda r: (candidates[r][select], -COMBINE_RULES.index(r)))
        for r, scores in candidates.items():
            log.info(f"validation {r}: accuracy {scores['accuracy']:.4f} macro-f1 {scores['macro_f1']:.4f}"
                     f"{'  *chosen' if r == chosen else ''}")
        combined = combine(probs["validation"], chosen)
        calibration = {"method": "temperature", "temperature": fit_temperature(_as_logits(combined),
                                                                               torch.tensor(val_labels))}
        calibrated = calibrate_combined(combined, calibration)
        confidence = calibrated.max(1)
        correct = calibrated.argmax(1) == np.asarray(val_labels)
        metrics = {"combine": chosen, "selected_by": f"validation {select}" if rule is None else "given",
                   "validation": {**candidates[chosen], "rules": candidates,
                                  "calibration": {"method": "temperature",
                                                  "before": calibration_metrics(combined, val_labels, False),
                                                  "after": calibration_metrics(calibrated, val_labels, False)},
                                  "risk_coverage": risk_coverage(confidence, correct)},
                   "members": members}
        with target.staging() as staging:
            info = _copy_members(staging, run_dirs, infos, chosen, splits.labels.labels, calibration)
            write_validation_scores(staging, confidence, correct)
            if "test" in probs:
                metrics["test"] = _write_test(staging, info, splits, combine(probs["test"], chosen),
                                              metrics["validation"]["risk_coverage"])
            write_json(staging / "metrics.json", metrics)
            draw_trust_plots(staging, metrics)
        return metrics


def _as_logits(probs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))).float()


def _member_probabilities(run_dirs: list[Path], infos: list[RunInfo], splits) -> tuple[dict, list]:
    """Each member's probabilities on validation (and test), in the ensemble's label order, and its scores."""
    labels = splits.labels.labels
    parts = {"validation": splits.validation, **({"test": splits.test} if splits.test is not None else {})}
    probs, members = {name: [] for name in parts}, []
    for k, (run_dir, info) in enumerate(zip(run_dirs, infos), 1):
        log.info(f"member {k}/{len(run_dirs)} {run_dir} ({info.method}, {info.base_model}): predicting "
                 + " and ".join(f"{len(d)} {name}" for name, d in parts.items()) + " texts")
        classifier = Classifier.load(run_dir, info=info)
        member = {"run": str(run_dir), "method": info.method, "base_model": info.base_model}
        for name, dataset in parts.items():
            pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else None
            p = in_order(classifier.predict_proba(list(dataset["text"]), pairs), classifier.labels, labels)
            probs[name].append(p)
            member[name] = summary(list(dataset["label"]), p.argmax(1))
        members.append(member)
        del classifier
    return probs, members


def _copy_members(staging: Path, run_dirs: list[Path], infos: list[RunInfo], rule: str, labels: list[str],
                  calibration: dict) -> RunInfo:
    """Copy the members into the ensemble folder and write its run info."""
    folders = [_member_folder(k, r) for k, r in enumerate(run_dirs)]
    for run_dir, folder in zip(run_dirs, folders):
        shutil.copytree(run_dir, staging / folder, ignore=shutil.ignore_patterns("*.png", "predictions_*.csv"))
    first = infos[0]
    info = RunInfo(method="ensemble", combine=rule, labels=labels, base_model=first.base_model,
                   members=[{"folder": folder, "run": str(r), "method": i.method, "base_model": i.base_model}
                            for folder, r, i in zip(folders, run_dirs, infos)],
                   label_separator=first.label_separator, text_column=first.text_column,
                   text_pair_column=first.text_pair_column, calibration=calibration)
    info.write(staging)
    return info


def _write_test(staging: Path, info: RunInfo, splits, combined: np.ndarray, validation_view: dict) -> dict:
    """The ensemble's test predictions (calibrated, as `predict` gives them), report, calibration
    before and after, risk-coverage view and confusion matrix."""
    calibrated = calibrate_combined(combined, info.calibration)
    EnsembleClassifier([], info).write_predictions(splits.raw_test, calibrated, staging / "predictions_test.csv")
    labels = splits.labels.labels
    truth = np.asarray(splits.test["label"])
    report = full_report(list(truth), calibrated.argmax(1), labels, False)
    report["calibration"] = {"method": "temperature", "temperature": info.calibration["temperature"],
                             "before": calibration_metrics(combined, truth, False),
                             "after": calibration_metrics(calibrated, truth, False),
                             "reliability_before": reliability_table(combined.max(1), combined.argmax(1) == truth),
                             "reliability_after": reliability_table(calibrated.max(1), calibrated.argmax(1) == truth)}
    confidence, correct = calibrated.max(1), calibrated.argmax(1) == truth
    report["risk_coverage"] = {**risk_coverage(confidence, correct),
                               "at_validation_thresholds": thresholds_on(validation_view, confidence, correct)}
    draw_safely(staging / "confusion_matrix.png", lambda path: plot_confusion_matrix(
        report["confusion_matrix"], labels, path,
        f"ensemble test: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}"))
    return report
