"""Checkpoints: written atomically, and a killed or stopped run resumes to exactly the same result."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SAMPLES, write_recipe
from textxfer import load_recipe, train
from textxfer.training.resume import STATE_FILE, checkpoint_root, complete_checkpoints
from textxfer.errors import TextxferError

DATA = {"train": str(SAMPLES / "tickets_train.csv"), "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32}


def recipe_file(tmp_path, model, name, **train_cfg):
    settings = {"epochs": 2, "lr": 1e-3, "batch_size": 16, "seed": 5, "save_every": 10, **train_cfg}
    return write_recipe(tmp_path / name, data=DATA, model={"name": model}, train=settings,
                        output_dir=str(tmp_path / name / "run"))


def start_and_stop_after_first_checkpoint(recipe, sig) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "textxfer.train", str(recipe)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = checkpoint_root(load_recipe(recipe).output_dir)
    deadline = time.time() + 300
    while not complete_checkpoints(root):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=300)
    return proc


def comparable(metrics):
    return {"history": metrics["history"], "test": {k: metrics["test"][k] for k in ("accuracy", "macro_f1", "n")},
            "best_epoch": metrics["train"]["best_epoch"], "validation": metrics["validation"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("ckpt")
    recipe = recipe_file(tmp, tiny_bert, "straight")
    metrics = train(load_recipe(recipe))
    assert not checkpoint_root(tmp / "straight" / "run").exists(), "a finished run removes its checkpoints"
    return comparable(metrics)


def test_sigkill_then_resume_gives_the_same_result(tmp_path, tiny_bert, uninterrupted):
    recipe = recipe_file(tmp_path, tiny_bert, "killed")
    proc = start_and_stop_after_first_checkpoint(recipe, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    run_dir = tmp_path / "killed" / "run"
    assert not (run_dir / "metrics.json").exists()
    found = complete_checkpoints(checkpoint_root(run_dir))
    assert found and all((p / STATE_FILE).is_file() for p in found)
    resumed = train(load_recipe(recipe, ["train.resume=auto"]))
    assert comparable(resumed) == uninterrupted
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"] == uninterrupted["test"]["accuracy"]


def test_sigterm_saves_says_how_to_resume_and_exits_non_zero(tmp_path, tiny_bert, uninterrupted):
    recipe = recipe_file(tmp_path, tiny_bert, "stopped")
    proc = start_and_stop_after_first_checkpoint(recipe, signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM" in err and "train.resume=auto" in err and "Traceback" not in err
    assert not (tmp_path / "stopped" / "run").exists()
    resumed = train(load_recipe(recipe, ["train.resume=auto"]))
    assert comparable(resumed) == uninterrupted


def test_incomplete_checkpoints_are_ignored_and_bad_resume_paths_are_clear(tmp_path, tiny_bert):
    root = checkpoint_root(tmp_path / "run")
    (root / ".tmp-step-40").mkdir(parents=True)
    (root / "step-30").mkdir()  # renamed but without its state file: not complete
    (root / "step-20").mkdir()
    (root / "step-20" / STATE_FILE).write_text("{}")
    assert complete_checkpoints(root) == [root / "step-20"]
    recipe = recipe_file(tmp_path, tiny_bert, "bad", resume=str(tmp_path / "nowhere"))
    with pytest.raises(TextxferError, match="not a complete textxfer checkpoint"):
        train(load_recipe(recipe))


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_resume_auto_without_checkpoints_starts_fresh(tmp_path, tiny_bert, capsys):
    recipe = recipe_file(tmp_path, tiny_bert, "fresh", epochs=1, resume="auto")
    metrics = train(load_recipe(recipe))
    assert metrics["train"]["epochs_run"] == 1
    assert "no checkpoint" in capsys.readouterr().out
