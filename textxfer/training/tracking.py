"""Experiment tracking (`train.report_to`) through Accelerate's own tracker API: the trackers are named
in `Accelerator(log_with=..., project_dir=...)`, started with `init_trackers(project, config=the resolved
recipe)`, fed with `accelerator.log(values, step=...)` and closed with each tracker's `finish()`.

What is logged, by the main process only (Accelerate's trackers log on the main process):
- `train/loss` (mean over the micro-batches of the step, on the main process) and `train/lr` (the
  highest group learning rate after the step) at every optimizer step, `step` counting the optimizer
  steps of the whole run (an LP-FT probe's steps, then the fine-tuning's);
- at the end of every epoch of the training loop, `validation/<score>` (accuracy, macro_f1, loss, ...),
  `train/epoch_loss` and `epoch` at the step the epoch ended; a fit with no loop (the L-BFGS head)
  logs its history at the end, one step per L2 strength;
- at the end, `best/validation_<score>` (the kept epoch), `test/<score>` and the run folder's plots:
  as images where the tracker takes images (tensorboard, wandb, aim), as artifacts for mlflow (with
  metrics.json and recipe.yaml).

Offline, and never a prompt:
- tensorboard writes into `<output_dir>.tracking/` beside the run folder while the run trains (the run
  folder itself only exists once it is complete: `textxfer.outputs.OutputFolder` stages and seals it), and
  the finished run copies the event files into `<run>/tensorboard/`, listed in the run's manifest like
  every other file; the side folder then goes. An interrupted run keeps it, and `train.resume` appends
  to it (a fresh run of the same output_dir clears it). `tensorboard --logdir runs/` shows every run.
- mlflow logs to `MLFLOW_TRACKING_URI` when it is set, else to MLflow's local store in the working
  folder: `mlflow.db` (SQLite; MLflow 3 refuses its plain-file store by default) with artifacts in
  `mlruns/`; `mlflow ui` started in that folder shows them.
- wandb runs with `WANDB_MODE=offline` unless the environment sets `WANDB_MODE` or `WANDB_API_KEY`
  (`wandb sync` uploads an offline run later).
- The other trackers Accelerate knows run as their own configuration says.

`group(project, run_name)` names the tracker runs trained inside it (`textxfer compare`: one project
per comparison, a run per cell). The environment variable `TEXTXFER_TRIAL_PROGRESS=FILE` (set by
`textxfer tune` for its trial processes) adds one more tracker, `EpochProgress`, which appends each
epoch's validation scores to FILE as a JSON line: that is how a trial's parent process prunes it.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from accelerate.tracking import GeneralTracker
from accelerate.utils import (is_aim_available, is_clearml_available, is_comet_ml_available, is_dvclive_available,
                              is_mlflow_available, is_swanlab_available, is_tensorboard_available,
                              is_trackio_available, is_wandb_available)

from ..config import Recipe
from ..errors import TextxferError
from ..log import get_logger, note

log = get_logger()

PROGRESS_ENV = "TEXTXFER_TRIAL_PROGRESS"
DEFAULT_PROJECT = "textxfer"
MARKER = ".textxfer-tracking"  # in the side folder: it is textxfer's to clear
LOG_FOLDER = "tensorboard"  # inside the finished run folder

# tracker -> (is its package importable, the pip requirement that installs it)
_PACKAGES = {
    "tensorboard": (is_tensorboard_available, "tensorboard"),
    "mlflow": (is_mlflow_available, "mlflow"),
    "wandb": (is_wandb_available, "wandb"),
    "aim": (is_aim_available, "aim"),
    "trackio": (is_trackio_available, "trackio"),
    "comet_ml": (is_comet_ml_available, "comet-ml"),
    "clearml": (is_clearml_available, "clearml"),
    "dvclive": (is_dvclive_available, "dvclive"),
    "swanlab": (is_swanlab_available, "swanlab"),
}
_IN_EXTRA = ("tensorboard", "mlflow")  # what `pip install 'textxfer[track]'` brings


def tracking_root(output_dir: str | Path) -> Path:
    """Where the trackers that write files write while the run trains: beside the run folder."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".tracking")


