"""Prediction from saved runs: `load_classifier` loads any run folder (a method's run, a merged model,
an ensemble) as a `Classifier`."""
from pathlib import Path

from ..runs.info import RunInfo
from .classifier import Classifier
from .ensemble import EnsembleClassifier


def load_classifier(run_dir: str | Path, device: str | None = None) -> Classifier:
    """Load a saved run for prediction: `load_classifier("runs/tickets").predict([...])`."""
    info = RunInfo.read(run_dir)
    if info.is_ensemble:
        return EnsembleClassifier.load(run_dir, device, info)
    return Classifier.load(run_dir, device, info)


__all__ = ["Classifier", "EnsembleClassifier", "load_classifier"]
