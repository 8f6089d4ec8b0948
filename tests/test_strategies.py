"""Transfer strategies: partial freezing, layer-wise LRs, gradual unfreezing, L2-SP, LP-FT."""
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from conftest import train_tiny
from textxfer import load_recipe
from textxfer.config import ModelConfig
from textxfer.errors import TextxferError
from textxfer.models.build import build_model
from textxfer.models.strategies import GradualUnfreezing, L2SP, layerwise_groups, parameter_depths

def run(tmp_path, model, model_cfg=None, **train_cfg):
    model_cfg = dict(model_cfg or {})
    return train_tiny(tmp_path, model, model_cfg.pop("method", "full"), model_cfg=model_cfg,
                      **{"epochs": 2, **train_cfg})


def weights(folder):
    return AutoModelForSequenceClassification.from_pretrained(folder).state_dict()


def pretrained(tiny_bert):
    return {f"bert.{k}": v for k, v in AutoModel.from_pretrained(tiny_bert).state_dict().items()}


def test_depths_of_a_bert(tiny_bert):
    model = build_model(ModelConfig(name=tiny_bert), {0: "a", 1: "b"}, 0)
    depths, layers = parameter_depths(model)
    assert layers == 2
    assert depths["bert.embeddings.word_embeddings.weight"] == 0
    assert depths["bert.encoder.layer.0.attention.self.query.weight"] == 1
    assert depths["bert.encoder.layer.1.output.dense.weight"] == 2
    assert depths["classifier.weight"] == depths["bert.pooler.dense.weight"] == 3


def test_freeze_layers_keeps_the_bottom_fixed(tmp_path, tiny_bert):
    _, run_dir = run(tmp_path, tiny_bert, {"freeze_layers": 1})
    before, after = pretrained(tiny_bert), weights(run_dir)
    for name in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["bert.encoder.layer.1.attention.self.query.weight"],
                           after["bert.encoder.layer.1.attention.self.query.weight"])


def test_layer_lr_decay_groups(tiny_bert):
    model = build_model(ModelConfig(name=tiny_bert), {0: "a", 1: "b"}, 0)
    groups = layerwise_groups(model, 1e-3, 0.5, 0.01)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["classifier.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(params["bert.encoder.layer.1.attention.self.query.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(params["bert.encoder.layer.0.attention.self.query.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(params["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    assert sum(len(g["params"]) for g in groups) == len(params)
    no_decay = [g for g in groups if g["weight_decay"] == 0.0]
    assert all(p.ndim < 2 for g in no_decay for p in g["params"] if p.ndim < 2)


def test_layer_lr_decay_trains(tmp_path, tiny_bert):
    metrics, _ = run(tmp_path, tiny_bert, layer_lr_decay=0.8)
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]


def test_gradual_unfreezing_trains_the_head_first(tmp_path, tiny_bert):
    model = build_model(ModelConfig(name=tiny_bert), {0: "a", 1: "b"}, 0)
    schedule = GradualUnfreezing(model)
    trainable = lambda: {n for n, p in model.named_parameters() if p.requires_grad}  # noqa: E731
    assert schedule.start_epoch(1) == 3 and trainable() == {"bert.pooler.dense.weight", "bert.pooler.dense.bias",
                                                              "classifier.weight", "classifier.bias"}
    assert schedule.start_epoch(2) == 2 and "bert.encoder.layer.1.output.dense.weight" in trainable()
    assert "bert.encoder.layer.0.output.dense.weight" not in trainable()
    assert schedule.start_epoch(4) == 0 and len(trainable()) == len(list(model.parameters()))

    _, run_dir = run(tmp_path, tiny_bert, epochs=1, gradual_unfreezing=True)  # one epoch: the head only
    before, after = pretrained(tiny_bert), weights(run_dir)
    assert torch.equal(before["bert.encoder.layer.1.output.dense.weight"], after["bert.encoder.layer.1.output.dense.weight"])
    assert torch.equal(before["bert.embeddings.word_embeddings.weight"], after["bert.embeddings.word_embeddings.weight"])


def test_l2_sp_holds_weights_near_the_pretrained_ones(tmp_path, tiny_bert):
    model = build_model(ModelConfig(name=tiny_bert), {0: "a", 1: "b"}, 0)
    assert L2SP(model, 0.01)().item() == 0.0  # no distance at the start
    before = pretrained(tiny_bert)
    name = "bert.encoder.layer.1.output.dense.weight"
    distance = {}
    for strength in (0.0, 10.0):
        _, run_dir = run(tmp_path / str(strength), tiny_bert, epochs=2, lr=3e-3, l2_sp=strength)
        distance[strength] = (weights(run_dir)[name] - before[name]).norm().item()
    assert distance[10.0] < 0.5 * distance[0.0]


def test_lp_ft_fits_the_head_before_fine_tuning(tmp_path, tiny_bert, capsys):
    metrics, run_dir = run(tmp_path, tiny_bert, {"method": "lp_ft"}, epochs=1)
    assert "linear probe" in capsys.readouterr().out
    assert len(metrics["history"]) == 1 and metrics["test"]["n"] == 400
    assert AutoModelForSequenceClassification.from_pretrained(run_dir).config.num_labels == 10


@pytest.mark.parametrize("method,key", [("lora", "train.layer_lr_decay=0.8"), ("scratch", "train.l2_sp=0.1"),
                                        ("feature_extraction", "model.freeze_layers=2")])
def test_strategies_that_do_not_apply_are_refused(method, key):
    with pytest.raises(TextxferError, match=f"cannot apply to `model.method={method}`"):
        load_recipe(None, ["data.train=x.csv", f"model.method={method}", key])
