"""Length-bucketed batches: every example once per epoch, little padding, reshuffled per epoch."""
import random

import pytest

import torch

from textxfer.data.batching import (LengthBucketBatchSampler, PadCollator, TokenizedDataset, TokenNoise, eval_loader,
                               train_loader)


def lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 100) for _ in range(n)]


def test_every_index_exactly_once_per_epoch():
    sampler = LengthBucketBatchSampler(lengths(1003), batch_size=32, seed=1)
    for epoch in range(3):
        sampler.start_epoch(epoch)
        batches = list(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))
        assert len(batches) == len(sampler) == 32
        assert all(len(b) == 32 for b in batches[:-1]) and len(batches[-1]) == 1003 % 32


def test_batches_group_similar_lengths():
    ls = lengths()
    sampler = LengthBucketBatchSampler(ls, batch_size=32, seed=1)
    padded_bucketed = sum(32 * max(ls[i] for i in b) for b in sampler)
    rng = random.Random(0)
    order = list(range(len(ls)))
    rng.shuffle(order)
    padded_random = sum(32 * max(ls[i] for i in order[k:k + 32]) for k in range(0, len(order), 32))
    assert padded_bucketed < 0.7 * padded_random


def test_shuffle_is_seeded_and_changes_with_the_epoch():
    a, b = LengthBucketBatchSampler(lengths(), 16, seed=5), LengthBucketBatchSampler(lengths(), 16, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.start_epoch(1)
    assert list(a) != first


def test_collator_pads_to_the_longest_in_the_batch_on_either_side():
    examples = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "label": 1},
                {"input_ids": [8], "attention_mask": [1], "label": 0}]
    right = PadCollator(pad_token_id=0)(examples)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["labels"].tolist() == [1, 0]
    left = PadCollator(pad_token_id=9, padding_side="left")(examples)
    assert left["input_ids"].tolist() == [[5, 6, 7], [9, 9, 8]]


def test_eval_loader_is_length_sorted_and_order_restores_inputs():
    import datasets

    data = datasets.Dataset.from_dict({"input_ids": [[1] * n for n in (3, 9, 1, 5)],
                                       "attention_mask": [[1] * n for n in (3, 9, 1, 5)], "label": [0, 1, 2, 3]})
    loader, order = eval_loader(TokenizedDataset(data), batch_size=2, collate=PadCollator(0))
    batches = list(loader)
    assert [b["input_ids"].shape[1] for b in batches] == [9, 3]
    labels = torch.cat([b["labels"] for b in batches]).tolist()
    assert [labels[order.index(i)] for i in range(4)] == [0, 1, 2, 3]


@pytest.mark.parametrize("rows,shards", [(61, 2), (64, 2), (65, 4), (9, 3), (100, 8)])
def test_batches_split_evenly_over_processes_without_repeats(rows, shards):
    """Under N processes batch i goes to process i mod N: the count must divide by N, with no repeats."""
    lengths = [random.Random(i).randint(1, 40) for i in range(rows)]
    sampler = LengthBucketBatchSampler(lengths, 8, seed=0, num_shards=shards)
    batches = sampler.batches()
    assert len(batches) % shards == 0 and len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(rows))


def _noisy_batches(noise, epoch=0, seed=3):
    """All batches of one epoch of 200 texts ([CLS]=101 ... [SEP]=102, 5-40 tokens) through train_loader."""
    rng = random.Random(0)
    ids = [[101] + [rng.randint(1000, 2000) for _ in range(rng.randint(3, 38))] + [102] for _ in range(200)]
    dataset = TokenizedDataset({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids],
                                "label": [i % 3 for i in range(200)], "doc": list(range(200))})
    loader, sampler = train_loader(dataset, 16, seed, PadCollator(0), noise=noise)
    sampler.start_epoch(epoch)
    return list(loader), ids


def test_token_noise_masks_about_its_share_of_real_tokens_and_never_special_ones_or_padding():
    clean, ids = _noisy_batches(None)
    noisy, _ = _noisy_batches(TokenNoise(0.15, mask_token_id=103, special_ids=(0, 101, 102, 103)))
    masked = maskable = 0
    for c, n in zip(clean, noisy):
        assert torch.equal(c["labels"], n["labels"]) and torch.equal(c["attention_mask"], n["attention_mask"])
        changed = c["input_ids"] != n["input_ids"]
        assert (n["input_ids"][changed] == 103).all()  # replaced by the mask token, nothing else
        real = (c["attention_mask"] == 1) & (c["input_ids"] != 101) & (c["input_ids"] != 102)
        assert not changed[~real].any()  # [CLS], [SEP] and padding stay
        masked, maskable = masked + changed.sum().item(), maskable + real.sum().item()
    assert 0.12 < masked / maskable < 0.18, masked / maskable


def test_token_noise_is_the_same_for_the_same_batch_and_epoch_and_changes_with_the_epoch():
    """Seeded by the batch and the epoch, not by global RNG state: a resumed run masks as the
    uninterrupted one did, whatever else drew random numbers in between."""
    noise = TokenNoise(0.15, mask_token_id=103, special_ids=(0, 101, 102))
    first, _ = _noisy_batches(noise)
    torch.rand(1000)
    again, _ = _noisy_batches(noise)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again))
    later, _ = _noisy_batches(noise, epoch=1)
    # epoch 1 shuffles differently: compare each text's masking between the epochs
    rows0 = {d: r for b in first for d, r in zip(b["doc"].tolist(), b["input_ids"])}
    rows1 = {d: r for b in later for d, r in zip(b["doc"].tolist(), b["input_ids"])}
    differ = sum(not torch.equal(rows0[d][rows0[d] != 0], rows1[d][rows1[d] != 0]) for d in rows0)
    assert differ > 100


def test_no_token_noise_at_probability_zero():
    clean, _ = _noisy_batches(None)
    zero, _ = _noisy_batches(TokenNoise(0.0, mask_token_id=103, special_ids=(0, 101, 102)))
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(clean, zero))
