"""`textxfer tune`: a hyperparameter search with Optuna, scored on validation only.

    textxfer tune RECIPE --trials 20 [--space space.yaml] [--storage sqlite:///study.db] [--study-name NAME]
                  [--output DIR] [--metric macro_f1] [--keep best|all|none] [--seed N]

Optuna's TPE sampler (seeded) proposes each trial's values from the search space
(`textxfer.analysis.search_space`: a default per method, or `--space`); the trial trains the recipe with
them in a process of its own (`textxfer.analysis.trials`), with no test file, so that the search never
sees the test set. Each epoch's validation score is reported to Optuna as it comes, and the median
pruner stops a trial whose score falls below the median of earlier trials at the same epoch (from
epoch 2, once 5 trials have finished). The objective is the validation score of the epoch the run
keeps (`--metric`, default the one that picks that epoch: macro-F1, or micro-F1 for multi-label).

The study lives in an Optuna storage: by default `DIR/study.db` (SQLite), so running the same command
again resumes it: finished trials stay, the trial that was running is run again, and trials are added
until `--trials` have finished (completed or pruned). With a database URL shared by several machines
(`--storage postgresql://...` or `mysql://...`), each machine runs `textxfer tune` with the same
`--study-name` and they fill one study together (docs/scaling.md). Optuna's heartbeat marks a trial
whose machine died as failed and queues its values again.

Writes into DIR (default: the recipe's output_dir + `-tune`): `recipe.yaml` (what every trial trains,
before its values), `space.yaml`, `trials.csv` (one row per trial: state, values, scores, time),
`best_recipe.yaml` (the recipe with the best trial's values, which `textxfer train` runs as it is, with
the test file), `tune.json`, `optimization_history.png`, `param_importances.png`, and `trials/` (each
trial's log, and the run folders `--keep` keeps: the best one by default).
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..analysis.search_space import (Param, as_overrides, check_space, default_space, read_space, space_to_yaml,
                                     suggest)
from ..analysis.trials import log_tail, run_trial, train_command
from ..config import load_recipe, parse_overrides, save_recipe
from ..errors import TextxferError
from ..evaluation.metrics import selection_metric
from ..fsutil import write_json
from ..log import get_logger
from ..outputs import OutputFolder

log = get_logger("tune")

WORKSPACE = ("trials", "study.db", "recipe.yaml", "space.yaml", "best_recipe.yaml", "trials.csv", "tune.json",
             "optimization_history.png", "param_importances.png")
# What every trial trains with, whatever the recipe says: no test file (the search sees validation only), no
# checkpoints (a stopped trial runs again from the start), its own folder under DIR/trials.
TRIAL_FIXED = ("overwrite=true", "train.save_every=0", "train.resume=null", "data.test=null",
               "data.dataset_test_split=null")
METRICS = {False: ("macro_f1", "accuracy", "loss"), True: ("micro_f1", "macro_f1", "subset_accuracy", "loss")}
KEEP = ("best", "all", "none")
HEARTBEAT_SECONDS = 60  # Optuna's heartbeat: a trial silent for GRACE_SECONDS is failed and queued again
GRACE_SECONDS = 300
MAX_FAILURES_IN_A_ROW = 3


@dataclass
class Study:
    """What one invocation works with."""

    recipe_path: str
    overrides: list[str]
    trials: int
    space: dict[str, Param]
    metric: str
    keep: str
    root: Path
    worker: str  # this host and output folder: the trials it runs carry it

    @property
    def trial_recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def minimize(self) -> bool:
        return self.metric == "loss"


class TrialFailed(Exception):
    """A trial process that ended in error (not a recipe error, which stops the whole search)."""


def tune(recipe_path: str, overrides: list[str], trials: int, space: str | None = None, storage: str | None = None,
         study_name: str | None = None, output: str | None = None, metric: str | None = None, keep: str = "best",
         seed: int | None = None) -> dict:
    """Run (or resume) the search until `trials` trials have finished; returns the summary (`tune.json`)."""
    optuna = _import_optuna()
    if trials < 1:
        raise TextxferError(f"`--trials` must be 1 or more, got {trials}.")
    if keep not in KEEP:
        raise TextxferError(f"`--keep` is one of {', '.join(KEEP)}, got {keep!r}.")
    base = load_recipe(recipe_path, overrides)
    allowed = METRICS[base.data.multi_label]
    metric = metric or selection_metric(base.data.multi_label)
    if metric not in allowed:
        raise TextxferError(f"`--metric {metric}` is not a validation score of this "
                            f"{'multi-label' if base.data.multi_label else 'single-label'} recipe; choose from "
                            f"{', '.join(allowed)}.")
    chosen = read_space(space) if space else default_space(base)
    if not chosen:
        raise TextxferError(f"The search space is empty: nothing to tune for `model.method={base.model.method}` by "
                            f"default. Give one with `--space FILE` (e.g. `train.lr: {{type: float, low: 1.0e-5, "
                            f"high: 1.0e-3, log: true}}`).")
    root = Path(output or f"{base.output_dir}-tune")
    d = base.data
    folder = OutputFolder(root, inputs=[recipe_path, d.train, d.validation, d.test, d.unlabeled], kind="tune",
                          setting="--output", workspace_entries=WORKSPACE)
    with folder:
        check_space(chosen, recipe_path, [*overrides, *TRIAL_FIXED])
        folder.mark_workspace()
        study = Study(recipe_path, overrides, trials, chosen, metric, keep, root,
                      f"{socket.gethostname()}:{root.resolve()}")
        _write_trial_recipe(study)
        (root / "space.yaml").write_text(space_to_yaml(chosen), encoding="utf-8")
        (root / "trials").mkdir(exist_ok=True)
        storage_url = storage or f"sqlite:///{(root / 'study.db').resolve().as_posix()}"
        name = study_name or Path(recipe_path).stem
        return _search(optuna, study, storage_url, name, base.train.seed if seed is None else seed)


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise TextxferError("`textxfer tune` runs on Optuna, which is not installed: `pip install 'textxfer[tune]'` "
                            "(or `pip install optuna`).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _write_trial_recipe(study: Study) -> None:
    """DIR/recipe.yaml: the recipe and the command-line overrides as one file, without `push_to_hub` (a trial
    never pushes). A resumed study must train the same recipe, or its trials would not compare."""
    raw = yaml.safe_load(Path(study.recipe_path).read_text(encoding="utf-8")) or {}
    merged = _merge(raw, parse_overrides(study.overrides))
    merged.pop("push_to_hub", None)
    text = yaml.safe_dump(merged, sort_keys=False)
    path = study.trial_recipe
    if path.is_file() and yaml.safe_load(path.read_text(encoding="utf-8")) != yaml.safe_load(text):
        raise TextxferError(f"{study.root} holds a study of another recipe (its {path.name} differs from "
                            f"{study.recipe_path} with these overrides); its trials would not compare with new "
                            f"ones. Give another `--output` (and `--study-name`), or run with the same recipe.")
    path.write_text(text, encoding="utf-8")


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _search(optuna, study: Study, storage_url: str, name: str, seed: int) -> dict:
    started = time.perf_counter()
    storage = _storage(optuna, storage_url)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=min(5, max(2, study.trials // 4)), n_warmup_steps=2)
    direction = "minimize" if study.minimize else "maximize"
    optimizer = optuna.create_study(study_name=name, storage=storage, direction=direction, pruner=pruner,
                                    load_if_exists=True)
    _check_same_study(optimizer, study, name, storage_url)
    _requeue_own_stale_trials(optuna, optimizer, study)
    # Seeded, and reseeded by the trials already in the study: a resumed search does not draw the same
    # start-up values again. Several machines on one study: give each its own --seed.
    optimizer.sampler = optuna.samplers.TPESampler(seed=seed + len(optimizer.trials), constant_liar=True,
                                                   n_startup_trials=min(10, max(3, study.trials // 4)))
    done = _finished(optuna, optimizer)
    log.info(f"study `{name}` in {storage_url}: {done} of {study.trials} trial(s) finished; searching "
             f"{', '.join(study.space)} for the best validation {study.metric}")
    failures = 0
    try:
        while _finished(optuna, optimizer) < study.trials:
            before = len(optimizer.trials)
            optimizer.optimize(lambda trial: _objective(optuna, trial, study), n_trials=1, catch=(TrialFailed,),
                               gc_after_trial=False)
            trial = optimizer.trials[-1] if len(optimizer.trials) > before else None
            failures = failures + 1 if trial is not None and trial.state.name == "FAIL" else 0
            _after_trial(optuna, optimizer, study, trial)
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise TextxferError(f"{failures} trials in a row failed; the last one's log is "
                                    f"{_log_path(study, trial.number)}:\n{log_tail(_log_path(study, trial.number))}")
    except KeyboardInterrupt:
        _requeue_interrupted(optuna, optimizer, study)
        log.info(f"interrupted: {_finished(optuna, optimizer)} of {study.trials} trial(s) finished; the same command "
                 f"resumes the study (the interrupted trial runs again first)")
        raise
    summary = _write_reports(optuna, optimizer, study, storage_url, time.perf_counter() - started)
    _draw_plots(optuna, optimizer, study)
    return summary


def _storage(optuna, url: str):
    from optuna import storages

    # Optuna 4.9 renamed the callback that queues a dead machine's trial again; earlier versions know the old name
    if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
        retry = {"heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    else:
        retry = {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=1)}
    try:
        return storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS, **retry)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and drivers raise many kinds
        raise TextxferError(f"Cannot open the Optuna storage `{url}` (--storage): {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}. Give an SQLAlchemy database URL such "
                            f"as sqlite:///study.db or postgresql://user:password@host/db (with its driver "
                            f"installed).") from None


def _check_same_study(optimizer, study: Study, name: str, url: str) -> None:
    """A study is made once with its metric and space (in its user attributes); a resumed one must match."""
    wanted = {"metric": study.metric, "space": {k: p.to_dict() for k, p in study.space.items()}}
    stored = {key: optimizer.user_attrs.get(key) for key in wanted}
    if stored["metric"] is None:
        for key, value in wanted.items():
            optimizer.set_user_attr(key, value)
        return
    if stored != wanted:
        differs = [key for key in wanted if stored[key] != wanted[key]]
        raise TextxferError(f"The study `{name}` in {url} was started with another {' and '.join(differs)} "
                            f"(metric {stored['metric']}; space {', '.join(stored['space'] or {})}). Continue it with "
                            f"the same --metric and --space, or start another with `--study-name`.")


def _finished(optuna, optimizer) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(optimizer.get_trials(deepcopy=False, states=states))


def _requeue_own_stale_trials(optuna, optimizer, study: Study) -> None:
    """Trials this output folder's worker left running (its process was killed): we hold the folder's lock,
    so they are dead. Fail them and queue their values to run first."""
    for trial in optimizer.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") != study.worker:
            continue  # another machine's (Optuna's heartbeat looks after those)
        optimizer._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if trial.params:
            optimizer.enqueue_trial(trial.params)
        _remove_run(study, trial.number)
        log.info(f"trial {trial.number} was left running by an earlier `textxfer tune` here that stopped; it runs "
                 f"again")


def _requeue_interrupted(optuna, optimizer, study: Study) -> None:
    ours = [t for t in optimizer.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
            if t.user_attrs.get("worker") == study.worker]
    if ours and ours[-1].params and ours[-1].number == optimizer.trials[-1].number:
        optimizer.enqueue_trial(ours[-1].params)
        _remove_run(study, ours[-1].number)


def _objective(optuna, trial, study: Study) -> float:
    values = suggest(trial, study.space)
    run_dir = _run_dir(study, trial.number)
    trial.set_user_attr("worker", study.worker)
    command = train_command(study.trial_recipe, [*as_overrides(values), *TRIAL_FIXED, f"output_dir={run_dir}"])
    key = f"validation/{study.metric}"

    def on_epoch(scores: dict) -> bool:
        if key not in scores:
            return False
        trial.report(scores[key], int(scores["epoch"]))
        return trial.should_prune()

    outcome = run_trial(command, study.root / "trials" / f"trial-{trial.number:04d}.progress.jsonl",
                        _log_path(study, trial.number), on_epoch)
    (study.root / "trials" / f"trial-{trial.number:04d}.progress.jsonl").unlink(missing_ok=True)
    trial.set_user_attr("seconds", round(outcome.seconds, 1))
    trial.set_user_attr("epochs_reported", len(outcome.epochs))
    if outcome.pruned:
        raise optuna.TrialPruned(f"validation {study.metric} {outcome.epochs[-1][key]:.4f} at epoch "
                                 f"{outcome.epochs[-1]['epoch']}, below the median of earlier trials")
    if outcome.returncode == 2 and outcome.error:  # a recipe error: every trial would meet it
        raise TextxferError(f"Trial {trial.number} stopped on an error ({_log_path(study, trial.number)}): "
                            f"{outcome.error}")
    metrics_file = run_dir / "metrics.json"
    if outcome.returncode != 0 or not metrics_file.is_file():
        raise TrialFailed(f"exit status {outcome.returncode}; see {_log_path(study, trial.number)}")
    validation = json.loads(metrics_file.read_text(encoding="utf-8"))["validation"]
    trial.set_user_attr("validation", {k: v for k, v in validation.items() if isinstance(v, (int, float))})
    value = float(validation[study.metric])
    if not math.isfinite(value):
        raise TrialFailed(f"validation {study.metric} is {value}")
    return value


def _run_dir(study: Study, number: int) -> Path:
    return study.root / "trials" / f"trial-{number:04d}"


def _log_path(study: Study, number: int) -> Path:
    return study.root / "trials" / f"trial-{number:04d}.log"


def _remove_run(study: Study, number: int) -> None:
    """A trial's run folder and what a run leaves beside it (staging, lock, tracker and checkpoint folders)."""
    run = _run_dir(study, number)
    for path in (run, run.with_name(run.name + ".incomplete"), run.with_name(run.name + ".tracking"),
                 run.with_name(run.name + ".checkpoints")):
        shutil.rmtree(path, ignore_errors=True)
    run.with_name(f".{run.name}.lock").unlink(missing_ok=True)


