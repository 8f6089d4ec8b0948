"""Datasets as input (`data.dataset`), offline: a `save_to_disk` folder, a folder of parquet files, and a
Hub dataset read from the local datasets cache with HF_DATASETS_OFFLINE=1; label names from a ClassLabel,
what the run records of the dataset, the model card's metadata, and the errors that name the dataset or
split."""
from __future__ import annotations

import csv
from pathlib import Path

import datasets
import pytest
import yaml
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from conftest import SAMPLES, write_recipe

from textxfer import load_recipe, train
from textxfer.config import DataConfig
from textxfer.data.splits import load_splits
from textxfer.errors import TextxferError
from textxfer.runs.info import RunInfo

RUN = {"epochs": 1, "lr": 5e-3, "batch_size": 16, "seed": 1}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _rows(name: str) -> tuple[list[str], list[str]]:
    with (SAMPLES / name).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


@pytest.fixture(scope="module")
def tickets() -> DatasetDict:
    """The small tickets as a DatasetDict with a ClassLabel whose order is not alphabetical: train (60
    rows), validation (40) and test (80) cut from the test file."""
    train_texts, train_labels = _rows("tickets_small.csv")
    test_texts, test_labels = _rows("tickets_test.csv")
    names = sorted(set(train_labels), reverse=True)
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})

    def split(texts, labels):
        return Dataset.from_dict({"text": texts, "label": [names.index(l) for l in labels]}, features=features)

    return DatasetDict({"train": split(train_texts, train_labels),
                        "validation": split(test_texts[:40], test_labels[:40]),
                        "test": split(test_texts[40:120], test_labels[40:120])})


def _recipe(folder: Path, model: str, **data) -> Path:
    return write_recipe(folder, data={"max_length": 32, **data}, model={"name": model, "method": "full"},
                        train=RUN, output_dir=str(folder / "run"))


def _card(run: Path) -> tuple[dict, str]:
    from textxfer.commands.model_card import Base, build_card

    card = build_card(run, "acme/ticket-router", Base(hub_id=None, name="tiny"), "other", adapter=False)
    header = yaml.safe_load(card.split("---")[1])
    return header, card


def test_a_save_to_disk_dataset_trains_with_its_label_names_and_splits(tmp_path, tiny_bert, tickets):
    folder = tmp_path / "tickets-saved"
    tickets.save_to_disk(str(folder))
    metrics = train(load_recipe(_recipe(tmp_path, tiny_bert, dataset=str(folder))))
    info = RunInfo.read(tmp_path / "run")
    assert info.labels == tickets["train"].features["label"].names  # the ClassLabel's order, not sorted
    assert metrics["validation"]["n"] == 40 and metrics["test"]["n"] == 80  # the dataset's own splits
    assert info.dataset["kind"] == "saved" and info.dataset["dataset"] == str(folder)
    assert info.dataset["splits"] == {"train": "train", "validation": "validation", "test": "test"}
    # a local folder's revision: the fingerprint datasets gives what it read (the same at every load)
    assert info.dataset["revision"] == datasets.load_from_disk(str(folder))["train"]._fingerprint
    header, card = _card(tmp_path / "run")
    assert "datasets" not in header  # a local folder is not a Hub dataset
    assert "`tickets-saved`" in card and "split `test`" in card


def test_a_folder_of_parquet_files_is_read_by_split_name(tmp_path, tiny_bert, tickets):
    folder = tmp_path / "parquet"
    folder.mkdir()
    for name in ("train", "test"):  # no validation split: a share of train is held out
        tickets[name].to_parquet(str(folder / f"{name}.parquet"))
    recipe = load_recipe(_recipe(tmp_path, tiny_bert, dataset=str(folder)))
    splits = load_splits(recipe.data, recipe.train.seed)
    assert len(splits.train) + len(splits.validation) == 60 and len(splits.test) == 80
    assert splits.labels.labels == tickets["train"].features["label"].names
    assert splits.dataset["kind"] == "files" and splits.dataset["splits"]["validation"] is None
    metrics = train(recipe)
    assert metrics["test"]["n"] == 80


