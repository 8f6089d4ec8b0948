"""Tickets and contracts as they are: multi-label, long documents, imbalanced classes, text pairs."""
import csv
import json

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import SAMPLES, train_tiny, write, write_recipe
from textxfer import load_classifier, load_recipe
from textxfer.data.batching import LengthBucketBatchSampler, balanced_weights, tokenize
from textxfer.config import DataConfig
from textxfer.data.splits import load_splits
from textxfer.evaluation.decisions import aggregate, decide, threshold_for_target, tune_label_thresholds
from textxfer.errors import TextxferError
from textxfer.training.losses import make_loss
from textxfer.models.embedded import resolve_model_path


def run(tmp_path, model, data, method="full", **train_cfg):
    data = {"test": None, "max_length": None, **data}  # the task's own files, not the tickets sample
    return train_tiny(tmp_path, model, method, data=data, **{"epochs": 2, "batch_size": 16, **train_cfg})


def head_of(path, n, tmp_path, name=None):
    """The first `n` data rows of a sample file, as a new file (keeps the tests quick)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = [] if path.suffix == ".jsonl" else lines[:1]
    body = lines[len(header):len(header) + n]
    return str(write(tmp_path, name or f"head_{n}_{path.name}", "".join(header + body)))


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6"))


# --- multi-label -------------------------------------------------------------------------------------

def test_multi_label_csv_run_saves_thresholds_and_predicts_label_sets(tmp_path, tiny_bert, cli):
    data = {"train": head_of(SAMPLES / "tickets_multilabel_train.csv", 300, tmp_path),
            "test": head_of(SAMPLES / "tickets_multilabel_test.csv", 120, tmp_path),
            "label_column": "labels", "multi_label": True, "max_length": 64}
    metrics, run_dir = run(tmp_path, tiny_bert, data, epochs=3)
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert {"micro_f1", "macro_f1", "subset_accuracy", "n", "per_class"} <= set(test) and test["n"] == 120
    assert {"micro_f1", "macro_f1", "subset_accuracy"} <= set(metrics["validation"])
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    info = json.loads((run_dir / "textxfer.json").read_text())
    assert info["multi_label"] and len(info["labels"]) == 10
    thresholds = info["decision"]["thresholds"]
    assert set(thresholds) == set(info["labels"]) and all(0 < t < 1 for t in thresholds.values())
    assert (run_dir / "label_scores.png").is_file() and not (run_dir / "confusion_matrix.png").exists()

    # Stock transformers sees a multi-label model with the label names.
    model = AutoModelForSequenceClassification.from_pretrained(run_dir)
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[i] for i in range(10)] == info["labels"]

    # The predictions file holds label sets and one score per label; reload and predict agree with it.
    rows = read_rows(run_dir / "predictions_test.csv")
    assert list(rows[0]) == ["text", "labels", "predicted_labels", *[f"score_{l}" for l in info["labels"]]]
    clf = load_classifier(run_dir)
    predicted = clf.predict([r["text"] for r in rows])
    assert ["|".join(p) for p in predicted] == [r["predicted_labels"] for r in rows]
    for row, labels in zip(rows, predicted):  # a label is on exactly when its score reaches its threshold
        assert labels == [l for l in info["labels"] if float(row[f"score_{l}"]) >= thresholds[l] - 1e-6]
    code, _, err = cli("predict", run_dir, data["test"], "-o", tmp_path / "again.csv")
    assert code == 0, err
    assert (tmp_path / "again.csv").read_bytes() == (run_dir / "predictions_test.csv").read_bytes()
    code, _, err = cli("predict", run_dir, data["test"], "-o", tmp_path / "again.jsonl")
    first = json.loads((tmp_path / "again.jsonl").read_text().splitlines()[0])
    assert first["predicted_labels"] == predicted[0] and isinstance(first[f"score_{info['labels'][0]}"], float)


def test_multi_label_jsonl_with_feature_extraction(tmp_path, tiny_bert):
    data = {"train": head_of(SAMPLES / "tickets_multilabel_train.jsonl", 200, tmp_path),
            "test": head_of(SAMPLES / "tickets_multilabel_test.jsonl", 60, tmp_path),
            "label_column": "labels", "multi_label": True, "max_length": 64}
    metrics, run_dir = run(tmp_path, tiny_bert, data, method="feature_extraction", epochs=20, lr=3e-2,
                           class_weights="balanced", loss="focal")
    assert metrics["test"]["n"] == 60 and 0 <= metrics["test"]["micro_f1"] <= 1
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    rows = [json.loads(line) for line in (SAMPLES / "tickets_multilabel_test.jsonl").read_text().splitlines()[:60]]
    clf = load_classifier(run_dir)
    assert clf.predict([r["text"] for r in rows]) == clf.predict([r["text"] for r in rows])
    assert all(isinstance(p, list) for p in clf.predict([r["text"] for r in rows]))


def test_multi_label_targets_are_multi_hot(tmp_path):
    path = write(tmp_path, "t.jsonl", "".join(json.dumps({"text": f"t{i}", "tags": tags}) + "\n" for i, tags in
                                              enumerate([["a", "b"], ["b"], ["c", "a"], ["c"]] * 5)))
    result = load_splits(DataConfig(train=str(path), label_column="tags", multi_label=True), seed=0)
    assert result.labels.labels == ["a", "b", "c"] and result.multi_label
    rows = {t: l for t, l in zip(list(result.train["text"]) + list(result.validation["text"]),
                                 list(result.train["label"]) + list(result.validation["label"]))}
    assert rows["t0"] == [1, 1, 0] and rows["t1"] == [0, 1, 0] and rows["t2"] == [1, 0, 1]


def error_of(**data) -> str:
    with pytest.raises(TextxferError) as err:
        load_splits(DataConfig(**data), seed=0)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_multi_label_bad_input(tmp_path):
    train = write(tmp_path, "train.csv", "text,labels\n" + "".join(f"ticket {i},{'a|b' if i % 2 else 'b'}\n"
                                                                    for i in range(10)))
    test = write(tmp_path, "test.csv", "text,labels\nfine,a\nodd one,a|zebra\n")
    message = error_of(train=str(train), test=str(test), label_column="labels", multi_label=True)
    assert "test.csv" in message and "'zebra'" in message and "row 2" in message and "`labels`" in message

    empty = write(tmp_path, "empty.jsonl", '{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": []}\n'
                                           '{"text": "c", "labels": ["y"]}\n')
    message = error_of(train=str(empty), label_column="labels", multi_label=True)
    assert "empty.jsonl" in message and "line 2" in message and "label list" in message and "empty" in message

    message = error_of(train=str(empty), label_column="labels")  # lists, but single-label recipe
    assert "line 1" in message and "data.multi_label=true" in message


# --- text pairs --------------------------------------------------------------------------------------

def test_pairs_are_encoded_as_sentence_pairs(tokenizer):
    ds = datasets.Dataset.from_dict({"text": ["my card is lost"], "text_pair": ["lost or stolen card"], "label": [1]})
    row = tokenize(ds, tokenizer, 32)[0]
    assert row["input_ids"] == tokenizer("my card is lost", "lost or stolen card")["input_ids"]
    assert 1 in row["token_type_ids"] and row["doc"] == 0 and row["label"] == 1


def test_pair_run_and_pair_errors(tmp_path, tiny_bert, cli):
    data = {"train": head_of(SAMPLES / "tickets_pairs_train.csv", 200, tmp_path),
            "test": head_of(SAMPLES / "tickets_pairs_test.csv", 80, tmp_path),
            "text_column": "ticket", "text_pair_column": "queue", "max_length": 64}
    metrics, run_dir = run(tmp_path, tiny_bert, data)
    assert metrics["test"]["n"] == 80
    assert json.loads((run_dir / "textxfer.json").read_text())["text_pair_column"] == "queue"
    rows = read_rows(run_dir / "predictions_test.csv")
    clf = load_classifier(run_dir)
    assert clf.predict([r["ticket"] for r in rows], [r["queue"] for r in rows]) == [r["predicted_label"] for r in rows]
    with pytest.raises(TextxferError, match="pairs"):
        clf.predict(["my card is lost"])

    no_pair = write(tmp_path, "no_pair.csv", "ticket,label\nhello,yes\n")
    code, _, err = cli("predict", run_dir, no_pair, "-o", tmp_path / "o.csv")
    assert code == 2 and "no column `queue`" in err and "--pair-column" in err

    message = error_of(train=str(no_pair), text_column="ticket", text_pair_column="queue")
    assert "no_pair.csv" in message and "`queue`" in message and "data.text_pair_column" in message
    blank = write(tmp_path, "blank.csv", "ticket,queue,label\nhi,card arrival,yes\nho,,no\n")
    message = error_of(train=str(blank), text_column="ticket", text_pair_column="queue")
    assert "row 2" in message and "pair text (`queue`) is empty" in message


# --- long documents ----------------------------------------------------------------------------------

LONG = " ".join(f"word{i}" for i in range(300))


def test_chunks_cover_the_document_with_overlapping_windows(tokenizer):
    ds = datasets.Dataset.from_dict({"text": [LONG, "short text"], "label": [0, 1]})
    full = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    rows = tokenize(ds, tokenizer, 64, "chunks", stride=16).to_dict()
    docs = rows["doc"]
    assert docs[-1] == 1 and set(docs[:-1]) == {0} and rows["label"][:-1] == [0] * (len(docs) - 1)
    windows = [ids[1:-1] for ids, d in zip(rows["input_ids"], docs) if d == 0]
    assert all(len(ids) <= 64 for ids in rows["input_ids"])
    assert windows[0] == full[:62] and windows[-1] == full[-len(windows[-1]):]
    assert windows[1][:16] == windows[0][-16:]  # stride = tokens shared by neighbours
    covered = sum(len(w) for w in windows) - 16 * (len(windows) - 1)
    assert covered == len(full)

    capped = tokenize(ds, tokenizer, 64, "chunks", stride=16, max_chunks=3).to_dict()
    kept = [ids[1:-1] for ids, d in zip(capped["input_ids"], capped["doc"]) if d == 0]
    assert len(kept) == 3 and kept[0] == windows[0] and kept[-1] == windows[-1]


def test_head_tail_keeps_both_ends(tokenizer):
    ds = datasets.Dataset.from_dict({"text": [LONG, "short text"]})
    rows = tokenize(ds, tokenizer, 66, "head_tail").to_dict()
    ids = rows["input_ids"][0]
    full = tokenizer(LONG)["input_ids"]
    assert len(ids) <= 66
    assert ids[:10] == full[:10] and ids[-10:] == full[-10:]  # [CLS] + head ... tail + [SEP]
    assert rows["input_ids"][1] == tokenizer("short text")["input_ids"]


def test_aggregate_windows_per_document():
    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [2.0, 2.0]])
    labels = torch.tensor([1, 1, 0, 1])
    docs = torch.tensor([7, 7, 3, 7])
    mean, doc_labels = aggregate(logits, labels, docs, "mean")
    assert torch.allclose(mean, torch.tensor([[0.0, 5.0], [2.0, 4 / 3]])) and doc_labels.tolist() == [0, 1]
    top, _ = aggregate(logits, labels, docs, "max")
    assert torch.equal(top, torch.tensor([[0.0, 5.0], [3.0, 2.0]]))
    same, _ = aggregate(logits[:2], None, torch.tensor([5, 2]))  # one window each: reorder only
    assert torch.equal(same, logits[[1, 0]])


def test_chunked_run_scores_documents_not_windows(tmp_path, tiny_bert):
    data = {"train": head_of(SAMPLES / "newsgroups_train.jsonl", 60, tmp_path),
            "test": head_of(SAMPLES / "newsgroups_test.jsonl", 20, tmp_path),
            "max_length": 64, "long_text": "chunks", "stride": 8, "max_chunks": 6, "chunk_aggregation": "max"}
    metrics, run_dir = run(tmp_path, tiny_bert, data, epochs=1)
    assert metrics["test"]["n"] == 20 and metrics["validation"]["n"] == len(load_splits(
        DataConfig(train=data["train"]), 3).validation)
    assert len(read_rows(run_dir / "predictions_test.csv")) == 20
    info = json.loads((run_dir / "textxfer.json").read_text())
    assert (info["long_text"], info["stride"], info["max_chunks"], info["chunk_aggregation"]) == ("chunks", 8, 6, "max")


# --- imbalance ---------------------------------------------------------------------------------------

def test_balanced_sampler_oversamples_the_rare_class():
    labels = [1] * 10 + [0] * 190
    weights = balanced_weights(labels)
    sampler = LengthBucketBatchSampler([5] * 200, 20, seed=0, weights=weights)
    drawn = [labels[i] for batch in sampler for i in batch]
    assert len(drawn) == 200 and 0.35 < sum(drawn) / 200 < 0.65
    assert [i for b in sampler for i in b] == [i for b in sampler for i in b]  # seeded per epoch
    multi = balanced_weights([[1, 0], [1, 0], [1, 0], [1, 1]])
    assert multi[3] == 1.0 and multi[0] == 1 / 4


def test_focal_loss():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0]])
    labels = torch.tensor([0, 0])
    ce = make_loss(False)(logits, labels)
    assert torch.allclose(make_loss(False, "focal", gamma=0.0)(logits, labels), ce)
    terms = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    focal = make_loss(False, "focal", gamma=2.0)(logits, labels)
    assert focal < ce
    p = torch.softmax(logits, -1)[:, 0]
    assert torch.allclose(focal, ((1 - p) ** 2 * terms).mean())
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = make_loss(True)(logits, targets)
    assert torch.allclose(bce, torch.nn.functional.binary_cross_entropy_with_logits(logits, targets))
    assert make_loss(True, "focal")(logits, targets) < bce


def test_thresholds():
    probs = np.array([[0.9, 0.15], [0.35, 0.2], [0.1, 0.25], [0.8, 0.1]])
    targets = np.array([[1, 0], [1, 0], [0, 1], [1, 0]])
    thresholds = tune_label_thresholds(probs, targets)
    assert thresholds[0] <= 0.35 and 0.2 < thresholds[1] <= 0.25
    assert decide(probs, True, thresholds).tolist() == targets.tolist()

    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    positive = np.array([0, 0, 1, 0, 0, 1, 1, 1], dtype=bool)
    t, reached = threshold_for_target(scores, positive, recall=1.0)
    assert t == pytest.approx(0.3) and reached == {"precision": pytest.approx(4 / 6), "recall": 1.0}
    t, reached = threshold_for_target(scores, positive, precision=1.0)
    assert t == pytest.approx(0.7) and reached["recall"] == pytest.approx(0.75)
    assert threshold_for_target(scores, positive, precision=1.01 - 1e-9)[0] is None
    binary = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert decide(binary, False, positive_index=1, threshold=0.25).tolist() == [1, 1]
    assert decide(binary, False).tolist() == [0, 1]


def test_imbalanced_binary_run_with_sampler_and_target_recall(tmp_path, tiny_bert):
    data = {"train": head_of(SAMPLES / "fraud_train.csv", 600, tmp_path),
            "test": head_of(SAMPLES / "fraud_test.csv", 300, tmp_path), "max_length": 48}
    metrics, run_dir = run(tmp_path, tiny_bert, data, sampler="balanced", target_recall=0.8, epochs=2)
    view = metrics["test"]["precision_recall"]
    assert view["positive_label"] == "fraud" and 0 <= view["average_precision"] <= 1
    assert len(view["curve"]["precision"]) == len(view["curve"]["recall"]) <= 101
    assert {"precision", "recall", "f1-score"} <= set(metrics["test"]["per_class"]["fraud"])
    assert (run_dir / "precision_recall.png").is_file()
    decision = json.loads((run_dir / "textxfer.json").read_text())["decision"]
    assert decision["positive_label"] == "fraud"
    clf = load_classifier(run_dir)
    rows = read_rows(run_dir / "predictions_test.csv")
    probs = clf.predict_proba([r["text"] for r in rows])
    fraud = clf.labels.index("fraud")
    if "threshold" in decision:  # the validation split may be too small to reach the target
        assert decision["validation_at_threshold"]["recall"] >= 0.8
        expected = ["fraud" if p >= decision["threshold"] else "other" for p in probs[:, fraud]]
    else:
        expected = [clf.labels[i] for i in probs.argmax(1)]
    assert [r["predicted_label"] for r in rows] == expected


def test_option_errors(tmp_path):
    base = {"data": {"train": "x.csv"}, "output_dir": str(tmp_path / "r")}
    cases = [({"train": {"target_precision": 0.9, "target_recall": 0.9}}, "both"),
             ({"data": {"train": "x.csv", "long_text": "chunks", "max_length": 64, "stride": 40}}, "data.stride"),
             ({"data": {"train": "x.csv", "multi_label": True}, "train": {"target_recall": 0.9}}, "binary"),
             ({"data": {"train": "x.csv", "long_text": "sliding"}}, "truncate, head_tail, chunks")]
    for extra, fragment in cases:
        with pytest.raises(TextxferError, match=fragment):
            load_recipe(write_recipe(tmp_path, **{**base, **extra}))
    binary = write(tmp_path, "b.csv", "text,label\n" + "".join(f"t{i},{'a' if i % 3 else 'b'}\n" for i in range(12)))
    assert load_splits(DataConfig(train=str(binary)), 0).positive_label == "b"  # the rarer class
    with pytest.raises(TextxferError, match="positive_label"):
        load_splits(DataConfig(train=str(binary), positive_label="c"), 0)