def require_packages(names: list[str]) -> None:
    """Refuse, before any work, a tracker whose package is not installed (Accelerate would skip it quietly)."""
    missing = [name for name in names if not _PACKAGES[name][0]()]
    if not missing:
        return
    pip = " ".join(_PACKAGES[name][1] for name in missing)
    extra = " (or `pip install 'textxfer[track]'`)" if all(name in _IN_EXTRA for name in missing) else ""
    raise TextxferError(f"`train.report_to` names {', '.join(missing)}, and {'its package is' if len(missing) == 1 else 'their packages are'} "
                        f"not installed in this Python environment. Install {'it' if len(missing) == 1 else 'them'} "
                        f"with `pip install {pip}`{extra}, or remove {', '.join(missing)} from `train.report_to`.")


def accelerator_options(recipe: Recipe) -> dict:
    """The `Accelerator(...)` arguments that turn the recipe's trackers on (none: an empty dict)."""
    names = list(dict.fromkeys(recipe.train.report_to))
    require_packages(names)
    trackers: list = list(names)
    progress = os.environ.get(PROGRESS_ENV)
    if progress:
        trackers.append(EpochProgress(progress))
    if not trackers:
        return {}
    return {"log_with": trackers, "project_dir": str(tracking_root(recipe.output_dir))}


# --- naming the tracker runs ------------------------------------------------------------------------

_GROUP: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("textxfer_tracking_group", default=None)


@contextlib.contextmanager
def group(project: str, run_name: str) -> Iterator[None]:
    """Runs trained inside this block log to the tracker project `project` as `run_name`."""
    token = _GROUP.set((project, run_name))
    try:
        yield
    finally:
        _GROUP.reset(token)


def run_names(recipe: Recipe) -> tuple[str, str]:
    """(project, run name): from `group` when inside one, else `textxfer` and the run folder's name."""
    return _GROUP.get() or (DEFAULT_PROJECT, Path(recipe.output_dir).name)


def flat_config(recipe: Recipe) -> dict:
    """The recipe as one level of dotted keys with plain values (what trackers take as hyperparameters)."""
    out: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, (list, tuple)):
            out[prefix] = json.dumps(list(value))
        else:
            out[prefix] = value

    walk("", recipe.to_dict())
    return out


# --- the session of one run --------------------------------------------------------------------------

@dataclass
class _Session:
    root: Path
    step: int = 0  # optimizer steps of the run so far
    epochs: int = 0  # epochs of the training loop logged so far
    loss_sum: object = 0.0  # the current step's micro-batch losses (a tensor once a batch is in)
    batches: int = 0
    broken: bool = False  # a tracker failed: the run goes on without tracking
    finished: bool = False  # `finish` logged the end and copied the logs into the run folder
    names: list = field(default_factory=list)


_SESSIONS: "weakref.WeakKeyDictionary[object, _Session]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def tracked(accelerator, recipe: Recipe) -> Iterator[None]:
    """Start the recipe's trackers for the run inside the block (main process, when any is asked for).
    The run's `finish` logs the end and closes them; a run that fails closes them too, marked failed
    where the tracker knows runs (mlflow), and keeps the side folder for `train.resume`."""
    if not accelerator.log_with or not accelerator.is_main_process:
        yield
        return
    names = [str(t) for t in accelerator.log_with if not isinstance(t, GeneralTracker)]
    root = tracking_root(recipe.output_dir)
    _prepare_root(root, resuming=recipe.train.resume is not None, needed=bool(names))
    _configure_environment(names)
    project, run_name = run_names(recipe)
    accelerator.init_trackers(project, config=flat_config(recipe), init_kwargs=_init_kwargs(names, root, run_name,
                                                                                          recipe))
    if "mlflow" in names:
        _remember_mlflow_run(accelerator, root)
    _SESSIONS[accelerator] = _Session(root=root, names=names)
    try:
        yield
    except BaseException:
        _close(accelerator, failed=True)
        raise
    else:
        _close(accelerator, failed=False)
        if _SESSIONS[accelerator].finished:
            shutil.rmtree(root, ignore_errors=True)  # the finished run folder holds the logs now
    finally:
        _SESSIONS.pop(accelerator, None)


def _prepare_root(root: Path, resuming: bool, needed: bool) -> None:
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise TextxferError(f"textxfer keeps a run's tracker logs in {root} while it trains, and that is an existing "
                            f"file. Move it away or choose another `output_dir`.")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).is_file():
        raise TextxferError(f"textxfer keeps a run's tracker logs in {root} while it trains, and that folder holds "
                            f"files textxfer did not write. Move them away or choose another `output_dir`.")
    if root.is_dir() and not resuming:  # an earlier, unfinished run's logs: this run starts afresh
        shutil.rmtree(root)
    if needed:
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).touch()