def _after_trial(optuna, optimizer, study: Study, trial) -> None:
    """Say how the trial went, clean the runs `--keep` does not keep, and rewrite the tables."""
    if trial is None:
        return
    state = trial.state
    best = _best(optuna, optimizer)
    shown = ", ".join(f"{key.rsplit('.', 1)[-1]} {_fmt(value)}" for key, value in trial.params.items())
    seconds = trial.user_attrs.get("seconds", 0)
    if state == optuna.trial.TrialState.COMPLETE:
        best_text = f"best {best.value:.4f} (trial {best.number})" if best is not None else ""
        log.info(f"trial {trial.number}: {shown} -> validation {study.metric} {trial.value:.4f} in {seconds:.0f} s; "
                 f"{best_text}")
    elif state == optuna.trial.TrialState.PRUNED:
        log.info(f"trial {trial.number}: {shown} -> pruned after {trial.user_attrs.get('epochs_reported', 0)} "
                 f"epoch(s), {seconds:.0f} s")
    else:
        log.warning(f"trial {trial.number} failed ({shown}); its log: {_log_path(study, trial.number)}")
    if state != optuna.trial.TrialState.COMPLETE or study.keep == "none":
        _remove_run(study, trial.number)
    if study.keep == "best":
        for other in optimizer.get_trials(deepcopy=False):
            if other.user_attrs.get("worker") == study.worker and (best is None or other.number != best.number) \
                    and other.state != optuna.trial.TrialState.RUNNING:
                _remove_run(study, other.number)
    _write_trials_table(optuna, optimizer, study)


