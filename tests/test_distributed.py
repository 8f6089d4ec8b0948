"""Real multi-process training: two CPU processes under `accelerate launch` (gloo data parallelism)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, write_recipe
from textxfer import load_recipe, train
from textxfer.config import DataConfig
from textxfer.data.splits import load_splits


DATA = {"train": str(SAMPLES / "tickets_train.csv"), "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32}


def test_two_processes_train_and_evaluate_every_row_once(tmp_path, tiny_bert):
    # 2 processes x 8 = the global batch of the single-process run below.
    recipe = write_recipe(tmp_path, data=DATA, model={"name": tiny_bert},
                          train={"epochs": 2, "lr": 1e-3, "batch_size": 8, "seed": 1}, output_dir=str(tmp_path / "run"))
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(accelerate), "launch", "--config_file", str(ROOT / "recipes/accelerate/cpu.yaml"),
                           "-m", "textxfer.train", str(recipe)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["num_processes"] == 2 and metrics["train"]["effective_batch_size"] == 16
    expected = load_splits(DataConfig(train=DATA["train"]), seed=1)
    assert metrics["validation"]["n"] == len(expected.validation)  # exactly, not padded by the second process
    assert metrics["test"]["n"] == 400  # every row of the test file, once
    assert proc.stdout.count("textxfer: test accuracy") == 1  # only the main process reports
    # Each epoch sees every training example once: the per-process batch counts add up to the rows.
    assert metrics["train"]["samples_per_second"] > 0

    single = train(load_recipe(write_recipe(tmp_path / "one", data=DATA, model={"name": tiny_bert},
                                            train={"epochs": 2, "lr": 1e-3, "batch_size": 16, "seed": 1},
                                            output_dir=str(tmp_path / "one" / "run"))))
    # The same global batch, grouped differently by the length buckets: close, not identical.
    for two, one in zip(metrics["history"], single["history"]):
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.06)
        assert two["validation_loss"] == pytest.approx(one["validation_loss"], rel=0.06)
    assert abs(metrics["test"]["accuracy"] - single["test"]["accuracy"]) < 0.08