def _configure_environment(names: list[str]) -> None:
    """Local, non-interactive defaults for the trackers that would otherwise go online or ask."""
    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        uri = f"sqlite:///{(Path.cwd() / 'mlflow.db').as_posix()}"
        mlflow.set_tracking_uri(uri)
        note(log, f"mlflow logs to {uri} (artifacts in ./mlruns); set MLFLOW_TRACKING_URI to log elsewhere")
    if "wandb" in names and not (os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY")):
        os.environ["WANDB_MODE"] = "offline"
        note(log, "wandb runs offline (no WANDB_MODE or WANDB_API_KEY set); upload the run later with `wandb sync`")


def _init_kwargs(names: list[str], root: Path, run_name: str, recipe: Recipe) -> dict:
    tags = {"textxfer.output_dir": str(Path(recipe.output_dir).resolve()), "textxfer.method": recipe.model.method}
    kwargs: dict = {}
    if "mlflow" in names:
        saved = root / "mlflow-run-id"
        resume_id = saved.read_text().strip() if recipe.train.resume is not None and saved.is_file() else None
        kwargs["mlflow"] = {"run_name": run_name, "tags": tags, **({"run_id": resume_id} if resume_id else {})}
    if "wandb" in names:
        kwargs["wandb"] = {"name": run_name, "tags": [recipe.model.method], "config": {"output_dir": tags[
            "textxfer.output_dir"]}}
    return kwargs


def _remember_mlflow_run(accelerator, root: Path) -> None:
    """The mlflow run id, so that a resumed run goes on logging into the same mlflow run."""
    run = accelerator.get_tracker("mlflow", unwrap=True)  # mlflow's active run
    if hasattr(run, "info") and root.is_dir():
        (root / "mlflow-run-id").write_text(run.info.run_id)


def _log(accelerator, session: _Session, values: dict, step: int) -> None:
    """`accelerator.log`, where a failing tracker costs its logs, never the run."""
    if session.broken or not values:
        return
    try:
        accelerator.log(values, step=step)
    except Exception as exc:  # noqa: BLE001 - a tracker is never worth a trained model
        session.broken = True
        log.warning(f"experiment tracking stopped: a tracker failed ({type(exc).__name__}: {exc}); training goes on")


# --- hooks of the training loop ---------------------------------------------------------------------

def on_batch(accelerator, loss, optimizer) -> None:
    """After each micro-batch: at an optimizer step, log the step's mean loss and the learning rate."""
    session = _SESSIONS.get(accelerator)
    if session is None:
        return
    session.loss_sum = session.loss_sum + loss.detach().float()
    session.batches += 1
    if not accelerator.sync_gradients:
        return
    session.step += 1
    mean = float(session.loss_sum) / session.batches
    session.loss_sum, session.batches = 0.0, 0
    lr = max(group["lr"] for group in optimizer.param_groups)
    _log(accelerator, session, {"train/loss": mean, "train/lr": lr}, session.step)


def on_epoch(accelerator, entry: dict) -> None:
    """After each epoch's validation: its scores, at the step the epoch ended."""
    session = _SESSIONS.get(accelerator)
    if session is None:
        return
    session.epochs += 1
    _log(accelerator, session, {**_epoch_values(entry), "epoch": session.epochs}, session.step)


def on_resume(accelerator, step: int) -> None:
    """A fit resumed from a checkpoint at optimizer step `step`: go on counting from there."""
    session = _SESSIONS.get(accelerator)
    if session is not None:
        session.step = max(session.step, step)


def _epoch_values(entry: dict) -> dict:
    values = {}
    for key, value in entry.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or key in ("epoch", "validation_n"):
            continue
        if key.startswith("validation_"):
            values[f"validation/{key[len('validation_'):]}"] = value
        elif key == "train_loss":
            values["train/epoch_loss"] = value
        else:
            values[f"train/{key}"] = value
    return values


# --- the end of the run -----------------------------------------------------------------------------

def finish(accelerator, staging: Path, metrics: dict) -> None:
    """Log the run's end (best validation, test, plots), close the trackers and put the tensorboard logs
    into the staging folder of the run, so that they are sealed with it. Nothing without trackers."""
    session = _SESSIONS.get(accelerator)
    if session is None:
        return
    if session.epochs == 0:  # a fit without the training loop: its history, one step per entry
        for k, entry in enumerate(metrics.get("history") or [], 1):
            _log(accelerator, session, {**_epoch_values(entry), "epoch": k}, k)
            session.step = max(session.step, k)
    final = {f"best/validation_{k}": v for k, v in _numbers(metrics.get("validation") or {}).items()}
    final.update({f"test/{k}": v for k, v in _numbers(metrics.get("test") or {}).items()})
    _log(accelerator, session, final, session.step)
    if not session.broken:
        _log_files(accelerator, staging, session.step)
    board = next((t for t in accelerator.trackers if t.name == "tensorboard"), None)
    _close(accelerator, failed=False)
    if board is not None and Path(board.logging_dir).is_dir():
        shutil.copytree(board.logging_dir, staging / LOG_FOLDER)
    session.finished = True


def _numbers(scores: dict, prefix: str = "") -> dict:
    """The numeric figures of a score dict, nested `extra_metrics` results flattened with their names."""
    out = {}
    for key, value in scores.items():
        if isinstance(value, bool) or key == "n":
            continue
        if isinstance(value, (int, float)):
            out[prefix + key] = value
        elif key == "extra_metrics" and isinstance(value, dict):
            for name, result in value.items():
                out.update(_numbers(result, f"{prefix}{name}/") if isinstance(result, dict) else {})
    return out


def _log_files(accelerator, staging: Path, step: int) -> None:
    """The run folder's plots as images (or artifacts), and for mlflow the metrics and recipe files."""
    pictures = sorted(staging.glob("*.png"))
    for tracker in accelerator.trackers:
        try:
            if tracker.name == "mlflow":
                for path in [*pictures, staging / "metrics.json", staging / "recipe.yaml"]:
                    if path.is_file():
                        tracker.log_artifact(str(path), "plots" if path.suffix == ".png" else None)
            elif tracker.name == "tensorboard":
                tracker.log_images({f"plots/{p.stem}": _image(p)[None] for p in pictures}, step=step,
                                   dataformats="NHWC")
            elif hasattr(tracker, "log_images") and pictures:
                tracker.log_images({f"plots/{p.stem}": [_image(p)] for p in pictures}, step=step)
        except Exception as exc:  # noqa: BLE001 - pictures are never worth a trained model
            log.warning(f"could not log the run's plots to {tracker.name} ({type(exc).__name__}: {exc})")


def _image(path: Path):
    """A PNG as an RGB uint8 array, height x width x 3."""
    import numpy as np
    from matplotlib.image import imread

    pixels = imread(path)
    if pixels.dtype != np.uint8:
        pixels = (pixels * 255).round().astype(np.uint8)
    return pixels[..., :3] if pixels.ndim == 3 else np.stack([pixels] * 3, axis=-1)


def _close(accelerator, failed: bool) -> None:
    """Finish every tracker once (Accelerate's `end_training` then finds none left to finish)."""
    for tracker in list(accelerator.trackers):
        try:
            if failed and tracker.name == "mlflow":
                import mlflow

                mlflow.end_run(status="FAILED")
            else:
                tracker.finish()
        except Exception as exc:  # noqa: BLE001
            log.warning(f"could not close the {tracker.name} tracker ({type(exc).__name__}: {exc})")
    accelerator.trackers.clear()


# --- the progress file of a `textxfer tune` trial ------------------------------------------------------

class EpochProgress(GeneralTracker):
    """A tracker that appends each epoch's validation scores to a JSON-lines file (one object per epoch:
    `epoch`, `step` and `validation/<score>`), flushed at once: `textxfer tune` reads it from the trial's
    parent process to report the trial to Optuna and prune it. A trial whose parent has gone (killed)
    stops at its next optimizer step instead of training on for nobody."""

    name = "textxfer_progress"
    requires_logging_directory = False

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    @property
    def tracker(self):
        return self.path

    def start(self) -> None:
        self.parent = os.getppid()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        if os.getppid() != self.parent:
            raise SystemExit("textxfer: the `textxfer tune` process that started this trial has stopped; so does the trial")
        if "epoch" not in values:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
