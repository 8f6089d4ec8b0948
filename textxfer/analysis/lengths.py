"""Texts longer than the recipe's `data.max_length` tokens: how many, and what `data.long_text` does to them."""
from __future__ import annotations

import math

import numpy as np

from ..config import DataConfig
from ..data.audit_checks import Row


def token_counts(rows: list[Row], tokenizer) -> list[int]:
    """Tokens per row as the model would see them uncut (special tokens and the pair text included)."""
    if not rows:
        return []
    texts = [r.text for r in rows]
    pairs = [r.pair for r in rows] if rows[0].pair is not None else None
    encoded = tokenizer(texts, pairs, truncation=False, verbose=False) if pairs else tokenizer(texts, truncation=False,
                                                                                               verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def windows(length: int, max_length: int, special: int, stride: int, max_chunks: int | None) -> int:
    """Windows `data.long_text=chunks` makes of a text of `length` tokens (the tokenizer's overflow rule:
    each window holds `max_length - special` text tokens and shares `stride` with the one before)."""
    budget = max(max_length - special, 1)
    step = max(budget - stride, 1)
    count = 1 + math.ceil(max(length - special - budget, 0) / step)
    return min(count, max_chunks) if max_chunks else count


def length_report(rows_by_split: dict[str, list[Row]], tokenizer, cfg: DataConfig, max_length: int) -> tuple[dict, list]:
    """Per split: token length quantiles and the texts past `max_length`; what `long_text` does with them.
    Returns the JSON report and the long rows as (row, tokens), longest first."""
    special = tokenizer.num_special_tokens_to_add(pair=cfg.text_pair_column is not None)
    report = {"max_length": max_length, "long_text": cfg.long_text, "splits": {}}
    long_rows = []
    for split, rows in rows_by_split.items():
        counts = np.asarray(token_counts(rows, tokenizer))
        over = np.flatnonzero(counts > max_length)
        entry = {"median_tokens": float(np.median(counts)), "p95_tokens": float(np.percentile(counts, 95)),
                 "max_tokens": int(counts.max()), "over_max_length": len(over), "share_over": len(over) / len(rows)}
        if cfg.long_text == "chunks":
            entry["windows"] = int(sum(windows(int(c), max_length, special, cfg.stride, cfg.max_chunks) for c in counts))
        else:
            entry["share_of_tokens_cut"] = float(np.clip(counts - max_length, 0, None).sum() / max(counts.sum(), 1))
        report["splits"][split] = entry
        long_rows += [(rows[i], int(counts[i])) for i in over]
    report["effect"] = _effect(cfg, max_length)
    return report, sorted(long_rows, key=lambda pair: -pair[1])


def _effect(cfg: DataConfig, max_length: int) -> str:
    if cfg.long_text == "chunks":
        cap = f", at most {cfg.max_chunks} per text" if cfg.max_chunks else ""
        return (f"data.long_text=chunks: a longer text is scored as overlapping windows of {max_length} tokens "
                f"({cfg.stride} shared{cap}), their logits combined by {cfg.chunk_aggregation}")
    if cfg.long_text == "head_tail":
        return (f"data.long_text=head_tail: a longer text keeps its first quarter and its last three quarters of the "
                f"{max_length}-token budget; the middle is cut")
    return (f"data.long_text=truncate: a longer text keeps its first {max_length} tokens; the rest is never seen "
            f"(`data.long_text=head_tail` or `chunks` keep more of it)")
