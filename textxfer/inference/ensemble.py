"""Ensembles of finished runs: several classifiers trained on the same data, one prediction.

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
import json
import shutil
from pathlib import Path

import numpy as np

from .._version import __version__
from ..config.schema import load_recipe
from ..data.splits import load_splits
from ..errors import TextxferError
from ..evaluation.metrics import full_report, selection_metric, summary
from .classifier import Classifier
from ..evaluation.report import plot_confusion_matrix
from ..fsutil import OutputFolder, write_json
from ..runs.folder import RUN_INFO, draw_safely

COMBINE_RULES = ("mean_log_prob", "mean_prob")
MEMBERS_DIR = "members"
# Recipe keys that decide which rows land in train, validation and test: members must agree on all.
SPLIT_KEYS = ("data.train", "data.validation", "data.test", "data.validation_split", "data.text_column",
              "data.label_column", "data.text_pair_column", "data.multi_label", "data.drop_invalid_rows",
              "data.encoding", "train.seed")


def combine(member_probs: list[np.ndarray], rule: str) -> np.ndarray:
    """One probability matrix from the members' (same shape, same column order).

    `mean_log_prob` is the normalised geometric mean (a product of experts: a class any member
    rules out stays unlikely); `mean_prob` the arithmetic mean."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in member_probs])
    if rule == "mean_prob":
        return stacked.mean(0).astype(np.float32)
    if rule != "mean_log_prob":
        raise TextxferError(f"Unknown ensemble rule {rule!r}; use one of {', '.join(COMBINE_RULES)}.")
    log = np.log(np.clip(stacked, 1e-12, 1.0)).mean(0)
    log -= log.max(1, keepdims=True)
    probs = np.exp(log)
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


class EnsembleClassifier(Classifier):
    """An ensemble folder loaded for prediction: the members' probabilities, combined by its rule."""

    def __init__(self, members: list[Classifier], info: dict):
        self.members = members
        self.info = info
        self.labels = info["labels"]
        self.multi_label = False
        self.decision = {}

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> "EnsembleClassifier":
        """Load an ensemble folder written by `build_ensemble` (each member on `device`)."""
        run_dir = Path(run_dir)
        info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
        return cls([Classifier.load(run_dir / m["folder"], device) for m in info["members"]], info)

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None, batch_size: int | None = None) -> np.ndarray:
        """The combined probabilities, columns in `self.labels` order."""
        return combine([_in_order(m.predict_proba(texts, pairs, batch_size), m.labels, self.labels)
                        for m in self.members], self.info["combine"])


def _in_order(probs: np.ndarray, member_labels: list[str], labels: list[str]) -> np.ndarray:
    """A member's probability columns rearranged into `labels` order."""
    return probs[:, [member_labels.index(label) for label in labels]]


def _flat(raw: dict) -> dict:
    return {f"{section}.{key}": value for section, values in raw.items() if isinstance(values, dict)
            for key, value in values.items()}


def _read_member(run_dir: Path) -> tuple[dict, dict]:
    """A member's `textxfer.json` and flattened `recipe.yaml`, with what makes it unusable refused."""
    if not (run_dir / RUN_INFO).is_file():
        raise TextxferError(f"{run_dir} is not a textxfer run folder (it has no {RUN_INFO}). Give the `output_dir` "
                            f"of finished `textxfer train` runs.")
    info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    if info.get("method") == "ensemble":
        raise TextxferError(f"{run_dir} is itself an ensemble. Give its member runs instead (they are copied in "
                            f"{run_dir / MEMBERS_DIR}), so every model is weighed once.")
    if info.get("multi_label"):
        raise TextxferError(f"{run_dir} is a multi-label run; `textxfer ensemble` combines single-label runs only "
                            f"(multi-label decisions use per-label thresholds tuned per run).")
    if not (run_dir / "recipe.yaml").is_file():
        raise TextxferError(f"{run_dir} has no recipe.yaml, so its data and validation split are unknown. "
                            f"Use runs written by `textxfer train`.")
    recipe = load_recipe(run_dir / "recipe.yaml")  # defaults filled in, as the run saw them
    return info, _flat(dataclasses.asdict(recipe))


def _check_members(run_dirs: list[Path], infos: list[dict], recipes: list[dict]) -> None:
    """Same labels, same text columns, same data and seed (so the same validation split) for all."""
    first, first_info, first_recipe = run_dirs[0], infos[0], recipes[0]
    for run_dir, info, recipe in zip(run_dirs[1:], infos[1:], recipes[1:]):
        if sorted(info["labels"]) != sorted(first_info["labels"]):
            only = sorted(set(info["labels"]) ^ set(first_info["labels"]))
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
    output_dir = Path(output_dir)
    target = OutputFolder(output_dir, overwrite=overwrite, inputs=run_dirs, setting="--output", kind="ensemble",
                          overwrite_hint="--overwrite")
    with target:
        return _build(run_dirs, target, rule)


