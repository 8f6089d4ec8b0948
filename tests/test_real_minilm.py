"""The real embedded MiniLM-L6 on real support tickets (10 Banking77 intents; chance is 10%)."""
import pytest

from conftest import SAMPLES, write_recipe
from textxfer import load_classifier, load_recipe, train

pytestmark = pytest.mark.slow
DATA = {"train": str(SAMPLES / "tickets_train.csv"), "test": str(SAMPLES / "tickets_test.csv"), "max_length": 48}


def test_feature_extraction_is_far_above_chance(tmp_path):
    path = write_recipe(tmp_path, data=DATA, model={"name": "minilm-l6", "method": "feature_extraction"},
                        output_dir=str(tmp_path / "fe"))
    metrics = train(load_recipe(path))
    assert metrics["test"]["accuracy"] >= 0.85, metrics["test"]["accuracy"]
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]


def test_full_fine_tuning_learns_and_reloads_identically(tmp_path, cli):
    path = write_recipe(tmp_path, data=DATA, model={"name": "minilm-l6", "method": "full"},
                        train={"epochs": 2, "lr": 2e-4, "seed": 0}, output_dir=str(tmp_path / "full"))
    metrics = train(load_recipe(path))
    assert metrics["test"]["accuracy"] >= 0.85, metrics["test"]["accuracy"]
    assert metrics["history"][1]["train_loss"] < metrics["history"][0]["train_loss"]
    code, _, err = cli("predict", tmp_path / "full", DATA["test"], "-o", tmp_path / "p.csv")
    assert code == 0, err
    assert (tmp_path / "p.csv").read_bytes() == (tmp_path / "full" / "predictions_test.csv").read_bytes()
    clf = load_classifier(tmp_path / "full")
    assert clf.predict(["I still have not received my new card", "what is the exchange rate for euros?"]) == \
        ["card_arrival", "exchange_rate"]
