"""`textxfer select RUN_DIR POOL -n 200 --strategy margin -o to_label.csv`: the unlabeled texts to label next.

The run's classifier scores every text of POOL (calibrated probabilities); the strategy ranks them
(`textxfer.analysis.active_learning`: random, least_confidence, entropy, margin, margin_kmeans) and the
first `n` are written with the pool's columns as they are, plus `rank` (1 = label first), the
`suggested_label` and its `score`, so a person labeling them starts from the model's guess. Texts that
are already labeled (the run's train/validation/test files, and `--labeled` files), equal to one after
normalisation (case, whitespace and Unicode folded), are left out, as is every repeat inside the pool
after its first occurrence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..analysis.active_learning import NEEDS_EMBEDDINGS, check_strategy, rank
from ..analysis.features import FrozenEncoder
from ..config import load_recipe
from ..data.audit_checks import normalise
from ..data.splits import load_splits, read_texts
from ..data.tables_out import added_names, check_output_path, note_renamed, output_format, write_table
from ..errors import TextxferError
from ..evaluation.abstention import decided_confidence
from ..inference import load_classifier
from ..log import get_logger, note
from ..runs.info import RunInfo

log = get_logger("select")


@dataclass
class Selection:
    """What `select_to_label` did: rows written, pool rows read, and those left out."""

    written: int
    pool: int
    already_labeled: int
    repeats: int


def _key(text: str, pair: str | None) -> str:
    return normalise(text) if pair is None else f"{normalise(text)}\t{normalise(pair)}"


def _run_recipe(run_dir: Path, info: RunInfo) -> Path:
    """The recipe.yaml that names the run's data (an ensemble's: its first member's)."""
    path = run_dir / "recipe.yaml"
    if not path.is_file() and info.is_ensemble and info.members:
        path = run_dir / info.members[0]["folder"] / "recipe.yaml"
    if not path.is_file():
        raise TextxferError(f"{run_dir} has no recipe.yaml, so the texts it was trained on are unknown and cannot be "
                            f"left out of the selection. Give the output_dir of a run written by `textxfer train`.")
    return path


def labeled_keys(run_dir: Path, info: RunInfo, files: list, text_column, pair_column) -> set[str]:
    """The normalised texts already labeled: the run's train, validation and test rows, and the rows of
    the `files`, read with the pool's text column(s)."""
    recipe = load_recipe(_run_recipe(run_dir, info))
    try:
        splits = load_splits(recipe.data, recipe.train.seed)
    except TextxferError as exc:
        raise TextxferError(f"`textxfer select` leaves out the texts {run_dir} was trained and tested on, read from the "
                            f"files its recipe.yaml names, and those cannot be read: {exc}") from None
    keys = set()
    for split in (splits.train, splits.validation, splits.test):
        if split is not None:
            pairs = split["text_pair"] if "text_pair" in split.column_names else [None] * len(split)
            keys.update(_key(t, p) for t, p in zip(split["text"], pairs))
    for path in files:
        texts, pairs, _ = read_texts(path, text_column, text_pair_column=pair_column)
        keys.update(_key(t, p) for t, p in zip(texts, pairs or [None] * len(texts)))
    return keys


def select_to_label(run_dir: str | Path, pool: str | Path, output: str | Path, n: int, strategy: str = "margin",
                    seed: int = 0, text_column=None, pair_column: str | None = None, labeled=(),
                    escape_formulas: bool = True) -> Selection:
    """Rank POOL's texts by `strategy` with the run's classifier and write the first `n` (see the module
    notes); returns the counts."""
    check_strategy(strategy)
    if not isinstance(n, int) or n <= 0:
        raise TextxferError(f"`-n` (how many texts to pick) must be a positive integer; got {n}.")
    run_dir = Path(run_dir)
    check_output_path(output, [pool, *labeled])
    info = RunInfo.read(run_dir, "`textxfer select`")
    if info.multi_label:
        raise TextxferError(f"{run_dir} is a multi-label run; `textxfer select` ranks single-label runs, whose "
                            f"probabilities say how torn the model is between two classes. Select with a single-label "
                            f"run, or label by another rule.")
    text_column = text_column or info.text_column
    pair_column = pair_column or info.text_pair_column
    texts, pairs, table = read_texts(pool, text_column, text_pair_column=pair_column)
    known = labeled_keys(run_dir, info, list(labeled), text_column, pair_column)
    kept, seen, already, repeats = [], set(), 0, 0
    for i, text in enumerate(texts):
        key = _key(text, pairs[i] if pairs is not None else None)
        if key in known:
            already += 1
        elif key in seen:
            repeats += 1
        else:
            seen.add(key)
            kept.append(i)
    if not kept:
        raise TextxferError(f"Every text of {pool} is already labeled (in the run's train/validation/test files or "
                            f"--labeled) or a repeat, so there is nothing to select.")
    if n > len(kept):
        note(log, f"-n {n} asks for more texts than the {len(kept)} left to label in {pool}; writing them all")
    kept_texts = [texts[i] for i in kept]
    kept_pairs = [pairs[i] for i in kept] if pairs is not None else None
    classifier = load_classifier(run_dir)
    probs = classifier.predict_proba(kept_texts, kept_pairs)
    embeddings = None
    if strategy in NEEDS_EMBEDDINGS:
        encoder = FrozenEncoder.of_run(_member(run_dir, info), _member_info(run_dir, info))
        embeddings = encoder.encode(kept_texts, kept_pairs, info.eval_batch_size, "features (pool)").numpy()
    order = rank(probs, strategy, n, seed, embeddings)
    rows = [kept[i] for i in order]
    decided = classifier.decide(probs[order])
    score = decided_confidence(probs[order], decided)
    delimited = output_format(output) in ("csv", "tsv")
    wanted = ["rank", "suggested_label", "score"]
    names = added_names(wanted, table.column_names)
    note_renamed(wanted, names, str(pool))
    picked = table.select(rows)
    columns = picked.to_dict() if len(picked.column_names) else {}
    values = [list(range(1, len(rows) + 1)), [classifier.labels[k] for k in decided],
              [f"{v:.6f}" for v in score] if delimited else [round(float(v), 6) for v in score]]
    write_table(output, {**columns, **dict(zip(names, values))}, escape_formulas)
    return Selection(len(rows), len(texts), already, repeats)


def _member(run_dir: Path, info: RunInfo) -> Path:
    """The run whose features a pool is clustered on (an ensemble's first member)."""
    return run_dir / info.members[0]["folder"] if info.is_ensemble and info.members else run_dir


def _member_info(run_dir: Path, info: RunInfo) -> RunInfo:
    return RunInfo.read(_member(run_dir, info)) if info.is_ensemble and info.members else info
