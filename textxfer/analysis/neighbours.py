"""Exact nearest neighbours by cosine similarity, in blocks: each query's most similar key and how many
keys reach a threshold, without ever holding the whole query-by-key similarity matrix."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# 4,096 x 16,384 similarities: 256 MiB of float32 per block, whatever the sizes of the two sets.
QUERY_BLOCK = 4096
KEY_BLOCK = 16384


@dataclass
class Neighbours:
    """Per query: the index of its most similar key, that similarity, and the keys at or above the threshold."""

    index: torch.Tensor
    similarity: torch.Tensor
    above: torch.Tensor


@torch.inference_mode()
def nearest(queries: torch.Tensor, keys: torch.Tensor, threshold: float) -> Neighbours:
    """The most similar key of every query, for L2-normalised rows (similarity = dot product)."""
    n = len(queries)
    best = torch.full((n,), -2.0)
    index = torch.zeros(n, dtype=torch.long)
    above = torch.zeros(n, dtype=torch.long)
    if n == 0 or len(keys) == 0:
        return Neighbours(index, best, above)
    for q in range(0, n, QUERY_BLOCK):
        block = queries[q:q + QUERY_BLOCK]
        for k in range(0, len(keys), KEY_BLOCK):
            sims = block @ keys[k:k + KEY_BLOCK].T
            value, where = sims.max(dim=1)
            better = value > best[q:q + len(block)]
            best[q:q + len(block)] = torch.where(better, value, best[q:q + len(block)])
            index[q:q + len(block)] = torch.where(better, where + k, index[q:q + len(block)])
            above[q:q + len(block)] += (sims >= threshold).sum(dim=1)
    return Neighbours(index, best, above)