def _best(optuna, optimizer):
    complete = optimizer.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return optimizer.best_trial if complete else None


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _write_trials_table(optuna, optimizer, study: Study) -> None:
    """trials.csv: one row per trial of the study (every machine's), written whole each time."""
    keys = list(study.space)
    scores = sorted({k for t in optimizer.trials for k in t.user_attrs.get("validation", {})} - {"epoch", study.metric})
    path = study.root / "trials.csv"
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial", "state", f"validation_{study.metric}", *keys, "epochs_reported", "best_epoch",
                         *[f"validation_{k}" for k in scores], "seconds", "run_dir", "worker"])
        for t in optimizer.trials:
            validation = t.user_attrs.get("validation", {})
            run = _run_dir(study, t.number)
            writer.writerow([t.number, t.state.name.lower(), "" if t.value is None else t.value,
                             *[t.params.get(k, "") for k in keys], t.user_attrs.get("epochs_reported", ""),
                             validation.get("epoch", ""), *[validation.get(k, "") for k in scores],
                             t.user_attrs.get("seconds", ""), str(run) if (run / "metrics.json").is_file() else "",
                             t.user_attrs.get("worker", "")])
    tmp.replace(path)


def _write_reports(optuna, optimizer, study: Study, storage_url: str, seconds: float) -> dict:
    """trials.csv, best_recipe.yaml and tune.json."""
    _write_trials_table(optuna, optimizer, study)
    best = _best(optuna, optimizer)
    counts = {state.name.lower(): len(optimizer.get_trials(deepcopy=False, states=(state,)))
              for state in optuna.trial.TrialState}
    summary = {"study": optimizer.study_name, "storage": storage_url, "metric": f"validation_{study.metric}",
               "direction": "minimize" if study.minimize else "maximize", "trials": counts,
               "wall_seconds_this_invocation": seconds,
               "trial_seconds_total": sum(t.user_attrs.get("seconds", 0) for t in optimizer.trials),
               "space": {k: p.to_dict() for k, p in study.space.items()}}
    if best is not None:
        best_recipe = _write_best_recipe(study, best, optimizer.study_name)
        summary["best"] = {"trial": best.number, "value": best.value, "params": best.params,
                           "validation": best.user_attrs.get("validation", {}), "recipe": str(best_recipe)}
        log.info(f"best: trial {best.number}, validation {study.metric} {best.value:.4f} with "
                 f"{', '.join(f'{k}={_fmt(v)}' for k, v in best.params.items())}; train it (with the test file) by "
                 f"`textxfer train {best_recipe}`")
    write_json(study.root / "tune.json", summary)
    return summary


