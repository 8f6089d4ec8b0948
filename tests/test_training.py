"""Training end to end on tiny random models: what trains, what stays frozen, what is saved and reloaded."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification

from conftest import ROOT, TICKETS, train_tiny, write, write_recipe
from textxfer import load_classifier
from textxfer.config import ModelConfig
from textxfer.models.build import build_model

def run(tmp_path, model, method="full", data=None, **train_cfg):
    return train_tiny(tmp_path, model, method, data=data, **train_cfg)


def read_rows(path):
    import csv
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_full_fine_tuning_trains_saves_and_reloads_exactly(tmp_path, tiny_bert, cli):
    metrics, run_dir = run(tmp_path, tiny_bert)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "recipe.yaml", "metrics.json",
                 "textxfer.json", "confusion_matrix.png", "learning_curves.png", "predictions_test.csv"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob("*.bin")), "safetensors only"
    assert not (tmp_path / "run.incomplete").exists()
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test"]["n"] == 400 and 0 <= saved["test"]["accuracy"] <= 1
    assert {"accuracy", "macro_f1", "n"} <= set(saved["validation"])
    assert {"samples_per_second", "wall_seconds", "epochs_run"} <= set(saved["train"])

    # Plain transformers loads the run with real label names, and its weights moved from the start.
    model = AutoModelForSequenceClassification.from_pretrained(run_dir)
    labels = json.loads((run_dir / "textxfer.json").read_text())["labels"]
    assert [model.config.id2label[i] for i in range(10)] == labels and "card_arrival" in labels
    before = AutoModel.from_pretrained(tiny_bert).state_dict()["encoder.layer.0.attention.self.query.weight"]
    assert not torch.equal(before, model.bert.encoder.layer[0].attention.self.query.weight)

    # `textxfer predict` on the test file reproduces predictions_test.csv byte for byte.
    code, out, err = cli("predict", run_dir, TICKETS["test"], "-o", tmp_path / "again.csv")
    assert code == 0, err
    assert (tmp_path / "again.csv").read_bytes() == (run_dir / "predictions_test.csv").read_bytes()
    rows = read_rows(run_dir / "predictions_test.csv")
    assert list(rows[0]) == ["text", "label", "predicted_label", "score"]
    clf = load_classifier(run_dir)
    assert clf.predict([r["text"] for r in rows[:50]]) == [r["predicted_label"] for r in rows[:50]]


def test_feature_extraction_leaves_the_backbone_untouched(tmp_path, tiny_bert):
    metrics, run_dir = run(tmp_path, tiny_bert, method="feature_extraction", epochs=30, lr=3e-2)
    original = AutoModel.from_pretrained(tiny_bert).state_dict()
    saved = AutoModel.from_pretrained(run_dir / "backbone").state_dict()
    assert original.keys() == saved.keys()
    assert all(torch.equal(original[k], saved[k]) for k in original)
    head = load_file(str(run_dir / "head.safetensors"))
    assert head["weight"].shape == (10, 32)
    assert metrics["train"]["trainable_parameters"] == 10 * 32 + 10
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    # A frozen-feature run must not pass for a stock model: no config.json at the top level.
    assert not (run_dir / "config.json").exists()
    rows = read_rows(run_dir / "predictions_test.csv")
    assert load_classifier(run_dir).predict([r["text"] for r in rows]) == [r["predicted_label"] for r in rows]


def test_feature_extraction_lbfgs_head_keeps_the_l2_strength_best_on_validation(tmp_path, tiny_bert):
    from textxfer.training.heads import HEAD_L2_GRID

    metrics, run_dir = run(tmp_path, tiny_bert, method="feature_extraction")
    history = metrics["history"]
    assert [h["head_l2"] for h in history] == list(HEAD_L2_GRID)
    # Weaker L2 fits the training features more closely.
    assert all(a["train_loss"] > b["train_loss"] for a, b in zip(history, history[1:]))
    scores = [h["validation_macro_f1"] for h in history]
    assert metrics["train"]["best_epoch"] == scores.index(max(scores)) + 1  # first of any ties: stronger L2
    assert metrics["validation"]["macro_f1"] == max(scores)
    assert metrics["test"]["accuracy"] > 0.2  # 10 classes: chance is 0.1
    assert {"setup_seconds", "features_seconds", "head_fit_seconds"} == set(metrics["train"]["timings"])


def test_feature_extraction_sgd_head_runs_its_epochs(tmp_path, tiny_bert):
    metrics, _ = run(tmp_path, tiny_bert, method="feature_extraction", epochs=12, lr=3e-2, head_solver="sgd")
    history = metrics["history"]
    assert len(history) == 12 and "head_l2" not in history[0]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_written_out_schedule_matches_transformers():
    from transformers import get_linear_schedule_with_warmup

    from textxfer.training.loop import linear_warmup_decay

    def rates(make):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler, seen = make(optimizer), []
        for _ in range(60):
            seen.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return seen

    assert rates(lambda o: linear_warmup_decay(o, 7, 50)) == rates(lambda o: get_linear_schedule_with_warmup(o, 7, 50))


def test_scratch_uses_the_architecture_but_not_the_weights(tiny_bert):
    labels = {0: "a", 1: "b"}
    torch.manual_seed(123)  # not the seed the tiny 'pretrained' model was made with
    scratch = build_model(ModelConfig(name=tiny_bert, method="scratch"), labels, 0)
    full = build_model(ModelConfig(name=tiny_bert, method="full"), labels, 0)
    assert type(scratch) is type(full)
    assert scratch.config.hidden_size == full.config.hidden_size and scratch.config.id2label == labels
    pretrained = full.bert.embeddings.word_embeddings.weight
    assert not torch.equal(scratch.bert.embeddings.word_embeddings.weight, pretrained)


def test_distilbert_trains_and_predicts(tmp_path, tiny_distilbert):
    metrics, run_dir = run(tmp_path, tiny_distilbert, epochs=2)
    assert metrics["test"]["n"] == 400
    assert AutoModelForSequenceClassification.from_pretrained(run_dir).config.model_type == "distilbert"


def test_same_seed_gives_the_same_metrics(tmp_path, tiny_bert):
    first, _ = run(tmp_path / "a", tiny_bert, epochs=2)
    second, _ = run(tmp_path / "b", tiny_bert, epochs=2)
    assert first["history"] == second["history"]
    assert first["test"]["accuracy"] == second["test"]["accuracy"]


def test_early_stopping_keeps_the_best_epoch(tmp_path, tiny_bert):
    metrics, _ = run(tmp_path, tiny_bert, epochs=6, lr=1e-9, early_stopping_patience=1)
    assert metrics["train"]["epochs_run"] == 2 and metrics["validation"]["epoch"] == 1


def test_jsonl_with_integer_labels_and_two_text_columns(tmp_path, tiny_bert):
    lines = [json.dumps({"subject": f"subject {i}", "body": f"card issue number {i}" if i % 3 else f"fee question {i}",
                         "queue": i % 3}) for i in range(60)]
    path = write(tmp_path, "t.jsonl", "\n".join(lines) + "\n")
    data = {"train": str(path), "test": str(path), "text_column": ["subject", "body"], "label_column": "queue"}
    metrics, run_dir = run(tmp_path, tiny_bert, data=data, epochs=2)
    assert json.loads((run_dir / "textxfer.json").read_text())["labels"] == ["0", "1", "2"]
    assert metrics["test"]["n"] == 60
    rows = read_rows(run_dir / "predictions_test.csv")
    assert list(rows[0]) == ["subject", "body", "queue", "predicted_label", "score"]


def test_balanced_class_weights_and_bf16_run(tmp_path, tiny_bert):
    metrics, _ = run(tmp_path, tiny_bert, epochs=1, class_weights="balanced", mixed_precision="bf16")
    assert metrics["train"]["epochs_run"] == 1 and metrics["test"]["n"] == 400


def test_python_dash_m_entry_point_with_overrides(tmp_path, tiny_bert):
    recipe = write_recipe(tmp_path, data=TICKETS, model={"name": tiny_bert}, train={"epochs": 1, "batch_size": 16},
                          output_dir=str(tmp_path / "run"))
    proc = subprocess.run([sys.executable, "-m", "textxfer.train", str(recipe), "train.seed=7", "data.test=null"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "validation accuracy" in proc.stdout
    saved = (tmp_path / "run" / "recipe.yaml").read_text()
    assert "seed: 7" in saved and "test: null" in saved


def test_max_length_is_clamped_to_the_models_positions(tmp_path, tiny_bert):
    metrics, run_dir = run(tmp_path, tiny_bert, data={"max_length": 1000}, epochs=1)
    assert "max_length: 128" in (run_dir / "recipe.yaml").read_text()


@pytest.mark.parametrize("name,fragment", [("./no/such/folder", "does not exist"),
                                           ("some-org/some-model-that-is-not-cached", "needs a network")])
def test_model_that_cannot_be_loaded_is_a_clear_error(tmp_path, cli, name, fragment):
    recipe = write_recipe(tmp_path, data=TICKETS, model={"name": name}, output_dir=str(tmp_path / "run"))
    code, _, err = cli("train", recipe)
    assert code == 2 and fragment in err and name in err and "Traceback" not in err


def test_pickled_checkpoints_are_refused(tmp_path, tiny_bert):
    import shutil

    from textxfer.errors import TextxferError

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert, folder)
    model = AutoModel.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(TextxferError, match="safetensors"):
        build_model(ModelConfig(name=str(folder)), {0: "a", 1: "b"}, 0)


def test_sentence_embedding_checkpoints_start_with_an_identity_pooler(tiny_bert, tmp_path):
    import shutil

    labels = {0: "a", 1: "b"}
    plain = build_model(ModelConfig(name=tiny_bert), labels, 0)
    assert not torch.equal(plain.bert.pooler.dense.weight, torch.eye(32))
    st_folder = tmp_path / "st"
    shutil.copytree(tiny_bert, st_folder)
    (st_folder / "modules.json").write_text("[]")
    model = build_model(ModelConfig(name=str(st_folder)), labels, 0)
    assert torch.equal(model.bert.pooler.dense.weight, torch.eye(32))
    assert torch.equal(model.bert.pooler.dense.bias, torch.zeros(32))
    forced = build_model(ModelConfig(name=str(st_folder), pooler_init="pretrained"), labels, 0)
    assert torch.equal(forced.bert.pooler.dense.weight, plain.bert.pooler.dense.weight)


def test_predict_errors_are_clear(tmp_path, tiny_bert, cli):
    _, run_dir = run(tmp_path, tiny_bert, epochs=1, data={"test": None})
    code, _, err = cli("predict", tmp_path / "nowhere", TICKETS["train"], "-o", tmp_path / "o.csv")
    assert code == 2 and "not a textxfer run folder" in err
    other = write(tmp_path, "other.csv", "message,id\nmy card is lost,1\n")
    code, _, err = cli("predict", run_dir, other, "-o", tmp_path / "o.csv")
    assert code == 2 and "no column `text`" in err and "message" in err and "--text-column" in err
    code, out, err = cli("predict", run_dir, other, "-o", tmp_path / "o.jsonl", "--text-column", "message")
    assert code == 0, err
    record = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert record["message"] == "my card is lost" and record["predicted_label"] in json.loads(
        (run_dir / "textxfer.json").read_text())["labels"] and 0 < record["score"] <= 1
