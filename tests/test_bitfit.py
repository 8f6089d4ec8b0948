"""BitFit, the method added through the registry alone: only the bias terms and the head change."""
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from conftest import TICKETS, tiny_recipe
from textxfer import load_classifier, load_recipe, train
from textxfer.config import ModelConfig
from textxfer.errors import TextxferError
from textxfer.models.build import build_model


def test_bitfit_trains_only_the_biases_and_the_head(tmp_path, tiny_bert, cli):
    metrics = train(load_recipe(tiny_recipe(tmp_path, tiny_bert, method="bitfit", epochs=3, lr=1e-2)))
    run = tmp_path / "run"
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    saved = load_file(str(run / "model.safetensors"))
    pretrained = AutoModel.from_pretrained(tiny_bert).state_dict()
    changed, unchanged = [], []
    for name, before in pretrained.items():
        after = saved.get(f"bert.{name}")
        if after is None or not before.is_floating_point():
            continue
        (unchanged if torch.equal(before, after) else changed).append(name)
    assert changed and all(name.endswith(".bias") for name in changed), changed
    assert any(name.endswith("weight") for name in unchanged) and not any(n.endswith("weight") for n in changed)
    assert "encoder.layer.0.attention.self.query.bias" in changed
    head = [k for k in saved if k.startswith("classifier.")]
    assert head and metrics["train"]["trainable_parameters"] < 0.05 * metrics["train"]["total_parameters"]
    assert json.loads((run / "textxfer.json").read_text())["method"] == "bitfit"
    code, _, err = cli("predict", run, TICKETS["test"], "-o", tmp_path / "again.csv")
    assert code == 0, err
    assert (tmp_path / "again.csv").read_bytes() == (run / "predictions_test.csv").read_bytes()
    assert load_classifier(run).predict(["my card has not arrived"])


def test_bitfit_sets_only_biases_and_the_head_trainable(tiny_bert):
    model = build_model(ModelConfig(name=tiny_bert, method="bitfit"), {0: "a", 1: "b"}, 0)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(".bias") or n.startswith("classifier.") for n in trainable)
    assert "classifier.weight" in trainable


def test_bitfit_on_a_model_without_biases_is_a_clear_error(tiny_llama):
    with pytest.raises(TextxferError, match="has none.*model.method=lora"):
        build_model(ModelConfig(name=tiny_llama, method="bitfit"), {0: "a", 1: "b"}, 0)


def test_bitfit_refuses_layer_strategies():
    with pytest.raises(TextxferError, match="cannot apply to `model.method=bitfit`"):
        load_recipe(None, ["data.train=x.csv", "model.method=bitfit", "train.layer_lr_decay=0.8"])