def _write_best_recipe(study: Study, best, name: str) -> Path:
    """The recipe (with its test file and push_to_hub, if any) plus the best trial's values, resolved:
    exactly what `textxfer train` runs, into `<output_dir>-tuned`."""
    original = load_recipe(study.recipe_path, study.overrides)
    recipe = load_recipe(study.recipe_path, [*study.overrides, *as_overrides(best.params),
                                             f"output_dir={original.output_dir}-tuned"])
    path = study.root / "best_recipe.yaml"
    tmp = path.with_name(path.name + ".tmp")
    save_recipe(recipe, tmp)
    values = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    header = (f"# textxfer train {path}\n"
              f"# The best trial ({best.number}) of the study `{name}` of `textxfer tune {study.recipe_path}`:\n"
              f"# validation {study.metric} {best.value:.4f} with {values}.\n")
    tmp.write_text(header + tmp.read_text(encoding="utf-8"), encoding="utf-8")
    tmp.replace(path)
    return path


def _draw_plots(optuna, optimizer, study: Study) -> None:
    """Optuna's optimisation history and parameter importances (matplotlib); a plot that cannot be drawn
    (too few finished trials, say) is reported and left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    for name, draw in (("optimization_history.png", plots.plot_optimization_history),
                       ("param_importances.png", plots.plot_param_importances)):
        path = study.root / name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's notes on experimental plots and tied importances
                axes = draw(optimizer)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
        except Exception as exc:  # noqa: BLE001 - a plot is never worth the study
            path.unlink(missing_ok=True)
            log.warning(f"could not draw {name} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
