"""Experiment tracking (`train.report_to`): what tensorboard and mlflow hold after a run, read back with
their own readers (tensorboard's EventAccumulator, mlflow's client); offline defaults; clear errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import TICKETS, tiny_recipe, write_recipe

from textxfer import load_recipe, train
from textxfer.errors import TextxferError
from textxfer.outputs import manifest
from textxfer.training import tracking

RUN = {"epochs": 2, "lr": 5e-3, "batch_size": 16, "seed": 1}
TRAIN_ROWS = 54  # tickets_small.csv: 60 rows, 10% held out for validation


def _scalars(folder: Path) -> dict:
    """tag -> [(step, value)] of every scalar in the tensorboard event files of `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}, events


def _mlflow(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder of its own (mlflow's local store goes there) and no tracking settings from outside."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TAGS", tracking.PROGRESS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_recipe_names_exactly_the_trackers_accelerate_knows():
    from accelerate.utils import LoggerType

    from textxfer.config.schema import TRACKERS

    assert sorted(TRACKERS) == sorted(name for name in LoggerType.list() if name != "all")
    assert sorted(tracking._PACKAGES) == sorted(TRACKERS)


def test_report_to_takes_a_name_or_a_list_and_refuses_unknown_trackers(tmp_path, tiny_bert):
    path = tiny_recipe(tmp_path, tiny_bert)
    assert load_recipe(path).train.report_to == []
    assert load_recipe(path, ["train.report_to=tensorboard"]).train.report_to == ["tensorboard"]
    assert load_recipe(path, ["train.report_to=[tensorboard,mlflow]"]).train.report_to == ["tensorboard", "mlflow"]
    with pytest.raises(TextxferError, match=r"names 'tensorbord', which is not one of: tensorboard, mlflow"):
        load_recipe(path, ["train.report_to=[tensorbord]"])


def test_a_tracker_whose_package_is_missing_is_refused_before_any_work(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.setitem(tracking._PACKAGES, "wandb", (lambda: False, "wandb"))
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert), ["train.report_to=[tensorboard,wandb]"])
    with pytest.raises(TextxferError) as error:
        train(recipe)
    message = str(error.value)
    assert "`train.report_to` names wandb" in message and "pip install wandb" in message
    assert "remove wandb from `train.report_to`" in message
    assert not Path(recipe.output_dir).exists() and not tracking.tracking_root(recipe.output_dir).exists()


def test_wandb_is_offline_unless_the_environment_configures_it(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracking._configure_environment(["wandb"])
    assert tracking.os.environ["WANDB_MODE"] == "offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    tracking._configure_environment(["wandb"])
    assert "WANDB_MODE" not in tracking.os.environ
    monkeypatch.setenv("WANDB_MODE", "online")
    tracking._configure_environment(["wandb"])
    assert tracking.os.environ["WANDB_MODE"] == "online"


def test_tensorboard_and_mlflow_hold_the_runs_metrics_at_their_steps(workdir, tiny_bert):
    recipe = load_recipe(tiny_recipe(workdir, tiny_bert, **RUN, report_to=["tensorboard", "mlflow"]))
    metrics = train(recipe)
    run = Path(recipe.output_dir)
    steps_per_epoch = math.ceil(TRAIN_ROWS / RUN["batch_size"])
    total = steps_per_epoch * RUN["epochs"]
    history = metrics["history"]

    # tensorboard: inside the finished run folder, sealed in its manifest; the side folder is gone
    assert (run / "tensorboard").is_dir() and not tracking.tracking_root(run).exists()
    listed = manifest(run)["files"]
    assert any(name.startswith("tensorboard/") and "tfevents" in name for name in listed)
    scalars, events = _scalars(run / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, total + 1))
    assert all(math.isfinite(v) and v > 0 for _, v in scalars["train/loss"])
    lrs = [v for _, v in scalars["train/lr"]]
    assert [step for step, _ in scalars["train/lr"]] == list(range(1, total + 1))
    assert max(lrs) <= RUN["lr"] * (1 + 1e-6) and lrs[-1] < max(lrs)  # warmup then decay
    epoch_steps = [steps_per_epoch * (k + 1) for k in range(RUN["epochs"])]
    assert [step for step, _ in scalars["validation/accuracy"]] == epoch_steps
    assert [v for _, v in scalars["validation/accuracy"]] == pytest.approx([e["validation_accuracy"] for e in history])
    assert [v for _, v in scalars["validation/macro_f1"]] == pytest.approx([e["validation_macro_f1"] for e in history])
    assert [v for _, v in scalars["epoch"]] == [1.0, 2.0]
    assert scalars["test/accuracy"] == [(total, pytest.approx(metrics["test"]["accuracy"]))]
    assert scalars["best/validation_accuracy"][0][1] == pytest.approx(metrics["validation"]["accuracy"])
    assert {"plots/confusion_matrix", "plots/learning_curves"} <= set(events.Tags()["images"])

    # mlflow: the local store in the working folder, read with mlflow's own client
    client = _mlflow(workdir)
    experiment = client.get_experiment_by_name("textxfer")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.params["train.lr"] == str(RUN["lr"]) and found.data.params["model.method"] == "full"
    assert found.data.tags["textxfer.output_dir"] == str(run.resolve())
    loss = client.get_metric_history(found.info.run_id, "train/loss")
    assert sorted(m.step for m in loss) == list(range(1, total + 1))
    accuracy = sorted(client.get_metric_history(found.info.run_id, "validation/accuracy"), key=lambda m: m.step)
    assert [m.step for m in accuracy] == epoch_steps
    assert [m.value for m in accuracy] == pytest.approx([e["validation_accuracy"] for e in history])
    assert found.data.metrics["test/accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/learning_curves.png"} <= artifacts
    assert {a.path for a in client.list_artifacts(found.info.run_id)} >= {"metrics.json", "recipe.yaml"}


def test_a_head_fit_without_epochs_logs_its_history_at_the_end(workdir, tiny_bert):
    recipe = load_recipe(tiny_recipe(workdir, tiny_bert, "feature_extraction", report_to="tensorboard", seed=1))
    metrics = train(recipe)
    scalars, _ = _scalars(Path(recipe.output_dir) / "tensorboard")
    grid = len(metrics["history"])  # one entry per L2 strength of the L-BFGS head
    assert [step for step, _ in scalars["validation/accuracy"]] == list(range(1, grid + 1))
    assert "train/loss" not in scalars  # no optimizer steps
    assert scalars["test/accuracy"][0][1] == pytest.approx(metrics["test"]["accuracy"])


def test_a_failed_run_is_marked_failed_and_keeps_its_logs_until_a_fresh_run(workdir, tiny_bert, monkeypatch):
    from textxfer.training import trainer

    recipe = load_recipe(tiny_recipe(workdir, tiny_bert, **RUN, report_to=["tensorboard", "mlflow"]))

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "write_run", broken_write)
        with pytest.raises(RuntimeError, match="disk on fire"):
            train(recipe)
    root = tracking.tracking_root(recipe.output_dir)
    assert any(root.rglob("*tfevents*")) and not Path(recipe.output_dir).exists()
    client = _mlflow(workdir)
    (failed,) = client.search_runs([client.get_experiment_by_name("textxfer").experiment_id])
    assert failed.info.status == "FAILED"
    assert client.get_metric_history(failed.info.run_id, "validation/accuracy")  # what it logged is kept

    train(recipe)  # a fresh run of the same output_dir: its own logs only
    scalars, _ = _scalars(Path(recipe.output_dir) / "tensorboard")
    assert len(scalars["validation/accuracy"]) == RUN["epochs"] and not root.exists()


def test_a_folder_in_the_tracking_place_that_textxfer_did_not_make_is_refused(workdir, tiny_bert):
    recipe = load_recipe(tiny_recipe(workdir, tiny_bert, **RUN, report_to="tensorboard"))
    root = tracking.tracking_root(recipe.output_dir)
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(TextxferError, match="holds files textxfer did not write"):
        train(recipe)
    assert (root / "notes.txt").read_text() == "mine"


def test_compare_logs_one_run_per_cell_in_one_experiment(workdir, tiny_bert):
    from textxfer.commands.compare import compare

    path = write_recipe(workdir, data=TICKETS, model={"name": tiny_bert, "method": "full"},
                        train={**RUN, "report_to": ["mlflow"]}, output_dir=str(workdir / "cmp"))
    compare(str(path), [], ["feature_extraction", "full"], [3], 1)
    client = _mlflow(workdir)
    experiment = client.get_experiment_by_name("textxfer-compare-cmp")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["feature_extraction-3-seed0", "full-3-seed0"]
    records = {r["strategy"]: r for r in json.loads((workdir / "cmp" / "comparison.json").read_text())}
    for found in runs:
        strategy = found.info.run_name.split("-")[0]
        assert found.data.metrics["test/accuracy"] == pytest.approx(records[strategy]["test_accuracy"])
