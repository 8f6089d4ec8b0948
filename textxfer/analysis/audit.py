"""The whole data audit of a recipe: the exact checks (`textxfer.data.audit_checks`), token lengths,
near-duplicates across splits on frozen features, and optionally label errors by confident learning.

`audit_recipe(recipe, ...)` reads the recipe's splits as `textxfer train` would (same seed, so the same
validation rows) and returns an `Audit`; `textxfer.analysis.audit_report` writes it out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Recipe
from ..data.audit_checks import LEAK_PAIRS, ExactFindings, Row, find_exact, leak_name, summary
from ..data.splits import load_splits
from ..errors import TextxferError
from ..log import get_logger
from ..models.loading import build_tokenizer
from .features import FrozenEncoder
from .label_errors import confident_learning, out_of_fold_probabilities
from .lengths import length_report
from .neighbours import nearest

log = get_logger("audit")

DEFAULT_THRESHOLD = 0.95


@dataclass
class NearDuplicate:
    """A held-out row and its most similar row in the split it is searched in (not an exact copy)."""

    finding: str  # e.g. test_in_train
    row: Row
    nearest: Row
    similarity: float
    matches: int  # rows of the searched split at or above the threshold


@dataclass
class LabelIssue:
    rank: int
    row: Row
    suggested: str
    confidence: float  # p(suggested), out of fold
    given_probability: float


@dataclass
class Audit:
    """What the audit found: the exact findings, and the model-based ones it was asked for."""

    findings: ExactFindings
    report: dict
    long_rows: list = field(default_factory=list)  # (Row, tokens), longest first
    near_duplicates: list[NearDuplicate] | None = None
    label_issues: list[LabelIssue] | None = None


def check_threshold(threshold: float) -> None:
    """Refuse a near-duplicate threshold that is not a cosine similarity in (0, 1]."""
    if not 0 < threshold <= 1:
        raise TextxferError(f"`--near-duplicate-threshold` is {threshold:g}, but it is a cosine similarity between "
                            f"two texts' embeddings: give a number in (0, 1], e.g. {DEFAULT_THRESHOLD} (1 finds only "
                            f"texts whose embeddings are identical).")


def check_folds(folds: int) -> None:
    if folds < 2:
        raise TextxferError(f"`--folds` is {folds}, but out-of-fold probabilities need at least 2 folds (5 is usual).")


def audit_recipe(recipe: Recipe, threshold: float = DEFAULT_THRESHOLD, near_duplicates: bool = True,
                 label_errors: bool = False, folds: int = 5) -> Audit:
    """Audit the recipe's data; the backbone runs once over every text when a model-based check is asked for."""
    check_threshold(threshold)
    check_folds(folds)
    if label_errors and recipe.data.multi_label:
        raise TextxferError("`--label-errors` supports single-label recipes: confident learning ranks one given "
                            "label per row against the others. Leave it out for multi-label data (`data.multi_label`).")
    splits = load_splits(recipe.data, recipe.train.seed)
    found = find_exact(splits)
    report = summary(found, splits.labels.labels)
    tokenizer = build_tokenizer(recipe.model)
    lengths, long_rows = length_report(found.rows, tokenizer, recipe.data, _max_length(recipe, tokenizer))
    report["lengths"] = lengths
    result = Audit(found, report, long_rows)
    if not (near_duplicates or label_errors):
        return result
    encoder = FrozenEncoder.pretrained(recipe.model, recipe.data.max_length)
    log.info(f"embedding {sum(len(r) for r in found.rows.values())} texts with {encoder.name}")
    features = _features(encoder, found.rows, recipe.train.eval_batch_size)
    report["features"] = encoder.name
    if near_duplicates:
        result.near_duplicates = _near_duplicates(found, features, threshold)
        report["near_duplicates"] = {"threshold": threshold, **{
            name: sum(1 for d in result.near_duplicates if d.finding == name)
            for name in (leak_name(a, b) for a, b in LEAK_PAIRS if a in features and b in features)}}
    if label_errors:
        result.label_issues, report["label_errors"] = _label_issues(found, features, splits.labels.labels, folds,
                                                                    recipe.train.seed)
    return result


def _max_length(recipe: Recipe, tokenizer) -> int:
    limit = getattr(tokenizer, "model_max_length", None)
    return min(recipe.data.max_length, limit) if limit and limit < 1_000_000 else recipe.data.max_length


def _features(encoder: FrozenEncoder, rows: dict[str, list[Row]], batch_size: int) -> dict[str, torch.Tensor]:
    """Every split's features, the backbone run once over all texts."""
    every = [r for split_rows in rows.values() for r in split_rows]
    pairs = [r.pair for r in every] if every and every[0].pair is not None else None
    encoded = encoder.encode([r.text for r in every], pairs, batch_size)
    out, start = {}, 0
    for split, split_rows in rows.items():
        out[split] = encoded[start:start + len(split_rows)]
        start += len(split_rows)
    return out


def _near_duplicates(found: ExactFindings, features: dict, threshold: float) -> list[NearDuplicate]:
    """Held-out rows with a row at or above `threshold` in the split searched; exact copies (reported as
    leakage) left out. Most similar first."""
    out = []
    for searched, held_out in LEAK_PAIRS:
        if searched not in features or held_out not in features:
            continue
        hits = nearest(features[held_out], features[searched], threshold)
        for i in torch.nonzero(hits.similarity >= threshold).flatten().tolist():
            row, match = found.rows[held_out][i], found.rows[searched][int(hits.index[i])]
            if row.key != match.key:
                out.append(NearDuplicate(leak_name(searched, held_out), row, match, float(hits.similarity[i]),
                                         int(hits.above[i])))
    return sorted(out, key=lambda d: -d.similarity)


def _label_issues(found: ExactFindings, features: dict, labels: list[str], folds: int,
                  seed: int) -> tuple[list[LabelIssue], dict]:
    """Confident learning over every labelled row of every split, on out-of-fold probabilities."""
    rows = [r for split_rows in found.rows.values() for r in split_rows]
    x = torch.cat([features[split] for split in found.rows])
    index = {label: i for i, label in enumerate(labels)}
    given = np.asarray([index[r.labels[0]] for r in rows])
    log.info(f"label errors: {folds}-fold out-of-fold probabilities of a linear head on {len(rows)} rows")
    oof = out_of_fold_probabilities(x, given, len(labels), folds, seed)
    issues = confident_learning(oof.probabilities, given)
    listed = [LabelIssue(rank, rows[i], labels[s], float(p), float(g)) for rank, (i, s, p, g) in enumerate(
        zip(issues.rows, issues.suggested, issues.suggested_probability, issues.given_probability), 1)]
    return listed, {"rows_checked": len(rows), "folds": folds, "head_l2": oof.l2,
                    "out_of_fold_accuracy": oof.accuracy, "flagged": len(listed),
                    "estimated_error_rate": issues.estimated_error_rate,
                    "per_split": {split: sum(1 for i in listed if i.row.split == split) for split in found.rows}}