def _build(run_dirs: list[Path], target: OutputFolder, rule: str | None) -> dict:
    read = [_read_member(r) for r in run_dirs]
    infos, recipes = [i for i, _ in read], [r for _, r in read]
    _check_members(run_dirs, infos, recipes)
    for run_dir, info in zip(run_dirs, infos):
        if info.get("decision", {}).get("threshold") is not None:
            print(f"textxfer: note: {run_dir} decides by a threshold tuned on validation "
                  f"({info['decision']['threshold']:.3f} on {info['decision'].get('positive_label')}); the ensemble "
                  f"decides by the highest combined probability.", flush=True)

    recipe = load_recipe(run_dirs[0] / "recipe.yaml")
    splits = load_splits(recipe.data, recipe.train.seed)
    labels = splits.labels.labels
    if sorted(labels) != sorted(infos[0]["labels"]):
        raise TextxferError(f"The data in {run_dirs[0] / 'recipe.yaml'} no longer has the labels the runs were trained "
                            f"on (the files changed since training). Retrain the members on the current data.")
    parts = {"validation": splits.validation}
    if splits.test is not None:
        parts["test"] = splits.test
    probs = {name: [] for name in parts}
    members = []
    for k, (run_dir, info) in enumerate(zip(run_dirs, infos), 1):
        print(f"textxfer: member {k}/{len(run_dirs)} {run_dir} ({info['method']}, {info.get('base_model')}): predicting "
              + " and ".join(f"{len(d)} {name}" for name, d in parts.items()) + " texts", flush=True)
        classifier = Classifier.load(run_dir)
        member = {"run": str(run_dir), "method": info["method"], "base_model": info.get("base_model")}
        for name, dataset in parts.items():
            pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else None
            p = _in_order(classifier.predict_proba(list(dataset["text"]), pairs), classifier.labels, labels)
            probs[name].append(p)
            member[name] = summary(list(dataset["label"]), p.argmax(1))
        members.append(member)
        del classifier

    select = selection_metric(False)
    val_labels = list(splits.validation["label"])
    candidates = {r: summary(val_labels, combine(probs["validation"], r).argmax(1)) for r in COMBINE_RULES}
    chosen = rule or max(COMBINE_RULES, key=lambda r: (candidates[r][select], -COMBINE_RULES.index(r)))
    for r, scores in candidates.items():
        print(f"textxfer: validation {r}: accuracy {scores['accuracy']:.4f} macro-f1 {scores['macro_f1']:.4f}"
              f"{'  *chosen' if r == chosen else ''}", flush=True)

    with target.staging() as staging:
        folders = [_member_folder(k, r) for k, r in enumerate(run_dirs)]
        for run_dir, folder in zip(run_dirs, folders):
            shutil.copytree(run_dir, staging / folder, ignore=shutil.ignore_patterns("*.png", "predictions_*.csv"))
        first = infos[0]
        info = {
            "textxfer_version": __version__, "method": "ensemble", "combine": chosen,
            "members": [{"folder": folder, "run": str(r), "method": i["method"], "base_model": i.get("base_model")}
                        for folder, r, i in zip(folders, run_dirs, infos)],
            "base_model": first.get("base_model"), "labels": labels, "multi_label": False,
            "label_separator": first.get("label_separator", "|"), "text_column": first["text_column"],
            "text_pair_column": first.get("text_pair_column"), "decision": {},
        }
        write_json(staging / RUN_INFO, info)
        metrics = {"combine": chosen, "selected_by": f"validation {select}" if rule is None else "given",
                   "validation": {**candidates[chosen], "rules": candidates}, "members": members}
        if "test" in parts:
            combined = combine(probs["test"], chosen)
            ensemble = EnsembleClassifier([], info)
            ensemble.write_predictions(splits.raw_test, combined, staging / "predictions_test.csv")
            report = full_report(list(splits.test["label"]), combined.argmax(1), labels, False)
            metrics["test"] = report
            draw_safely(staging / "confusion_matrix.png", lambda path: plot_confusion_matrix(
                report["confusion_matrix"], labels, path,
                f"ensemble test: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}"))
        write_json(staging / "metrics.json", metrics)
        return metrics
