"""Recipes: every shipped recipe loads; overrides, unknown keys and bad values are handled clearly."""
from pathlib import Path

import pytest
import yaml

from textxfer.config import load_recipe, valid_keys
from textxfer.errors import TextxferError

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_says_how_to_run_it(path):
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# ") and "textxfer" in first_line and path.name in first_line
    recipe = load_recipe(path)
    fits_in_one_go = recipe.model.method == "feature_extraction" and recipe.train.head_solver == "lbfgs"
    assert recipe.data.train and (fits_in_one_go or (recipe.train.epochs >= 1 and recipe.train.lr > 0))


def test_recipe_list_is_not_empty():
    assert any(p.name == "tickets_minilm.yaml" for p in RECIPES)


def test_overrides_are_typed_and_nested(tmp_path):
    recipe = load_recipe(None, ["data.train=a.csv", "train.lr=3e-5", "train.epochs=2",
                                "data.text_column=[subject,body]", "train.early_stopping_patience=2",
                                "output_dir=runs/x"])
    assert recipe.train.lr == 3e-5 and recipe.train.epochs == 2
    assert recipe.data.text_column == ["subject", "body"]
    assert recipe.train.early_stopping_patience == 2 and recipe.output_dir == "runs/x"


def test_method_defaults_fill_only_what_is_unset():
    full = load_recipe(None, ["data.train=a.csv"]).train
    assert (full.epochs, full.lr, full.min_steps) == (5, 1e-4, 250)
    sgd = load_recipe(None, ["data.train=a.csv", "model.method=feature_extraction", "train.head_solver=sgd"]).train
    assert (sgd.epochs, sgd.lr, sgd.min_steps) == (40, 3e-3, 5000)
    set_by_user = load_recipe(None, ["data.train=a.csv", "model.method=feature_extraction", "train.head_solver=sgd",
                                     "train.lr=0.1", "train.epochs=3"]).train
    assert (set_by_user.lr, set_by_user.epochs, set_by_user.min_steps) == (0.1, 3, 0), "epochs set: no minimum steps"


def test_a_resolved_recipe_records_what_runs_and_is_never_changed():
    from dataclasses import FrozenInstanceError

    from textxfer.config import resolve

    lbfgs = load_recipe(None, ["data.train=a.csv", "model.method=feature_extraction"])
    assert lbfgs.train.head_solver == "lbfgs", "auto is resolved"
    assert (lbfgs.train.epochs, lbfgs.train.lr, lbfgs.train.min_steps) == (None, None, None), "an L-BFGS head has none"
    balanced = load_recipe(None, ["data.train=a.csv", "model.method=feature_extraction", "train.sampler=balanced"])
    assert balanced.train.head_solver == "sgd" and balanced.train.epochs == 40
    assert resolve(lbfgs) == lbfgs and resolve(balanced) == balanced, "resolving twice changes nothing"
    with pytest.raises(FrozenInstanceError):
        lbfgs.train.epochs = 3
    with pytest.raises(FrozenInstanceError):
        lbfgs.output_dir = "elsewhere"


@pytest.mark.parametrize("key,suggestion", [("train.lrr", "train.lr"), ("data.text_col", "data.text_column"),
                                            ("lr", "train.lr"), ("model.methd", "model.method")])
def test_unknown_key_suggests_the_closest(key, suggestion):
    with pytest.raises(TextxferError, match=f"Did you mean `{suggestion}`"):
        load_recipe(None, ["data.train=a.csv", f"{key}=1"])


def test_unknown_key_in_yaml_is_rejected_with_file_name(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "a.csv"}, "train": {"epoch": 3}}))
    with pytest.raises(TextxferError) as err:
        load_recipe(path)
    assert str(path) in str(err.value) and "train.epochs" in str(err.value)


@pytest.mark.parametrize("override,fragment", [
    ("train.epochs=abc", "must be an integer"),
    ("model.method=magic", "not one of"),
    ("train.mixed_precision=fp8", "not one of"),
    ("train.epochs=0", "at least 1"),
    ("data.validation_split=1.5", "between 0 and 1"),
    ("train.lr", "key=value"),
    # every float setting must be finite and in its range (inf trained to chance, nan crashed)
    ("train.lr=inf", "train.lr.*finite number"),
    ("train.lr=nan", "train.lr.*finite number"),
    ("train.lr=.inf", "train.lr.*finite number"),
    ("train.lr=-inf", "train.lr.*finite number"),
    ("train.weight_decay=nan", "train.weight_decay.*finite number"),
    ("train.warmup_ratio=-.inf", "train.warmup_ratio.*finite number"),
    ("model.lora.alpha=inf", "model.lora.alpha.*finite number"),
    ("train.weight_decay=-0.1", "train.weight_decay.*0 or more"),
    ("train.max_grad_norm=0", "train.max_grad_norm.*positive"),
    ("train.min_steps=-5", "train.min_steps.*0 or more"),
    ("train.early_stopping_patience=0", "early_stopping_patience.*at least 1"),
    ("train.seed=-1", "train.seed.*between 0 and"),
    ("overwrite=maybe", "overwrite.*true or false"),
])
def test_bad_values_are_explained(override, fragment):
    with pytest.raises(TextxferError, match=fragment):
        load_recipe(None, ["data.train=a.csv", override])


def test_lbfgs_head_with_the_balanced_sampler_is_refused():
    with pytest.raises(TextxferError, match="no batches to rebalance"):
        load_recipe(None, ["data.train=a.csv", "model.method=feature_extraction", "train.head_solver=lbfgs",
                           "train.sampler=balanced"])


def test_missing_train_file_key_is_explained():
    with pytest.raises(TextxferError, match="data.train"):
        load_recipe(None, [])


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train: [unclosed\n")
    with pytest.raises(TextxferError, match="line"):
        load_recipe(path)


def test_every_valid_key_can_be_overridden():
    assert "train.class_weights" in valid_keys() and "output_dir" in valid_keys()


def test_a_typo_gets_the_suggestion_and_the_key_table_not_every_key():
    with pytest.raises(TextxferError) as err:
        load_recipe(None, ["data.train=a.csv", "train.lerning_rate=3"])
    message = str(err.value)
    assert "Did you mean" in message and "README.md" in message
    assert "train.student_noise" not in message and len(message) < 400


def test_compare_help_lists_every_strategy(capsys):
    from textxfer.commands.cli import main
    from textxfer.commands.compare import STRATEGIES

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert all(strategy in shown for strategy in STRATEGIES)
