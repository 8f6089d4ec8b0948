"""Results by group (`data.group_column`): metrics per group in metrics.json, groups.png, the predictions and
the model card; a clear error for a file without the column; `group_metrics` checked against scikit-learn."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from conftest import SAMPLES, write_recipe

CHANNELS = ("email", "chat", "phone")


def _with_channel(source: Path, target: Path, small: int = 0, missing_every: int = 0, column: str = "channel") -> Path:
    """`source` (text,label) with a synthetic group column: email/chat/phone in turn, the first `small` rows
    `fax` (a small group), and every `missing_every`-th row an empty cell (the group `(missing)`)."""
    with source.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows):
        row[column] = ("fax" if i < small else "" if missing_every and i % missing_every == missing_every - 1
                       else CHANNELS[i % 3])
    with target.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label", column])
        writer.writeheader()
        writer.writerows(rows)
    return target


def _group_of(cell: str) -> str:
    return cell.strip() or "(missing)"


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory, tiny_bert) -> Path:
    """A tiny `full` run on the small tickets with a `channel` column (test: 400 rows, 3 `fax`, 8 missing)."""
    from textxfer import load_recipe, train

    folder = tmp_path_factory.mktemp("grouped-run")
    train_file = _with_channel(SAMPLES / "tickets_small.csv", folder / "train.csv")
    test_file = _with_channel(SAMPLES / "tickets_test.csv", folder / "test.csv", small=3, missing_every=50)
    recipe = write_recipe(folder, data={"train": str(train_file), "test": str(test_file), "max_length": 32,
                                        "group_column": "channel"},
                          model={"name": tiny_bert, "method": "full"},
                          train={"epochs": 2, "lr": 5e-3, "batch_size": 16, "seed": 1}, output_dir=str(folder / "run"))
    train(load_recipe(recipe))
    return folder / "run"


def test_test_metrics_per_group_match_the_predictions_file(grouped_run):
    metrics = json.loads((grouped_run / "metrics.json").read_text(encoding="utf-8"))
    view = metrics["test"]["groups"]
    assert view["column"] == "channel" and view["small_below"] == 5
    by_group = view["by_group"]
    assert list(by_group) == ["chat", "email", "fax", "phone", "(missing)"]  # name order, (missing) last
    assert sum(g["count"] for g in by_group.values()) == metrics["test"]["n"] == 400
    assert by_group["fax"]["count"] == 3 and by_group["fax"]["small"] and by_group["(missing)"]["count"] == 8

    with (grouped_run / "predictions_test.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "channel" in rows[0] and len(rows) == 400  # the predictions keep the group column
    for name, figures in by_group.items():
        mine = [r for r in rows if _group_of(r["channel"]) == name]
        assert len(mine) == figures["count"]
        truth, predicted = [r["label"] for r in mine], [r["predicted_label"] for r in mine]
        assert figures["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
        assert figures["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))
        assert 0.0 <= figures["ece"] <= 1.0

    large = {g: f for g, f in by_group.items() if not f["small"]}
    assert view["worst_group"] == min(large, key=lambda g: (large[g]["accuracy"], large[g]["macro_f1"], g))
    validation = metrics["validation"]["groups"]  # validation, held out from train, keeps its rows' groups
    assert sum(g["count"] for g in validation["by_group"].values()) == metrics["validation"]["n"]
    assert set(validation["by_group"]) <= set(CHANNELS)


def test_the_run_draws_groups_png_and_the_card_names_the_worst_group(grouped_run, tmp_path, cli):
    assert (grouped_run / "groups.png").stat().st_size > 1000
    metrics = json.loads((grouped_run / "metrics.json").read_text(encoding="utf-8"))
    view = metrics["test"]["groups"]
    out = tmp_path / "out"
    code, _, err = cli("push", grouped_run, "--repo-id", "acme/ticket-router", "--dry-run", out,
                       "--base-model", "textxfer-tests/tiny-bert")
    assert code == 0, err
    assert (out / "groups.png").read_bytes() == (grouped_run / "groups.png").read_bytes()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Results by group" in card and "![Accuracy by group on the test set](groups.png)" in card
    worst = view["by_group"][view["worst_group"]]
    assert (f"| `{view['worst_group']}` (worst) | {worst['count']:,} | {worst['accuracy']:.4f} | "
            f"{worst['macro_f1']:.4f} | {worst['ece']:.4f} |") in card
    assert f"Worst group: `{view['worst_group']}`" in card and "| `fax` (small) | 3 |" in card


def test_predict_keeps_the_group_column(grouped_run, tmp_path, cli):
    source = _with_channel(SAMPLES / "tickets_small.csv", tmp_path / "input.csv")
    code, _, err = cli("predict", grouped_run, source, "-o", tmp_path / "predicted.csv")
    assert code == 0, err
    with (tmp_path / "predicted.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["channel"] for r in rows[:3]] == ["email", "chat", "phone"] and "predicted_label" in rows[0]


@pytest.mark.parametrize("where", ["train", "test"])
def test_a_file_without_the_group_column_is_refused_with_the_file_and_column(where, tmp_path, tiny_bert, cli):
    train_file = _with_channel(SAMPLES / "tickets_small.csv", tmp_path / "train.csv",
                               column="channel" if where == "test" else "chanel")
    test_file = SAMPLES / "tickets_test.csv"  # text,label only
    recipe = write_recipe(tmp_path, data={"train": str(train_file), "test": str(test_file), "group_column": "channel"},
                          model={"name": tiny_bert, "method": "full"}, train={"epochs": 1},
                          output_dir=str(tmp_path / "run"))
    code, _, err = cli("train", recipe)
    assert code == 2
    message = " ".join(err.split())
    bad = train_file if where == "train" else test_file
    assert f"The {where} file {bad} has no column `channel`" in message and "`data.group_column`" in message
    assert "Its columns are: text, label" in message and "Traceback" not in err
    if where == "train":
        assert "Did you mean `chanel`? Pass `data.group_column=chanel`" in message
    assert not (tmp_path / "run").exists()


def test_load_splits_keeps_each_rows_group_and_names_empty_cells_missing(tmp_path):
    from textxfer.config import DataConfig
    from textxfer.data.splits import load_splits

    rows = "text,label,tier\n" + "".join(f"text number {i},{'ab'[i % 2]},{['gold', '', 'free'][i % 3]}\n"
                                         for i in range(30))
    (tmp_path / "train.csv").write_text(rows, encoding="utf-8")
    (tmp_path / "test.csv").write_text(rows, encoding="utf-8")
    splits = load_splits(DataConfig(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"),
                                    group_column="tier", validation_split=0.3), seed=0)
    tiers = ["gold", "(missing)", "free"]
    assert splits.groups["test"] == [tiers[i % 3] for i in range(30)]
    kept = splits.origins["validation"].rows  # validation rows drawn from train keep their own groups
    assert splits.groups["validation"] == [tiers[i % 3] for i in kept] and len(kept) == len(splits.validation)
    assert load_splits(DataConfig(train=str(tmp_path / "train.csv")), seed=0).groups is None


def test_group_metrics_against_scikit_learn_by_hand():
    from textxfer.evaluation.slices import group_metrics

    groups = ["b", "a", "a", "b", "b", "a", "b", "b", "b", "c"]
    y_true = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 1])
    y_pred = np.array([0, 1, 1, 1, 1, 2, 2, 1, 0, 0])
    confidence = np.array([0.9, 0.7, 0.6, 0.8, 0.55, 0.95, 0.9, 0.65, 0.85, 0.5])
    probs = np.full((10, 3), 0.0)
    probs[np.arange(10), y_pred] = confidence
    probs[np.arange(10), (y_pred + 1) % 3] = 1 - confidence
    view = group_metrics(groups, y_true, y_pred, probs, multi_label=False)
    assert list(view["by_group"]) == ["a", "b", "c"]
    a, b = view["by_group"]["a"], view["by_group"]["b"]
    assert a["count"] == 3 and b["count"] == 6 and view["by_group"]["c"]["count"] == 1
    assert a["accuracy"] == pytest.approx(2 / 3) and b["accuracy"] == pytest.approx(5 / 6)
    # a: truth [1, 2, 2], predicted [1, 1, 2]: F1 of class 1 = 2/3, of class 2 = 2/3
    assert a["macro_f1"] == pytest.approx(f1_score([1, 2, 2], [1, 1, 2], average="macro")) == pytest.approx(2 / 3)
    assert b["macro_f1"] == pytest.approx(f1_score([0, 1, 0, 2, 1, 0], [0, 1, 1, 2, 1, 0], average="macro"))
    # ECE, 15 bins: a's confidences 0.7 (right), 0.6 (wrong), 0.95 (right) each alone in a bin
    assert a["ece"] == pytest.approx((abs(1 - 0.7) + abs(0 - 0.6) + abs(1 - 0.95)) / 3)
    # a (3 rows) and c (1 row) are small (< 5 rows): b is the only candidate for the worst group
    assert a["small"] and not b["small"] and view["worst_group"] == "b"
    tied = group_metrics(["x"] * 5 + ["y"] * 5, [0, 1, 0, 1, 0] * 2, [0, 1, 0, 1, 1] + [0, 0, 0, 1, 0],
                         np.eye(2)[[0, 1, 0, 1, 1] + [0, 0, 0, 1, 0]], multi_label=False)
    assert tied["by_group"]["x"]["accuracy"] == tied["by_group"]["y"]["accuracy"] == 0.8
    # tie on accuracy: the lower macro-F1 is worse
    worse = min(("x", "y"), key=lambda g: tied["by_group"][g]["macro_f1"])
    assert tied["by_group"]["x"]["macro_f1"] != tied["by_group"]["y"]["macro_f1"] and tied["worst_group"] == worse


def test_group_metrics_multi_label_uses_subset_accuracy():
    from textxfer.evaluation.slices import group_metrics

    y_true = np.array([[1, 0], [1, 1], [0, 1], [1, 0]])
    y_pred = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probs = np.where(y_pred == 1, 0.8, 0.3)
    view = group_metrics(["p", "p", "q", "q"], y_true, y_pred, probs, multi_label=True)
    p = view["by_group"]["p"]
    assert p["accuracy"] == 0.5 and p["macro_f1"] == pytest.approx(f1_score(y_true[:2], y_pred[:2], average="macro",
                                                                            zero_division=0))
    assert "micro_f1" in p and view["by_group"]["q"]["accuracy"] == 0.5
    flat_p, flat_y = probs[:2].ravel(), y_true[:2].ravel()  # every (text, label) forecast: 0.8 x2 and 0.3 x2
    assert p["ece"] == pytest.approx((2 * abs(flat_y[flat_p == 0.8].mean() - 0.8)
                                      + 2 * abs(flat_y[flat_p == 0.3].mean() - 0.3)) / 4)


def test_the_bar_plot_draws_many_and_odd_group_names(tmp_path):
    from textxfer.evaluation.report import plot_group_accuracy

    by_group = {f"$tier_{i}$ | x": {"count": i + 1, "accuracy": i / 40, "macro_f1": i / 40, "ece": 0.1,
                                    "small": i < 4} for i in range(40)}
    plot_group_accuracy({"by_group": by_group, "worst_group": "$tier_4$ | x"}, tmp_path / "g.png", "title", 0.5)
    assert (tmp_path / "g.png").stat().st_size > 1000
