"""Tokenization and batching: length-bucketed training batches with dynamic padding.

Texts are tokenized once, in batches, with the fast tokenizer, and never padded in storage.
Training batches group texts of similar length (shuffled within and across buckets, seeded per
epoch), so padding is small without giving up randomness. Evaluation runs in length-sorted order.
"""
from __future__ import annotations

import os

import random
import zlib
from array import array
from dataclasses import dataclass
from typing import Iterator

import datasets
import torch
from torch.utils.data import DataLoader, Dataset

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

datasets.disable_progress_bars()  # the per-call `map` bar of tokenizing is noise, in the CLI and in Python


class InMemoryTable:
    """What `tokenize` asks of a `datasets.Dataset` (its column names and a batched
    `map` with indices), on plain lists: one call of the function over all rows, no Arrow table and no
    fingerprint."""

    def __init__(self, columns: dict[str, list]):
        self.columns = columns
        self.column_names = list(columns)

    def map(self, function, batched: bool = True, with_indices: bool = False, **_ignored) -> dict[str, list]:
        """The function applied to every row at once (`tokenize` always maps batched, with indices)."""
        if not batched:
            raise TypeError("InMemoryTable maps batched functions only")
        rows = len(next(iter(self.columns.values()))) if self.columns else 0
        return function(self.columns, list(range(rows))) if with_indices else function(self.columns)


def tokenize(dataset: datasets.Dataset, tokenizer, max_length: int, long_text: str = "truncate",
             stride: int = 0, max_chunks: int | None = None) -> datasets.Dataset:
    """Tokenize `text` (+ `text_pair`) unpadded; add a `doc` column with each row's source row index.

    `long_text` says what happens past `max_length` tokens: `truncate` keeps the start, `head_tail`
    keeps the first quarter and the last three quarters of the budget (the ends of long documents
    carry most of their signal), `chunks` emits overlapping windows (`stride` shared tokens, at most
    `max_chunks` evenly spaced ones) that share their document's `doc` and label.
    """

    def encode(batch, indices):
        texts, pairs = batch["text"], batch.get("text_pair")
        if long_text == "head_tail":
            texts = _head_tail(tokenizer, texts, pairs, max_length)
        kwargs = {"truncation": "only_first" if pairs is not None else True, "max_length": max_length}
        if long_text == "chunks":
            kwargs.update(stride=stride, return_overflowing_tokens=True)
        encoded = tokenizer(texts, pairs, **kwargs) if pairs is not None else tokenizer(texts, **kwargs)
        encoded = {k: v for k, v in encoded.items() if k in MODEL_INPUTS or k == "overflow_to_sample_mapping"}
        source = encoded.pop("overflow_to_sample_mapping", list(range(len(texts))))
        keep = _spread(source, max_chunks) if long_text == "chunks" and max_chunks else range(len(source))
        out = {k: [v[i] for i in keep] for k, v in encoded.items()}
        out["doc"] = [indices[source[i]] for i in keep]
        if "label" in batch:
            out["label"] = [batch["label"][source[i]] for i in keep]
        return out

    # A fingerprint of our own: without one, `map` hashes `encode` (the tokenizer included) with dill on every
    # call, ~0.1 s for a BERT vocabulary, which is most of a short `predict` call. Nothing is cached anyway.
    return dataset.map(encode, batched=True, with_indices=True, batch_size=1000, new_fingerprint=os.urandom(8).hex(),
                       remove_columns=dataset.column_names, desc="tokenizing", load_from_cache_file=False)


