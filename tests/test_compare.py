"""`textxfer compare`: every (strategy, budget, seed) cell once, reports written, finished cells skipped."""
import json

import pytest

from conftest import SAMPLES, write_recipe
from textxfer.commands.compare import parse_budgets, parse_strategies, subsample
from textxfer.errors import TextxferError


def test_subsample_is_stratified_and_seeded():
    labels = [i % 3 for i in range(30)]
    rows = subsample(labels, 4, seed=1)
    assert sorted(labels[i] for i in rows) == [0] * 4 + [1] * 4 + [2] * 4
    assert rows == subsample(labels, 4, seed=1) and rows != subsample(labels, 4, seed=2)
    assert subsample(labels, None, 0) == list(range(30))
    assert parse_budgets("5, 10,all") == [5, 10, None]
    with pytest.raises(TextxferError, match="per-class"):
        parse_budgets("5,zero")
    with pytest.raises(TextxferError, match="Unknown strategy"):
        parse_strategies("full,magic")


def test_compare_runs_every_cell_and_skips_finished_ones(tmp_path, tiny_bert, cli):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"),
                                          "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                          model={"name": tiny_bert}, train={"batch_size": 8, "epochs": 3, "lr": 0.5},
                          output_dir=str(tmp_path / "cmp"))
    args = ["compare", recipe, "--strategies", "base,scratch,full", "--per-class", "2,all", "--seeds", "2"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "run 1/12" in out and "no time estimate yet" in out and "s left" in out  # measured costs once each strategy ran
    records = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert len(records) == 12
    assert set(records[0]) == {"strategy", "per_class", "seed", "n_train", "test_accuracy", "test_macro_f1", "wall_seconds"}
    assert {r["n_train"] for r in records if r["per_class"] == 2} == {20}  # 2 per class, 10 classes
    assert all(0 <= r["test_accuracy"] <= 1 for r in records)
    # each strategy ran at its own defaults, not at the recipe's lr of 0.5
    saved = (tmp_path / "cmp" / "runs" / "full-2-seed0" / "recipe.yaml").read_text()
    assert "lr: 0.0001" in saved and "min_steps: 250" in saved  # small data: more epochs than the default 5
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| 2 | 20 |" in table and "**" in table and "gain over scratch" in table
    assert (tmp_path / "cmp" / "learning_curve.png").is_file()

    code, out, _ = cli(*args)  # everything is done: nothing runs again
    assert code == 0 and "run 1/12" not in out
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text()) == records
    # a narrower invocation keeps the finished cells of the others in the report
    code, out, _ = cli("compare", recipe, "--strategies", "base", "--per-class", "2", "--seeds", "1")
    assert code == 0 and "run 1/1" not in out
    narrower = (tmp_path / "cmp" / "comparison.md").read_text()
    assert all(f"`{s}`" in narrower for s in ("base", "scratch", "full")) and "| all |" in narrower
    header = [line for line in table.splitlines() if line.startswith("| per class")]
    assert [line for line in narrower.splitlines() if line.startswith("| per class")] == header  # same columns, same order


def _texts(path):
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


