"""`textxfer tune`: search spaces, trials in processes of their own watched epoch by epoch (pruning), a
study that resumes from its SQLite storage after its process was killed, and what it writes."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_recipe

from textxfer import load_recipe
from textxfer.analysis import search_space, trials
from textxfer.analysis.search_space import Param
from textxfer.errors import TextxferError

SPACE = {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
         "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2}}


def _space_file(folder: Path, space: dict = SPACE) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space), encoding="utf-8")
    return path


def _study(root: Path):
    import optuna

    return optuna.load_study(study_name="recipe", storage=f"sqlite:///{(root / 'study.db').as_posix()}")


def test_the_progress_variable_is_the_one_the_training_side_reads():
    from textxfer.training import tracking

    assert trials.PROGRESS_ENV == tracking.PROGRESS_ENV


@pytest.mark.parametrize("method, present, absent", [
    ("full", {"train.lr", "train.epochs", "train.batch_size", "train.warmup_ratio", "train.weight_decay",
              "train.layer_lr_decay"}, {"model.lora.r"}),
    ("lora", {"train.lr", "train.epochs", "model.lora.r", "model.lora.alpha", "model.lora.dropout"},
     {"train.layer_lr_decay"}),
    ("feature_extraction", {"model.pooling", "train.class_weights"}, {"train.lr", "train.epochs"}),
])
def test_the_default_space_holds_what_applies_to_the_method(tmp_path, tiny_bert, method, present, absent):
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert, method, epochs=None, lr=None))
    space = search_space.default_space(recipe)
    assert present <= set(space) and not absent & set(space)
    if "train.lr" in space:  # a decade either side of the method's default, log scale
        lr = recipe.train.lr
        assert space["train.lr"].log and space["train.lr"].low == pytest.approx(lr / 10)
    search_space.check_space(space, str(tiny_recipe(tmp_path, tiny_bert, method, epochs=None, lr=None)), [])


def test_a_feature_extraction_head_trained_by_sgd_searches_its_learning_rate(tmp_path, tiny_bert):
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert, "feature_extraction", epochs=None, lr=None,
                                     head_solver="sgd"))
    assert {"train.lr", "train.epochs"} <= set(search_space.default_space(recipe))


def test_a_space_file_is_read_and_written_back_the_same(tmp_path):
    path = _space_file(tmp_path, {**SPACE, "train.batch_size": [8, 16], "train.epochs": {"type": "int", "low": 2,
                                                                                           "high": 4}})
    space = search_space.read_space(path)
    assert space["train.batch_size"] == Param("categorical", choices=(8, 16))
    assert space["train.epochs"] == Param("int", 2, 4)
    again = tmp_path / "again.yaml"
    again.write_text(search_space.space_to_yaml(space), encoding="utf-8")
    assert search_space.read_space(again) == space


@pytest.mark.parametrize("spec, message", [
    ({"train.lr": {"type": "uniform", "low": 1, "high": 2}}, "must be a mapping with `type` one of float, int"),
    ({"train.lr": {"type": "float", "low": 1e-2, "high": 1e-3}}, "needs numbers `low` < `high`"),
    ({"train.lr": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}, "a log scale needs `low` above 0"),
    ({"train.epochs": {"type": "int", "low": 1.5, "high": 4}}, "needs whole numbers"),
    ({"train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "step": 2}}, "unknown fields step"),
    ({"train.lr": {"type": "categorical", "choices": []}}, "needs a non-empty list `choices`"),
])
def test_a_bad_space_file_is_one_clear_error(tmp_path, spec, message):
    with pytest.raises(TextxferError, match=message):
        search_space.read_space(_space_file(tmp_path, spec))


@pytest.mark.parametrize("key, param, message", [
    ("train.lerning_rate", Param("float", 1e-5, 1e-3), "is not a recipe key"),
    ("data.max_length", Param("categorical", choices=(32, 64)), "cannot be tuned"),
    ("train.seed", Param("int", 1, 5), "cannot be tuned"),
    ("train.warmup_ratio", Param("float", 0.0, 1.5), "reaches 1.5, which the recipe .* refuses"),
])
def test_a_space_key_the_recipe_cannot_take_is_refused_before_any_trial(tmp_path, tiny_bert, key, param, message):
    path = tiny_recipe(tmp_path, tiny_bert)
    with pytest.raises(TextxferError, match=message):
        search_space.check_space({key: param}, str(path), [])


def test_suggested_values_become_overrides_the_recipe_reads_back_exactly(tmp_path, tiny_bert):
    import optuna

    space = {"train.lr": Param("float", 1e-5, 1e-3, log=True), "train.batch_size": Param("categorical", choices=(8, 16)),
             "model.lora.r": Param("categorical", choices=(4, 8)), "train.epochs": Param("int", 1, 3)}
    values = search_space.suggest(optuna.trial.FixedTrial(
        {"train.lr": 3.3333e-05, "train.batch_size": 16, "model.lora.r": 8, "train.epochs": 2}), space)
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert, "lora"), search_space.as_overrides(values))
    assert (recipe.train.lr, recipe.train.batch_size, recipe.model.lora.r, recipe.train.epochs) == (3.3333e-05, 16, 8, 2)


def test_a_trial_is_stopped_when_its_epoch_reports_say_prune(tmp_path):
    """A stand-in trial process that reports an epoch a second; pruning at the second stops it."""
    child = tmp_path / "child.py"
    child.write_text(
        "import json, os, time\n"
        f"path = os.environ[{trials.PROGRESS_ENV!r}]\n"
        "for epoch in range(1, 60):\n"
        "    with open(path, 'a') as fh:\n"
        "        fh.write(json.dumps({'epoch': epoch, 'step': 10 * epoch, 'validation/macro_f1': 0.1 * epoch}) + '\\n')\n"
        "    time.sleep(0.5)\n"
        "open(os.path.join(os.path.dirname(path), 'finished'), 'w').close()\n", encoding="utf-8")
    seen = []

    def on_epoch(scores):
        seen.append(scores["epoch"])
        return scores["epoch"] == 2

    outcome = trials.run_trial([sys.executable, str(child)], tmp_path / "progress.jsonl", tmp_path / "child.log",
                               on_epoch)
    assert outcome.pruned and outcome.returncode != 0
    assert seen[:2] == [1, 2] and outcome.epochs[1]["validation/macro_f1"] == pytest.approx(0.2)
    assert not (tmp_path / "finished").exists()  # stopped, not run to the end


def test_a_trial_that_fails_on_a_recipe_error_stops_the_search_with_its_message(tmp_path, tiny_bert):
    from textxfer.commands.tune import tune

    path = tiny_recipe(tmp_path, tiny_bert, data={"train": str(tmp_path / "missing.csv")})
    with pytest.raises(TextxferError, match=r"Trial 0 stopped on an error .*missing.csv does not exist"):
        tune(str(path), [], 2, space=str(_space_file(tmp_path)), output=str(tmp_path / "tune"))


def _wait_for(condition, seconds: float = 600):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError("timed out waiting")


def _states(root: Path) -> dict:
    """trial number -> state name, read from the study file (an empty dict before it exists)."""
    if not (root / "study.db").is_file():
        return {}
    try:
        return {t.number: t.state.name for t in _study(root).get_trials(deepcopy=False)}
    except Exception:  # noqa: BLE001 - the study is being created right now
        return {}


@pytest.mark.slow
def test_a_killed_study_resumes_from_its_sqlite_storage(tmp_path, tiny_bert):
    """Kill `textxfer tune` (and so its trial) while trial 1 trains; the same command finishes the study:
    trial 0 is kept, trial 1's values run again, and every file of the study is written."""
    from textxfer.commands.tune import tune

    recipe = tiny_recipe(tmp_path, tiny_bert, epochs=2, batch_size=16)
    space = _space_file(tmp_path)
    root = tmp_path / "tune"
    command = [sys.executable, "-m", "textxfer", "tune", str(recipe), "--trials", "3", "--space", str(space),
               "--output", str(root), "--keep", "all"]
    parent = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        _wait_for(lambda: _states(root).get(0) == "COMPLETE" and _states(root).get(1) == "RUNNING")
        _wait_for(lambda: (root / "trials" / "trial-0001.progress.jsonl").is_file())  # its process runs
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    killed = _study(root).trials[1]
    first = _study(root).trials[0]
    assert killed.state.name == "RUNNING"  # as a killed process leaves it

    summary = tune(str(recipe), [], 3, space=str(space), output=str(root), keep="all")

    study = _study(root)
    states = [t.state.name for t in study.trials]
    assert states[:2] == ["COMPLETE", "FAIL"] and states.count("COMPLETE") + states.count("PRUNED") == 3
    assert study.trials[0].value == first.value and study.trials[0].params == first.params  # kept as it was
    assert study.trials[2].params == killed.params  # the killed trial's values ran again, first
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 3
    best = study.best_trial
    assert summary["best"]["trial"] == best.number and summary["best"]["value"] == pytest.approx(best.value)

    rows = list(csv.DictReader((root / "trials.csv").open(encoding="utf-8")))
    assert [row["state"] for row in rows] == [s.lower() for s in states]
    assert all(row["train.lr"] for row in rows)
    for name in ("optimization_history.png", "param_importances.png", "space.yaml", "tune.json", "recipe.yaml"):
        assert (root / name).is_file(), name
    assert not (root / "trials" / "trial-0001").exists()  # the killed trial's folder is gone
    # the best recipe: the recipe with the best values, its test file back, ready for `textxfer train`
    best_recipe = load_recipe(root / "best_recipe.yaml")
    assert best_recipe.train.lr == pytest.approx(best.params["train.lr"])
    assert best_recipe.data.test and best_recipe.output_dir == f"{tmp_path / 'run'}-tuned"
    # trials never saw the test file
    for number in (0, 2):
        metrics = json.loads((root / "trials" / f"trial-{number:04d}" / "metrics.json").read_text())
        assert "test" not in metrics and metrics["validation"]["macro_f1"] == pytest.approx(study.trials[number].value)

    with pytest.raises(TextxferError, match="was started with another metric"):
        tune(str(recipe), [], 4, space=str(space), output=str(root), metric="accuracy")
