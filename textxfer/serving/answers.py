"""What a served prediction says, decided as `textxfer predict` decides it, and what a server says about itself."""
from __future__ import annotations

import json

import numpy as np

from .._version import __version__
from ..evaluation.abstention import decided_confidence
from ..inference import Classifier

DIGITS = 6  # as `textxfer predict` writes scores (and JSON lines) out


def answers(classifier: Classifier, probs: np.ndarray, min_confidence: float | None,
            with_probabilities: bool = False) -> list[dict]:
    """One dict per row of `probs` (calibrated probabilities) by the run's decision rule (`Classifier.decide`).

    Single-label: `label`, its calibrated `score`, `abstained` (the score is under `min_confidence`; then
    `label` is None) and `suggested_label`, the best guess either way. Multi-label: the `labels` whose score
    reaches the run's threshold for each, with their `scores`. `with_probabilities` adds every label's.
    """
    labels = classifier.labels
    decided = classifier.decide(probs)
    out = []
    if classifier.multi_label:
        for row, on in zip(probs, decided):
            chosen = np.flatnonzero(on)
            out.append({"labels": [labels[j] for j in chosen],
                        "scores": {labels[j]: round(float(row[j]), DIGITS) for j in chosen}})
    else:
        confidence = decided_confidence(probs, decided)
        for k, score in zip(decided, confidence):
            abstained = min_confidence is not None and score < min_confidence  # Classifier.predict's rule
            out.append({"label": None if abstained else labels[k], "score": round(float(score), DIGITS),
                        "abstained": bool(abstained), "suggested_label": labels[k]})
    if with_probabilities:
        for row, answer in zip(probs, out):
            answer["probabilities"] = {label: round(float(p), DIGITS) for label, p in zip(labels, row)}
    return out


def metadata(classifier: Classifier, backend: str, limits: dict) -> dict:
    """`GET /metadata`: the labels, the run's method and base model, the versions, how it decides, its
    test figures (from the run's `metrics.json`; None for an ONNX export, which carries none) and the limits."""
    info = classifier.info
    decision = dict(classifier.decision or {})
    return {
        "labels": list(classifier.labels),
        "multi_label": classifier.multi_label,
        "method": info.method,
        "trained_method": info.trained_method,
        "base_model": info.base_model,
        "backend": backend,
        "textxfer_version": __version__,
        "run_textxfer_version": info.textxfer_version,
        "text_pair_column": info.text_pair_column,
        "max_length": info.max_length,
        "long_text": info.long_text,
        "decision": decision,
        "min_confidence": None if classifier.multi_label else decision.get("min_confidence"),
        "calibration": (classifier.calibration or {}).get("method"),
        "test_metrics": test_metrics(classifier),
        "limits": limits,
    }


def test_metrics(classifier: Classifier) -> dict | None:
    """The headline test figures of the run (the numbers at the top of `metrics.json`'s `test` part)."""
    path = classifier.run_dir / "metrics.json" if classifier.run_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        test = json.loads(path.read_text(encoding="utf-8")).get("test")
    except (OSError, ValueError):
        return None
    if not isinstance(test, dict):
        return None
    return {k: v for k, v in test.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
