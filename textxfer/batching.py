"""Tokenization and batching: length-bucketed training batches with dynamic padding.

Texts are tokenized once, in batches, with the fast tokenizer, and never padded in storage.
Training batches group texts of similar length (shuffled within and across buckets, seeded per
epoch), so padding is small without giving up randomness. Evaluation runs in length-sorted order.
"""
from __future__ import annotations

import random
from typing import Iterator

import datasets
import torch
from torch.utils.data import DataLoader, Dataset

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize(dataset: datasets.Dataset, tokenizer, max_length: int) -> datasets.Dataset:
    """Add `input_ids`/`attention_mask` (and `token_type_ids` if the model has them), truncated, unpadded."""

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    return dataset.map(encode, batched=True, batch_size=1000, remove_columns=["text"],
                       desc="tokenizing", load_from_cache_file=False)


class TokenizedDataset(Dataset):
    """Tokenized examples held as Python lists: indexing is a cheap list lookup, not an Arrow read."""

    def __init__(self, dataset: datasets.Dataset):
        data = dataset.to_dict()  # plain lists: fast to index (a datasets Column reads Arrow per item)
        self.columns = {c: data[c] for c in (*MODEL_INPUTS, "label") if c in data}
        self.lengths = [len(ids) for ids in self.columns["input_ids"]]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict:
        return {name: values[index] for name, values in self.columns.items()}


class LengthBucketBatchSampler:
    """Batches of indices with similar lengths, reshuffled every epoch from `seed + epoch`.

    Indices are shuffled, cut into windows of `batch_size * bucket_factor`, each window is sorted
    by length and cut into batches, and the batches are shuffled. Every index appears exactly once
    per epoch.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket_factor: int = 50):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of the coming epoch (call before iterating)."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """The epoch's batches, in order."""
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        window = self.batch_size * self.bucket_factor
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        # Keep the one short batch last so that every other batch is full (distributed sharding
        # and gradient accumulation expect that), and shuffle the rest.
        last = [b for b in batches if len(b) < self.batch_size]
        full = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(full)
        return full + last

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


class PadCollator:
    """Pad a list of tokenized examples to the longest in the batch."""

    def __init__(self, pad_token_id: int, padding_side: str = "right"):
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side

    def __call__(self, examples: list[dict]) -> dict:
        longest = max(len(e["input_ids"]) for e in examples)
        batch = {}
        for name in MODEL_INPUTS:
            if name not in examples[0]:
                continue
            fill = self.pad_token_id if name == "input_ids" else 0
            rows = []
            for e in examples:
                pad = [fill] * (longest - len(e[name]))
                rows.append(e[name] + pad if self.padding_side == "right" else pad + e[name])
            batch[name] = torch.tensor(rows, dtype=torch.long)
        if "label" in examples[0]:
            batch["labels"] = torch.tensor([e["label"] for e in examples])
        return batch


def train_loader(dataset: TokenizedDataset, batch_size: int, seed: int, collate: PadCollator):
    """A DataLoader of length-bucketed, shuffled batches; returns (loader, sampler) for `set_epoch`."""
    sampler = LengthBucketBatchSampler(dataset.lengths, batch_size, seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate), sampler


def length_sorted(dataset: TokenizedDataset) -> list[int]:
    """Indices from longest to shortest: equal-length neighbours pad little, and the biggest batch comes first."""
    return sorted(range(len(dataset)), key=lambda i: -dataset.lengths[i])


def eval_loader(dataset: TokenizedDataset, batch_size: int, collate: PadCollator):
    """A DataLoader over length-sorted examples; returns (loader, order) where `order[k]` is the
    original index of the k-th example yielded, to put predictions back in input order."""
    order = length_sorted(dataset)
    subset = torch.utils.data.Subset(dataset, order)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate), order
