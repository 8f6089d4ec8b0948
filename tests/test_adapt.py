"""Domain-adaptive pretraining: masked LM for encoders, causal LM with LoRA for decoders."""
import json

from transformers import AutoModelForSequenceClassification

from conftest import SAMPLES, write, write_recipe
from textxfer import load_recipe, train


def unlabeled(tmp_path):
    import csv
    with open(SAMPLES / "tickets_train.csv", encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:400]
    return write(tmp_path, "unlabeled.txt", "\n".join(texts) + "\n")


def test_encoder_masked_lm_adaptation_lowers_the_loss_and_feeds_training(tmp_path, tiny_bert, cli):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"), "max_length": 32},
                          model={"name": tiny_bert}, train={"batch_size": 16, "epochs": 1, "lr": 1e-3},
                          output_dir=str(tmp_path / "run"))
    code, out, err = cli("adapt", recipe, f"data.unlabeled={unlabeled(tmp_path)}", "--epochs", "3", "--lr", "1e-3",
                         "--output", tmp_path / "adapted")
    assert code == 0, err
    metrics = json.loads((tmp_path / "adapted" / "adapt_metrics.json").read_text())
    assert metrics["objective"] == "masked_lm"
    assert metrics["held_out_loss_after"] < metrics["held_out_loss_before"]
    assert "model.name=" in out
    # tiny_bert is saved without its masked-LM head, like MiniLM: the user is told the "before" loss is a random head's.
    assert metrics["lm_head_pretrained"] is False and "no pretrained language-model head" in out
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "adapted", num_labels=3)
    assert model.config.model_type == "bert"
    result = train(load_recipe(recipe, [f"model.name={tmp_path / 'adapted'}"]))  # a classifier on top of it
    assert result["train"]["epochs_run"] == 1


def test_decoder_causal_lm_adaptation_with_lora(tmp_path, tiny_llama, cli):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"), "max_length": 32},
                          model={"name": tiny_llama, "lora": {"r": 4}}, train={"batch_size": 16},
                          output_dir=str(tmp_path / "run"))
    code, _, err = cli("adapt", recipe, f"data.unlabeled={unlabeled(tmp_path)}", "--epochs", "2", "--lr", "5e-3")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run-adapted" / "adapt_metrics.json").read_text())
    assert metrics["objective"] == "causal_lm_lora"
    assert metrics["held_out_loss_after"] < metrics["held_out_loss_before"]
    assert not (tmp_path / "run-adapted" / "adapter_config.json").exists()  # merged: a plain model folder


def test_adapt_needs_unlabeled_text(tmp_path, tiny_bert, cli):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv")}, model={"name": tiny_bert})
    code, _, err = cli("adapt", recipe)
    assert code == 2 and "data.unlabeled" in err
    code, _, err = cli("adapt", recipe, f"data.unlabeled={tmp_path / 'none.txt'}")
    assert code == 2 and "does not exist" in err


def test_a_checkpoint_with_its_masked_lm_head_is_recognised(tmp_path, tiny_bert):
    from transformers import AutoConfig, BertForMaskedLM

    from textxfer.commands.adapt import _lm_model

    BertForMaskedLM(AutoConfig.from_pretrained(tiny_bert)).save_pretrained(tmp_path / "mlm")
    assert _lm_model(str(tmp_path / "mlm"), False, None)[1] is True
    assert _lm_model(tiny_bert, False, None)[1] is False