def _head_tail(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> list[str]:
    """Texts cut to their head and tail tokens (by character offsets) so they fit `max_length`."""
    special = tokenizer.num_special_tokens_to_add(pair=pairs is not None)
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    pair_lengths = ([len(ids) for ids in tokenizer(pairs, add_special_tokens=False)["input_ids"]]
                    if pairs is not None else [0] * len(texts))
    out = []
    for text, offsets, pair_length in zip(texts, encoded["offset_mapping"], pair_lengths):
        budget = max(max_length - special - pair_length, 2)
        if len(offsets) <= budget:
            out.append(text)
            continue
        head = budget // 4
        tail = budget - head
        out.append(text[:offsets[head - 1][1]] + " " + text[offsets[-tail][0]:] if head else text[offsets[-tail][0]:])
    return out


def _spread(source: list[int], max_chunks: int) -> list[int]:
    """Window positions to keep: at most `max_chunks` evenly spaced windows per document, ends included."""
    by_doc: dict[int, list[int]] = {}
    for position, doc in enumerate(source):
        by_doc.setdefault(doc, []).append(position)
    keep = []
    for positions in by_doc.values():
        if len(positions) <= max_chunks:
            keep += positions
        elif max_chunks == 1:
            keep.append(positions[0])
        else:
            step = (len(positions) - 1) / (max_chunks - 1)
            keep += sorted({positions[round(k * step)] for k in range(max_chunks)})
    return sorted(keep)


class TokenizedDataset(Dataset):
    """Tokenized examples held as Python lists: indexing is a cheap list lookup, not an Arrow read."""

    def __init__(self, dataset: datasets.Dataset | dict[str, list]):
        # plain lists: fast to index (a datasets Column reads Arrow per item)
        data = dataset if isinstance(dataset, dict) else dataset.to_dict()
        self.columns = {c: data[c] for c in (*MODEL_INPUTS, "label", "doc") if c in data}
        self.lengths = [len(ids) for ids in self.columns["input_ids"]]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict:
        return {name: values[index] for name, values in self.columns.items()}


class LengthBucketBatchSampler:
    """Batches of indices with similar lengths, reshuffled every epoch from `seed + epoch`.

    Indices are shuffled, cut into windows of `batch_size * bucket_factor`, each window is sorted
    by length and cut into batches, and the batches are shuffled. Every index appears exactly once
    per epoch, unless `weights` are given: then each epoch draws as many indices, with replacement,
    in proportion to the weights (oversampling rare classes).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket_factor: int = 50,
                 weights: list[float] | None = None, num_shards: int = 1):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.weights = weights
        self.num_shards = num_shards
        self.epoch = 0

    def start_epoch(self, epoch: int) -> None:
        """Choose the shuffle of the coming epoch (call before iterating).

        Deliberately not named `set_epoch`: Accelerate calls `set_epoch(n)` on batch samplers with its
        own count of loader iterations, which restarts at 0 for a resumed (batch-skipping) loader and
        would then replay the wrong epoch's order.
        """
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """The epoch's batches, in order."""
        rng = random.Random(self.seed + self.epoch)
        if self.weights is not None:
            order = rng.choices(range(len(self.lengths)), weights=self.weights, k=len(self.lengths))
        else:
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
        return _divisible(full + last, self.num_shards)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        return min(-(-n // self.num_shards) * self.num_shards, len(self.lengths)) if self.num_shards > 1 else n


def _divisible(batches: list[list[int]], num_shards: int) -> list[list[int]]:
    """Split the last batches until their count is a multiple of `num_shards`.

    Under N processes batch i goes to process i mod N, and every process must take the same number
    of steps. Accelerate would otherwise repeat examples from the start of the epoch to even the
    count; splitting the tail instead keeps every example exactly once per epoch.
    """
    batches = list(batches)
    while len(batches) % num_shards and any(len(b) > 1 for b in batches):
        # split the largest of the trailing batches (the short tail first)
        tail = range(max(0, len(batches) - num_shards), len(batches))
        i = max(tail, key=lambda k: len(batches[k]))
        if len(batches[i]) < 2:
            i = max(range(len(batches)), key=lambda k: len(batches[k]))
        half = len(batches[i]) // 2
        batches[i:i + 1] = [batches[i][:half], batches[i][half:]]
    return batches


class PadCollator:
    """Pad a list of tokenized examples to the longest in the batch.

    With `position_ids=True` it also passes positions counted over real tokens only, so a model
    sees the same positions whether the batch is padded on the left or on the right (models that
    default to 0..n-1 would otherwise shift every left-padded text).
    """

    def __init__(self, pad_token_id: int, padding_side: str = "right", position_ids: bool = False):
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.position_ids = position_ids

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
        if self.position_ids:
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        if "label" in examples[0]:
            labels = [e["label"] for e in examples]
            # Multi-label targets are multi-hot rows; BCE wants them as floats.
            batch["labels"] = torch.tensor(labels, dtype=torch.float if isinstance(labels[0], list) else torch.long)
        if "doc" in examples[0]:
            batch["doc"] = torch.tensor([e["doc"] for e in examples])
        return batch


def balanced_weights(labels: list) -> list[float]:
    """Per-example sampling weights that give every class the same expected share of an epoch.

    Multi-label rows (multi-hot lists) take the weight of their rarest label.
    """
    if labels and isinstance(labels[0], list):
        counts = [sum(column) for column in zip(*labels)]
        return [max(1.0 / counts[j] for j, on in enumerate(row) if on) if any(row) else 1.0 / len(labels)
                for row in labels]
    counts: dict = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [1.0 / counts[label] for label in labels]


@dataclass(frozen=True)
class TokenNoise:
    """Input noise for training batches (a noisy student's): each real token that is not a special
    token is replaced by `mask_token_id` with probability `probability`."""

    probability: float
    mask_token_id: int
    special_ids: tuple[int, ...]


class MaskingCollator:
    """A collator that pads as `collate` does, then masks tokens as `noise` says.

    The draw for a batch is seeded from `seed`, the sampler's epoch and the batch's documents and
    lengths, never from a global RNG: a run resumed mid-epoch masks each batch exactly as the
    uninterrupted run did, and the same example is masked differently in each epoch.
    """

    def __init__(self, collate: PadCollator, noise: TokenNoise, sampler: LengthBucketBatchSampler, seed: int):
        self.collate, self.noise, self.sampler, self.seed = collate, noise, sampler, seed
        self.special_ids = torch.tensor(noise.special_ids, dtype=torch.long)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.collate(examples)
        ids = batch["input_ids"]
        key = array("q", [self.seed, self.sampler.epoch, *(e["doc"] for e in examples),
                          *(len(e["input_ids"]) for e in examples)])
        generator = torch.Generator().manual_seed(zlib.crc32(key.tobytes()))
        maskable = batch["attention_mask"].bool() & ~torch.isin(ids, self.special_ids)
        hit = (torch.rand(ids.shape, generator=generator) < self.noise.probability) & maskable
        batch["input_ids"] = ids.masked_fill(hit, self.noise.mask_token_id)
        return batch


def train_loader(dataset: TokenizedDataset, batch_size: int, seed: int, collate: PadCollator,
                 weights: list[float] | None = None, num_shards: int = 1, noise: TokenNoise | None = None):
    """A DataLoader of length-bucketed, shuffled batches; returns (loader, sampler) for `start_epoch`.

    `num_shards` (the number of processes) makes the batch count a multiple of it, so that every
    example is seen exactly once per epoch across processes. `noise` masks tokens of every batch
    (see MaskingCollator).
    """
    sampler = LengthBucketBatchSampler(dataset.lengths, batch_size, seed, weights=weights, num_shards=num_shards)
    if noise is not None and noise.probability > 0:
        collate = MaskingCollator(collate, noise, sampler, seed)
    # Its own generator: otherwise every new iterator draws a seed from the global torch RNG, and a
    # resumed run (whose RNG state is restored before the iterator exists) would shift dropout noise.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, generator=generator), sampler


def length_sorted(dataset: TokenizedDataset) -> list[int]:
    """Indices from longest to shortest: equal-length neighbours pad little, and the biggest batch comes first."""
    return sorted(range(len(dataset)), key=lambda i: -dataset.lengths[i])


def input_order(order: list[int]) -> torch.Tensor:
    """The permutation that puts outputs made in `order` (length-sorted) back in input order."""
    restore = torch.empty(len(order), dtype=torch.long)
    restore[torch.tensor(order)] = torch.arange(len(order))
    return restore


def eval_loader(dataset: TokenizedDataset, batch_size: int, collate: PadCollator):
    """A DataLoader over length-sorted examples; returns (loader, order) where `order[k]` is the
    original index of the k-th example yielded, to put predictions back in input order."""
    order = length_sorted(dataset)
    subset = torch.utils.data.Subset(dataset, order)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate), order