def test_self_training_and_noisy_student_cells_pseudo_label_the_rows_they_leave_unlabeled(tmp_path, tiny_bert, cli):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"),
                                          "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                          model={"name": tiny_bert}, output_dir=str(tmp_path / "cmp"))
    code, out, err = cli("compare", recipe, "--strategies", "self_training,noisy_student", "--per-class", "2,all",
                         "--seeds", "1")
    assert code == 0, err
    assert "skipping self_training at per class all" in out  # every pool row is labeled there
    assert "skipping noisy_student at per class all" in out
    records = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert [(r["strategy"], r["per_class"], r["n_train"]) for r in records] == [("self_training", 2, 20),
                                                                                ("noisy_student", 2, 20)]
    import yaml

    cell = yaml.safe_load((tmp_path / "cmp" / "runs" / "self_training-2-seed0" / "recipe.yaml").read_text())
    assert cell["model"]["method"] == "feature_extraction" and cell["train"]["self_training_rounds"] == 3
    assert cell["train"]["student_epochs"] == 0
    student = yaml.safe_load((tmp_path / "cmp" / "runs" / "noisy_student-2-seed0" / "recipe.yaml").read_text())
    assert student["train"]["self_training_rounds"] == 3 and student["train"]["student_epochs"] == 1
    student_history = json.loads((tmp_path / "cmp" / "runs" / "noisy_student-2-seed0" / "metrics.json").read_text())["history"]
    assert [h["student_epoch"] for h in student_history if h.get("student_generation") == 1 and "student_epoch" in h] == [1]
    labeled = _texts(tmp_path / "cmp" / "data" / "train-2-seed0.csv")
    unlabeled = _texts(tmp_path / "cmp" / "data" / "unlabeled-2-seed0.csv")
    validation = _texts(tmp_path / "cmp" / "data" / "validation.csv")
    assert cell["data"]["unlabeled"].endswith("unlabeled-2-seed0.csv")
    assert len(labeled) + len(unlabeled) + len(validation) == 60  # every row of tickets_small, once
    assert not set(labeled) & set(unlabeled) and not set(validation) & set(unlabeled)
    metrics = json.loads((tmp_path / "cmp" / "runs" / "self_training-2-seed0" / "metrics.json").read_text())
    assert {h["self_training_round"] for h in metrics["history"]} == {0, 1, 2, 3}


def test_the_recipes_self_training_keys_set_up_the_self_training_cells_only(tmp_path, tiny_bert, cli):
    """A compare recipe for `full` and friends may carry the self-training settings of its
    `noisy_student` cells: they reach those cells and no others."""
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"),
                                          "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                          model={"name": tiny_bert, "method": "full"},
                          train={"self_training_rounds": 1, "student_epochs": 2, "student_generations": 1},
                          output_dir=str(tmp_path / "cmp"))
    code, out, err = cli("compare", recipe, "--strategies", "feature_extraction,noisy_student", "--per-class", "2",
                         "--seeds", "1")
    assert code == 0, err
    import yaml

    runs = tmp_path / "cmp" / "runs"
    plain = yaml.safe_load((runs / "feature_extraction-2-seed0" / "recipe.yaml").read_text())["train"]
    student = yaml.safe_load((runs / "noisy_student-2-seed0" / "recipe.yaml").read_text())["train"]
    assert plain["self_training_rounds"] == 0 and plain["student_epochs"] == 0
    assert student["self_training_rounds"] == 1 and student["student_epochs"] == 2
    history = json.loads((runs / "noisy_student-2-seed0" / "metrics.json").read_text())["history"]
    assert [h["student_epoch"] for h in history if "student_epoch" in h] == [1, 2]


def test_the_time_left_comes_from_each_strategys_measured_cost():
    from textxfer.commands.compare import time_left

    records = [{"strategy": "base", "per_class": 10, "wall_seconds": 15, "n_train": 770},
               {"strategy": "full", "per_class": 10, "wall_seconds": 180, "n_train": 770}]
    assert time_left(records, [("full", 10, 1), ("full", 10, 2)]) == "about 6 min left"
    assert time_left(records, [("full", 50, 0)]) == "about 15 min left", "another budget: scaled by its rows"
    mixed = time_left(records, [("full", 10, 1), ("scratch", 10, 0)])
    assert mixed.startswith("about 3 min left for the strategies measured so far") and "scratch (not run yet)" in mixed
    assert time_left([], [("lp_ft", 10, 0)]) == "no time estimate yet: lp_ft not run yet"


def test_command_line_epochs_and_lr_reach_every_cell_even_after_the_flags(tmp_path, tiny_bert, cli):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"),
                                          "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                          model={"name": tiny_bert}, train={"batch_size": 8, "epochs": 7, "lr": 0.5},
                          output_dir=str(tmp_path / "cmp"))
    code, out, err = cli("compare", recipe, "--strategies", "scratch", "--per-class", "2", "--seeds", "1",
                         "train.epochs=1", "train.lr=0.01")
    assert code == 0, err
    saved = (tmp_path / "cmp" / "runs" / "scratch-2-seed0" / "recipe.yaml").read_text()
    assert "epochs: 1\n" in saved and "lr: 0.01\n" in saved, "the command line's, not the recipe's 7 / 0.5"
    assert json.loads((tmp_path / "cmp" / "runs" / "scratch-2-seed0" / "metrics.json").read_text())["train"]["epochs_run"] == 1
