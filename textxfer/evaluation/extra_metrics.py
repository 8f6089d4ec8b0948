"""Extra metrics from Hugging Face `evaluate` (`train.extra_metrics`), besides the built-in scikit-learn ones.

Each entry is `NAME_OR_PATH [key=value ...]`: a metric on the Hub (`matthews_correlation`,
`OWNER/NAME`) or a local metric script or folder, then the arguments of its `compute` (values read as
YAML), and `config=NAME` for the metric's configuration: e.g. `"f1 average=macro"`,
`"f1 config=multilabel average=micro"`. Every metric is loaded, and tried on three made-up rows,
before training starts, so that an unreachable, uncached or unfit metric is an error then and not after
the run. After training each is computed on the validation predictions of the kept epoch and on the
test predictions (class ids; for multi-label runs, rows of 0/1 per label), and recorded under
`extra_metrics` in metrics.json (`{"matthews_correlation": {"matthews_correlation": 0.81}}`) and in
the model card's model-index. A metric that fails then is a warning and an `error` entry: it never costs
the trained run.

`evaluate` is not a dependency of textxfer (`pip install 'textxfer[metrics]'`): it fetches metric scripts
from the Hub at run time and is in maintenance mode; the core metrics stay scikit-learn and offline.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import TextxferError
from ..log import get_logger

log = get_logger()


@dataclass
class ExtraMetric:
    """One `train.extra_metrics` entry, loaded."""

    spec: str  # as the recipe wrote it
    name: str  # the key in metrics.json: the metric's name, or its script's or folder's
    module: object
    kwargs: dict = field(default_factory=dict)

    def compute(self, predictions: list, references: list) -> dict:
        result = self.module.compute(predictions=predictions, references=references, **self.kwargs)
        return {key: _plain(value) for key, value in (result or {}).items()}


_LOADED: dict[tuple, ExtraMetric] = {}  # (spec, multi-label) -> the metric, loaded and tried once per process


def parse(spec: str) -> tuple[str, str | None, dict]:
    """`"f1 config=multilabel average=micro"` -> ("f1", "multilabel", {"average": "micro"})."""
    parts = spec.split()
    if not parts:
        raise TextxferError("`train.extra_metrics` has an empty entry; give a metric name such as "
                            "`matthews_correlation`, or remove it.")
    name, kwargs = parts[0], {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise TextxferError(f"`train.extra_metrics` entry {spec!r}: after the metric's name come `key=value` "
                                f"arguments of its compute (e.g. `f1 average=macro`), and {part!r} is not one.")
        kwargs[key] = yaml.safe_load(value) if value else None
    return name, kwargs.pop("config", None), kwargs


def load_extra_metrics(specs: list[str], multi_label: bool = False) -> list[ExtraMetric]:
    """Load (and try) every metric; one clear error naming the metric otherwise. Nothing to do, and
    `evaluate` not imported, when there are none."""
    if not specs:
        return []
    try:
        import evaluate
    except ImportError:
        raise TextxferError("`train.extra_metrics` computes metrics with Hugging Face `evaluate`, which is not "
                            "installed: `pip install 'textxfer[metrics]'` (or `pip install evaluate`), or remove "
                            "`train.extra_metrics`.") from None
    loaded, names = [], set()
    for spec in specs:
        metric = _LOADED.get((spec, multi_label))
        if metric is None:
            metric = _load(evaluate, spec)
            _try(metric, multi_label)
            _LOADED[(spec, multi_label)] = metric
        if metric.name in names:
            raise TextxferError(f"`train.extra_metrics` names the metric `{metric.name}` twice; keep one (give a "
                                f"metric of another name for other arguments).")
        names.add(metric.name)
        loaded.append(metric)
    return loaded


def _load(evaluate, spec: str) -> ExtraMetric:
    path, config, kwargs = parse(spec)
    local = Path(path).exists()
    if not local and path.startswith((".", "/", "~")):
        raise TextxferError(f"The metric {path} (`train.extra_metrics`) does not exist: give a metric script "
                            f"(`my_metric.py`), a folder holding `<folder name>.py`, or a metric name on the Hub.")
    offline = not local and _offline()
    was = evaluate.config.HF_EVALUATE_OFFLINE
    evaluate.config.HF_EVALUATE_OFFLINE = was or offline  # offline: cached modules only, and at once
    try:
        module = evaluate.load(path, config, keep_in_memory=True) if config else evaluate.load(path, keep_in_memory=True)
    except Exception as exc:  # noqa: BLE001 - evaluate, datasets and the Hub client raise many kinds
        reason = " ".join(str(exc).split()) or type(exc).__name__
        where = ("it is not in the local `evaluate` cache and the Hugging Face Hub cannot be reached (offline)"
                 if offline else "it could not be loaded")
        raise TextxferError(f"The metric `{spec}` (`train.extra_metrics`) is not available: {where} ({reason}). "
                            f"Load it once with a network so that `evaluate` caches it, give a local metric script "
                            f"or folder, or remove it from `train.extra_metrics`.") from None
    finally:
        evaluate.config.HF_EVALUATE_OFFLINE = was
    return ExtraMetric(spec, Path(path.rstrip("/")).stem, module, kwargs)  # the name as the recipe writes it


def _offline() -> bool:
    """HF_HUB_OFFLINE / HF_EVALUATE_OFFLINE, or a Hub endpoint that does not answer within 3 s."""
    if any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE")):
        return True
    from huggingface_hub import constants

    host = constants.ENDPOINT.split("://", 1)[-1].split("/", 1)[0]
    name, _, port = host.partition(":")
    try:
        socket.create_connection((name, int(port or 443)), timeout=3).close()
        return False
    except OSError:
        return True


def _try(metric: ExtraMetric, multi_label: bool) -> None:
    """Compute the metric on three made-up rows (three classes, or two labels): a metric that cannot
    take this run's kind of predictions is refused now, not after training."""
    predictions, references = ([[1, 0], [0, 1], [1, 1]], [[1, 0], [1, 1], [0, 1]]) if multi_label else \
        ([0, 2, 1], [0, 1, 2])
    try:
        metric.compute(predictions, references)
    except Exception as exc:  # noqa: BLE001
        kind = "multi-label rows of 0/1" if multi_label else "class ids of several classes"
        raise TextxferError(f"The metric `{metric.spec}` (`train.extra_metrics`) fails on {kind} ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]}). Give it the arguments it needs after its name, "
                            f"e.g. `\"f1 average=macro\"` (or `config=multilabel` for multi-label runs).") from None


def compute_all(metrics: list[ExtraMetric], predictions, references, split: str) -> dict:
    """{metric name: its results} on one split; a failing metric is a warning and an `error` entry."""
    predictions, references = _as_lists(predictions), _as_lists(references)
    out = {}
    for metric in metrics:
        try:
            out[metric.name] = metric.compute(predictions, references)
        except Exception as exc:  # noqa: BLE001 - a metric is never worth the trained run
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            log.warning(f"the metric `{metric.spec}` failed on the {split} predictions ({reason}); the run is saved "
                        f"without it")
            out[metric.name] = {"error": reason}
    return out


def _as_lists(values) -> list:
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    return [v.tolist() if hasattr(v, "tolist") else v for v in values]


def _plain(value):
    """JSON-ready: numpy scalars and arrays as Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def card_results(scores: dict) -> list[tuple[str, str, float]]:
    """(metric type, display name, value) of each numeric extra-metric result of a split's scores, for
    the model card's model-index."""
    out = []
    for name, result in (scores.get("extra_metrics") or {}).items():
        for key, value in (result or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append((name, name if key == name else f"{name} {key}", round(float(value), 4)))
    return out
