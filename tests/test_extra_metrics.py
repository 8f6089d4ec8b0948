"""`train.extra_metrics`: Hugging Face `evaluate` metrics from a local metric module written here, computed
on validation and test predictions, in metrics.json and the model card; a metric that cannot be had is an
error before training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import tiny_recipe

from textxfer import load_recipe, train
from textxfer.errors import TextxferError
from textxfer.evaluation import extra_metrics

RUN = {"epochs": 2, "lr": 5e-3, "batch_size": 16, "seed": 1}

HIT_RATE = '''
import datasets
import evaluate


class HitRate(evaluate.Metric):
    """The share of predictions equal to their reference, and the misses (a stand-in for any metric)."""

    def _info(self):
        return evaluate.MetricInfo(description="hit rate", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("int64"),
                                                               "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, weight=1.0):
        BODY
        hits = sum(int(p == r) for p, r in zip(predictions, references))
        return {"hit_rate": weight * hits / len(references), "misses": len(references) - hits}
'''


def _metric(folder: Path, name: str = "hit_rate", body: str = "pass") -> Path:
    """A local `evaluate` metric module: `folder/name/name.py`."""
    path = folder / name
    path.mkdir(parents=True)
    (path / f"{name}.py").write_text(HIT_RATE.replace("BODY", body), encoding="utf-8")
    return path


def test_a_local_metric_is_computed_on_validation_and_test_and_reaches_the_card(tmp_path, tiny_bert):
    metric = _metric(tmp_path)
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert, **RUN, extra_metrics=[str(metric)]))
    metrics = train(recipe)
    saved = json.loads((Path(recipe.output_dir) / "metrics.json").read_text())
    for split in ("validation", "test"):
        result = saved[split]["extra_metrics"]["hit_rate"]
        assert result["hit_rate"] == pytest.approx(saved[split]["accuracy"])  # the same figure, computed by evaluate
        assert result["misses"] == round((1 - saved[split]["accuracy"]) * saved[split]["n"])
    assert metrics["test"]["extra_metrics"] == saved["test"]["extra_metrics"]

    from textxfer.commands.model_card import Base, build_card

    card = build_card(Path(recipe.output_dir), "acme/tickets", Base(hub_id=None, name="tiny"), "other", adapter=False)
    results = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"]
    extra = {m["name"]: m for r in results for m in r["metrics"] if m["type"] == "hit_rate"}
    assert extra["Test hit_rate"]["value"] == pytest.approx(round(saved["test"]["accuracy"], 4))
    assert "Test hit_rate misses" in extra


def test_metric_arguments_follow_the_name(tmp_path, tiny_bert):
    metric = _metric(tmp_path)
    assert extra_metrics.parse(f"{metric} weight=2 config=x") == (str(metric), "x", {"weight": 2})
    (loaded,) = extra_metrics.load_extra_metrics([f"{metric} weight=0.5"])
    assert loaded.compute([1, 2], [1, 3]) == {"hit_rate": 0.25, "misses": 1}
    with pytest.raises(TextxferError, match="after the metric's name come `key=value` arguments"):
        extra_metrics.parse(f"{metric} weight")


@pytest.mark.parametrize("spec, message", [
    ("no_such_metric_anywhere", r"The metric `no_such_metric_anywhere` \(`train.extra_metrics`\) is not available: it "
                                r"is not in the local `evaluate` cache and the Hugging Face Hub cannot be reached"),
    ("./metrics/missing", r"The metric ./metrics/missing \(`train.extra_metrics`\) does not exist"),
])
def test_a_metric_that_cannot_be_had_stops_the_run_before_training(tmp_path, tiny_bert, spec, message):
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert, **RUN, extra_metrics=[spec]))
    with pytest.raises(TextxferError, match=message):
        train(recipe)
    assert not Path(recipe.output_dir).exists()


def test_a_metric_that_cannot_take_several_classes_is_refused_before_training(tmp_path, tiny_bert):
    metric = _metric(tmp_path, "binary_only", body="assert max(references) <= 1, 'binary only'")
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert, **RUN, extra_metrics=[str(metric)]))
    with pytest.raises(TextxferError, match=r"fails on class ids of several classes .*binary only.* `\"f1 average=macro\"`"):
        train(recipe)
    assert not Path(recipe.output_dir).exists()


def test_a_metric_failing_after_training_costs_a_warning_not_the_run(tmp_path, tiny_bert, caplog):
    metric = _metric(tmp_path, "small_only", body="assert len(references) <= 3, 'too many rows'")
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_bert, **RUN, extra_metrics=[str(metric)]))
    metrics = train(recipe)
    assert "too many rows" in metrics["test"]["extra_metrics"]["small_only"]["error"]
    assert (Path(recipe.output_dir) / "model.safetensors").is_file()
    assert "the metric" in caplog.text and "failed on the test predictions" in caplog.text
