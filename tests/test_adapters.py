"""LoRA / QLoRA classifiers: what trains, what is saved, and that stock peft/transformers reload them."""
import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from conftest import TICKETS, train_tiny
from textxfer import load_classifier
from textxfer.config import LoraSettings, ModelConfig
from textxfer.errors import TextxferError
from textxfer.models.build import build_model

TEXTS = ["my card still has not arrived", "why was I charged for taking out cash?", "the exchange rate is wrong",
         "I lost my wallet with the card in it and someone may be using it right now"]


def run(tmp_path, model, method="lora", **train_cfg):
    return train_tiny(tmp_path, model, method, model_cfg={"lora": {"r": 4, "alpha": 8}},
                      **{"epochs": 3, "lr": 5e-3, **train_cfg})


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_llama):
    tmp = tmp_path_factory.mktemp("lora")
    metrics, run_dir = run(tmp, tiny_llama, gradient_checkpointing=True)
    return metrics, run_dir


def test_lora_trains_adapters_and_head_only(lora_run, tiny_llama):
    metrics, run_dir = lora_run
    trainable, total = metrics["train"]["trainable_parameters"], metrics["train"]["total_parameters"]
    assert 0 < trainable < 0.05 * total
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    saved = load_file(str(run_dir / "adapter_model.safetensors"))
    assert any("score" in k for k in saved), "the new head is saved with the adapter"
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero and must have trained"
    assert not any("embed_tokens" in k or k.endswith("q_proj.weight") for k in saved), "base weights stay out"
    assert not (run_dir / "model.safetensors").exists()


def test_stock_peft_reloads_the_run_with_label_names(lora_run):
    from peft import AutoPeftModelForSequenceClassification

    _, run_dir = lora_run
    clf = load_classifier(run_dir)
    model = AutoPeftModelForSequenceClassification.from_pretrained(run_dir).eval()
    assert [model.config.id2label[i] for i in range(10)] == clf.labels
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    with torch.no_grad():
        for text in TEXTS:  # one at a time: no padding involved
            logits = model(**tokenizer(text, return_tensors="pt")).logits
            assert np.allclose(torch.softmax(logits, -1).numpy()[0], clf.predict_proba([text], calibrated=False)[0], atol=1e-5)


def test_left_and_right_padding_give_the_same_predictions(lora_run):
    _, run_dir = lora_run
    clf = load_classifier(run_dir)
    sides = {}
    for side in ("left", "right"):
        clf.collate.padding_side = side
        sides[side] = clf.predict_proba(TEXTS)  # texts of different lengths share a batch: padding matters
    assert np.allclose(sides["left"], sides["right"], atol=1e-5)
    assert clf.model.config.pad_token_id == clf.tokenizer.pad_token_id


def test_predict_and_merge(lora_run, tmp_path, cli):
    _, run_dir = lora_run
    code, _, err = cli("predict", run_dir, TICKETS["test"], "-o", tmp_path / "again.csv")
    assert code == 0, err
    assert (tmp_path / "again.csv").read_bytes() == (run_dir / "predictions_test.csv").read_bytes()

    code, out, err = cli("merge", run_dir, tmp_path / "merged")
    assert code == 0, err
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    labels = json.loads((run_dir / "textxfer.json").read_text())["labels"]
    assert merged.config.num_labels == 10 and [merged.config.id2label[i] for i in range(10)] == labels
    adapter, standalone = load_classifier(run_dir), load_classifier(tmp_path / "merged")
    assert np.allclose(adapter.predict_proba(TEXTS), standalone.predict_proba(TEXTS), atol=1e-5)
    code, _, err = cli("predict", tmp_path / "merged", TICKETS["test"], "-o", tmp_path / "merged.csv")
    assert code == 0, err
    assert [r["predicted_label"] for r in read_rows(tmp_path / "merged.csv")] == \
        [r["predicted_label"] for r in read_rows(run_dir / "predictions_test.csv")]

    code, _, err = cli("merge", tmp_path / "merged", tmp_path / "again")
    assert code == 2 and "only `lora` and `qlora` runs can be merged" in err


def test_qlora_quantizes_the_base_but_not_the_head(tmp_path, tiny_llama):
    import bitsandbytes as bnb

    labels = {0: "a", 1: "b", 2: "c"}
    cfg = ModelConfig(name=tiny_llama, method="qlora", lora=LoraSettings(compute_dtype="float32"))
    model = build_model(cfg, labels, 0, gradient_checkpointing=True)
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 14  # q, k, v, o, gate, up, down in each of 2 layers
    head = model.base_model.model.score.modules_to_save["default"]
    assert type(head) is torch.nn.Linear and head.weight.dtype == torch.float32 and head.weight.requires_grad

    metrics, run_dir = run(tmp_path, tiny_llama, method="qlora")
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert "quantization_config" not in json.loads((run_dir / "config.json").read_text())
    rows = read_rows(run_dir / "predictions_test.csv")
    clf = load_classifier(run_dir)
    assert clf.predict([r["text"] for r in rows[:40]]) == [r["predicted_label"] for r in rows[:40]]


def test_qlora_layers_the_cpu_4bit_kernels_cannot_take_are_refused_before_training(tmp_path, monkeypatch, cli):
    """bitsandbytes repacks 4-bit weights in blocks on AVX-512 BF16 CPUs: a layer narrower than a block
    failed there with a reshape error at the first evaluation. textxfer says so before training."""
    import bitsandbytes.nn.modules as bnb_modules
    from transformers import BertTokenizer, LlamaConfig

    from conftest import SAMPLES, _save_tiny, write_recipe

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)  # the packed path, on any CPU
    narrow = LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    model_dir = _save_tiny(tmp_path / "narrow", narrow, BertTokenizer)
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"), "max_length": 32},
                          model={"name": model_dir, "method": "qlora"}, train={"epochs": 1},
                          output_dir=str(tmp_path / "run"))
    code, out, err = cli("train", recipe)
    assert code == 2 and "Traceback" not in err
    assert "AVX-512" in err and "multiple of 64" in err and "k_proj (32 -> 16)" in err and "model.method=lora" in err
    assert "epoch" not in out and not (tmp_path / "run").exists()


def test_lora_on_an_encoder(tmp_path, tiny_bert):
    metrics, run_dir = run(tmp_path, tiny_bert, epochs=2)
    saved = load_file(str(run_dir / "adapter_model.safetensors"))
    assert any("classifier" in k for k in saved) and any("lora_A" in k for k in saved)
    assert metrics["test"]["n"] == 400
    original = AutoModel.from_pretrained(tiny_bert).state_dict()["embeddings.word_embeddings.weight"]
    merged = load_classifier(run_dir).model.merge_and_unload()
    assert torch.equal(merged.bert.embeddings.word_embeddings.weight, original), "not an adapter target: frozen"


def test_unknown_target_modules_is_a_clear_error(tiny_llama):
    cfg = ModelConfig(name=tiny_llama, method="lora", lora=LoraSettings(target_modules=["query_key_value"]))
    with pytest.raises(TextxferError, match="q_proj"):
        build_model(cfg, {0: "a", 1: "b"}, 0)
