"""Active learning: which unlabeled texts to label next, from a classifier's probabilities (and, for the
diversity-aware strategy, the texts' frozen embeddings).

The uncertainty measures follow small-text (Schröder et al. 2023, `small_text.query_strategies`):

- `least_confidence`: 1 - max p, highest first;
- `entropy`: -sum p log p, highest first;
- `margin`: p1 - p2 (the two highest probabilities), smallest first (small-text's `BreakingTies`);
- `margin_kmeans`: the 10·n texts of smallest margin, clustered by k-means on their embeddings into n
  clusters; from each cluster its smallest-margin text, so one batch is not n copies of one confusion
  (the margin variant of Zhdanov 2019, "Diverse mini-batch active learning"). The picks are ranked by margin;
- `random`: a seeded permutation, the baseline every strategy has to beat.

Ties keep the earlier row, and every random step is seeded, so a ranking is reproducible.
`rank(probs, strategy, n, seed, embeddings)` returns the rows to label, first to label first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.splits import per_class_sample
from ..errors import TextxferError
from ..methods import get_method, method_names

STRATEGIES = ("random", "least_confidence", "entropy", "margin", "margin_kmeans")
DEFAULT_STRATEGIES = ("random", "margin", "margin_kmeans")
CANDIDATES_PER_PICK = 10  # margin_kmeans clusters the 10·n most uncertain texts into n clusters
NEEDS_EMBEDDINGS = ("margin_kmeans",)


def check_strategy(name: str) -> str:
    """`name` if it is a strategy; else a one-paragraph error listing them."""
    if name not in STRATEGIES:
        raise TextxferError(f"Unknown active-learning strategy {name!r}; choose from {', '.join(STRATEGIES)} "
                            f"(margin: the smallest gap between the two top scores first; margin_kmeans: the same, "
                            f"spread over k-means clusters of the texts' embeddings).")
    return name


def parse_strategies(text: str | None) -> list[str]:
    """`--strategies` for active learning: comma-separated names (default: random,margin,margin_kmeans)."""
    if text is None:
        return list(DEFAULT_STRATEGIES)
    names = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not names:
        raise TextxferError(f"`--strategies` names no strategy; choose from {', '.join(STRATEGIES)}.")
    return [check_strategy(name) for name in names]


@dataclass(frozen=True)
class Retrain:
    """What the simulation retrains each round: `head` (a linear head on cached frozen features),
    `self_training` (that head, self-trained on the pool's unlabeled rows) or `run` (a real training
    run of `method` through the normal train path). `name` is what the user wrote."""

    kind: str
    name: str
    method: str | None = None


def parse_retrain(text: str) -> list[Retrain]:
    """`--retrain`: comma-separated, each `self_training` or a method of the registry. A method that fits
    a head on cached features is retrained as one in memory; any other gets a real run per round."""
    choices = f"self_training, {', '.join(method_names())}"
    out = []
    for name in dict.fromkeys(s.strip() for s in (text or "").split(",") if s.strip()):
        if name == "self_training":
            out.append(Retrain("self_training", name))
        elif name in method_names():
            out.append(Retrain("head", name) if get_method(name).caches_features else Retrain("run", name, name))
        else:
            raise TextxferError(f"Unknown `--retrain` choice {name!r}; choose from {choices} (comma-separated).")
    if not out:
        raise TextxferError(f"`--retrain` names nothing to retrain; choose from {choices}.")
    return out


def _top2(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if probs.shape[1] < 2:
        return probs[:, 0], np.zeros(len(probs))
    part = -np.partition(-probs, 1, axis=1)[:, :2]
    return part[:, 0], part[:, 1]


def margins(probs: np.ndarray) -> np.ndarray:
    """p1 - p2 per row: the gap between the two most probable classes (small: the model hesitates)."""
    p1, p2 = _top2(np.asarray(probs, dtype=np.float64))
    return p1 - p2


def uncertainty(probs: np.ndarray, strategy: str) -> np.ndarray:
    """How uncertain the model is about each row by `strategy`'s measure (higher: label it sooner):
    1 - max p, the entropy, or minus the margin."""
    p = np.asarray(probs, dtype=np.float64)
    if strategy == "least_confidence":
        return 1.0 - p.max(axis=1)
    if strategy == "entropy":
        return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1)
    if strategy in ("margin", "margin_kmeans"):
        return -margins(p)
    raise TextxferError(f"{strategy!r} has no uncertainty measure; choose from least_confidence, entropy, margin.")


def most_uncertain(scores: np.ndarray, n: int) -> np.ndarray:
    """The `n` rows of highest `scores`, highest first; ties keep the earlier row."""
    return np.argsort(-scores, kind="stable")[:n]


def kmeans_picks(margin: np.ndarray, embeddings: np.ndarray, n: int, seed: int) -> np.ndarray:
    """margin_kmeans on candidate rows: k-means (k = n, seeded) on their embeddings, then each cluster's
    smallest-margin row; ranked by margin, smallest first. An empty cluster's place goes to the next
    smallest margin not yet picked."""
    from sklearn.cluster import KMeans

    if n >= len(margin):
        return np.argsort(margin, kind="stable")
    clusters = KMeans(n_clusters=n, n_init=3, random_state=seed).fit_predict(np.asarray(embeddings, dtype=np.float64))
    order = np.argsort(margin, kind="stable")
    picked, seen = [], set()
    for row in order:  # the first row met of a cluster, in margin order, is its most uncertain
        if clusters[row] not in seen:
            seen.add(clusters[row])
            picked.append(row)
    chosen = set(picked)
    picked += [row for row in order if row not in chosen][:n - len(picked)]
    return np.array(sorted(picked, key=lambda row: (margin[row], row)), dtype=np.int64)


def rank(probs: np.ndarray, strategy: str, n: int, seed: int = 0, embeddings: np.ndarray | None = None) -> np.ndarray:
    """The (at most) `n` rows of `probs` to label next by `strategy`, first to label first.

    `embeddings` (one row per row of `probs`) are needed by `margin_kmeans`; `seed` seeds `random` and
    the k-means clustering."""
    check_strategy(strategy)
    if n <= 0:
        raise TextxferError(f"The number of texts to pick must be a positive integer; got {n}.")
    total = len(probs)
    n = min(n, total)
    if strategy == "random":
        return np.random.default_rng(seed).permutation(total)[:n]
    if strategy == "margin_kmeans":
        if embeddings is None or len(embeddings) != total:
            raise TextxferError("margin_kmeans clusters the texts' embeddings: give one embedding per row.")
        margin = margins(probs)
        candidates = np.argsort(margin, kind="stable")[:CANDIDATES_PER_PICK * n]
        return candidates[kmeans_picks(margin[candidates], np.asarray(embeddings)[candidates], n, seed)]
    return most_uncertain(uncertainty(probs, strategy), n)


def per_class_start(labels: list[int], per_class: int, seed: int) -> list[int]:
    """Seeded, stratified: `per_class` row indices of every class (all of a smaller class), sorted. The
    draw of `textxfer compare`'s per-class sampler (`data.splits.per_class_sample`), so a seed starts
    from the rows a compare cell of that budget trains on."""
    return per_class_sample(labels, per_class, seed)