def _cache_as_hub_dataset(tickets: DatasetDict, cache: Path, tmp_path: Path, repo: str = "acme/tickets") -> None:
    """Put `tickets` in a datasets cache exactly where `load_dataset(repo)` leaves a Hub dataset: its
    parquet files prepared by datasets' own parquet builder under the commit COMMIT, in the folder
    `OWNER___NAME/default/0.0.0/COMMIT` (the builder names it after the dataset; the namespace is added)."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    files = tmp_path / "hub-files"
    files.mkdir(exist_ok=True)
    for name, split in tickets.items():
        split.to_parquet(str(files / f"{name}.parquet"))
    owner, name = repo.split("/")
    builder = Parquet(cache_dir=str(cache), dataset_name=name, config_id="default", hash=COMMIT,
                      data_files={split: str(files / f"{split}.parquet") for split in tickets})
    builder.download_and_prepare()
    (cache / name).rename(cache / f"{owner}___{name}")


@pytest.fixture
def offline_cache(tmp_path, tickets, monkeypatch):
    """A datasets cache holding `acme/tickets`, read with HF_DATASETS_OFFLINE=1."""
    cache = tmp_path / "datasets-cache"
    _cache_as_hub_dataset(tickets, cache, tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # what the variable sets when datasets starts
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def test_a_hub_dataset_in_the_local_cache_trains_offline_and_the_card_names_it(tmp_path, tiny_bert, tickets,
                                                                              offline_cache):
    metrics = train(load_recipe(_recipe(tmp_path, tiny_bert, dataset="acme/tickets")))
    info = RunInfo.read(tmp_path / "run")
    assert info.dataset == {"dataset": "acme/tickets", "kind": "hub", "config": None, "revision": COMMIT,
                            "splits": {"train": "train", "validation": "validation", "test": "test"}}
    assert metrics["test"]["n"] == 80
    header, card = _card(tmp_path / "run")
    assert header["datasets"] == ["acme/tickets"]
    (result,) = header["model-index"][0]["results"][:1]
    assert result["dataset"]["type"] == "acme/tickets" and result["dataset"]["split"] == "test"
    assert result["dataset"]["revision"] == COMMIT
    assert f"`acme/tickets` at revision `{COMMIT[:12]}`, split `train`" in card


def test_a_commit_asked_for_that_the_cache_does_not_hold_is_refused(tmp_path, tiny_bert, offline_cache):
    recipe = load_recipe(_recipe(tmp_path, tiny_bert, dataset="acme/tickets", dataset_revision="f" * 40))
    with pytest.raises(TextxferError, match=f"the copy found .* is commit {COMMIT}"):
        load_splits(recipe.data, 1)


@pytest.mark.parametrize("data, message", [
    ({"dataset": "acme/missing"}, r"The dataset acme/missing .* is not in the local datasets cache .*\(offline\)"),
    ({"dataset": "acme/tickets", "dataset_test_split": "holdout"},
     r"The dataset acme/tickets has no split `holdout` \(`data.dataset_test_split`\); its splits are: train, "
     r"validation, test"),
    ({"dataset": "acme/tickets", "dataset_train_split": "training"}, r"has no split `training`"),
    ({"dataset": "acme/tickets", "label_column": "intent"},
     r"The train split of the dataset acme/tickets has no column `intent` .* its columns are: text, label"),
    ({"dataset": "acme/tickets", "dataset_validation_split": "train"}, r"names the training split `train`"),
    ({"dataset": "acme/tickets", "dataset_config": "other"},
     r"The dataset acme/tickets has no configuration `other` \(`data.dataset_config`\) in the local cache: choose "
     r"one of \['default'\]"),
])
def test_a_missing_dataset_split_or_column_is_one_error_naming_it(tmp_path, offline_cache, data, message):
    with pytest.raises(TextxferError, match=message):
        load_splits(DataConfig(**data), 1)


def test_a_folder_that_does_not_exist_and_a_dataset_with_files_are_refused(tmp_path, tiny_bert):
    with pytest.raises(TextxferError, match="is neither a folder here .* nor a Hugging Face Hub dataset id"):
        load_splits(DataConfig(dataset=str(tmp_path / "nowhere")), 1)
    with pytest.raises(TextxferError, match="sets `data.dataset` and `data.train`"):
        load_recipe(_recipe(tmp_path, tiny_bert, dataset="acme/tickets", train=str(SAMPLES / "tickets_small.csv")))


def test_integer_labels_without_names_are_said_and_named_by_number(tmp_path, tickets):
    plain = DatasetDict({name: split.cast_column("label", Value("int64")) for name, split in tickets.items()})
    plain.save_to_disk(str(tmp_path / "plain"))
    splits = load_splits(DataConfig(dataset=str(tmp_path / "plain")), 1)
    assert splits.labels.labels == [str(i) for i in range(10)]
    assert any("holds integers without names" in note and "ClassLabel" in note for note in splits.notes)


def test_a_split_without_labels_is_not_used_as_test(tmp_path, tickets):
    hidden = tickets["test"].map(lambda row: {"label": -1})  # a benchmark's hidden test labels
    DatasetDict({"train": tickets["train"], "test": hidden}).save_to_disk(str(tmp_path / "hidden"))
    splits = load_splits(DataConfig(dataset=str(tmp_path / "hidden")), 1)
    assert splits.test is None and splits.dataset["splits"]["test"] is None
    assert any("the test split of the dataset" in note and "has no labels" in note for note in splits.notes)
