"""Real multi-process training: two CPU processes under `accelerate launch` (gloo data parallelism)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SAMPLES, write_recipe
from textxfer.config import DataConfig
from textxfer.data import load_splits


def test_two_processes_train_and_evaluate_every_row_once(tmp_path, tiny_bert):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"),
                                          "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                          model={"name": tiny_bert}, train={"epochs": 2, "lr": 1e-3, "batch_size": 8},
                          output_dir=str(tmp_path / "run"))
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "textxfer.train", str(recipe)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["num_processes"] == 2
    expected = load_splits(DataConfig(train=str(SAMPLES / "tickets_small.csv")), seed=42)
    assert metrics["validation"]["n"] == len(expected.validation)  # exactly, not padded by the second process
    assert metrics["test"]["n"] == 400
    assert proc.stdout.count("textxfer: test accuracy") == 1  # only the main process reports
