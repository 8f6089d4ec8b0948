"""The data checks that need no model: exact duplicates, leakage between splits, conflicting labels,
label counts and near-empty texts, on texts compared after normalisation.

`find_exact(splits)` returns `ExactFindings` (the rows of every finding, with the file and row each
comes from); `summary(findings)` the counts, JSON-ready. `textxfer train` runs `guard_leakage` after
the splits are read (`data.leakage`: warn, error or drop_from_train); `textxfer audit` adds the
model-based checks of `textxfer.analysis` to the same findings.
"""
from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DataConfig
from ..errors import TextxferError
from ..log import get_logger, note
from .splits import Origin, Splits

log = get_logger()

NORMALISATION = "Unicode NFKC, case folded, every run of whitespace as one space, ends stripped"
SPLITS = ("train", "validation", "test")
# (the split searched, the split whose rows leak into it): a held-out row whose text the model saw
LEAK_PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))
LISTED_IN_RUN = 200  # groups listed in a run folder's audit.json per finding (`textxfer audit` lists all)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The text as the checks compare it (see NORMALISATION)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@dataclass(frozen=True)
class Row:
    """One example: its split and position there, where it is in its file, its text and labels."""

    split: str
    index: int  # position in the split's dataset
    file: str
    row: int | None  # the data row in `file` as textxfer's messages count it: from 1, the CSV header not counted
    text: str
    pair: str | None
    labels: tuple[str, ...]

    @property
    def key(self) -> str:
        """What two rows must share to be the same example: the normalised text (and pair text)."""
        return normalise(self.text) if self.pair is None else f"{normalise(self.text)}\t{normalise(self.pair)}"


def split_rows(splits: Splits) -> dict[str, list[Row]]:
    """Every example of every split as a `Row`, in the splits' order."""
    names = splits.labels.labels
    out = {}
    for split in SPLITS:
        dataset = getattr(splits, split)
        if dataset is None:
            continue
        origin = splits.origins.get(split) or Origin("", [])
        texts = list(dataset["text"])
        pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else [None] * len(texts)
        ids = list(dataset["label"])
        labels = ([tuple(names[j] for j, on in enumerate(row) if on) for row in ids] if splits.multi_label
                  else [(names[i],) for i in ids])
        rows = origin.rows if len(origin.rows) == len(texts) else [None] * len(texts)
        out[split] = [Row(split, i, origin.path, None if r is None else r + 1, text, pair, label)
                      for i, (r, text, pair, label) in enumerate(zip(rows, texts, pairs, labels))]
    return out


@dataclass
class ExactFindings:
    """What the exact checks found; each group is a list of rows that share one normalised text."""

    rows: dict[str, list[Row]]
    duplicates: dict[str, list[list[Row]]] = field(default_factory=dict)  # per split, groups within it
    leakage: dict[str, list[list[Row]]] = field(default_factory=dict)  # "test_in_train": [[test row, train rows...]]
    conflicts: list[list[Row]] = field(default_factory=list)  # same text, different labels, over all splits
    empty: list[Row] = field(default_factory=list)  # nothing left after normalisation
    one_word: list[Row] = field(default_factory=list)

    def leaked_rows(self, name: str) -> int:
        """Held-out rows of one leakage finding (`test_in_train`, ...)."""
        return len(self.leakage.get(name, []))

    def train_rows_leaking(self) -> list[int]:
        """Positions of the train rows whose text is also in validation or test."""
        return sorted({r.index for name in ("validation_in_train", "test_in_train")
                       for group in self.leakage.get(name, []) for r in group if r.split == "train"})


def leak_name(searched: str, held_out: str) -> str:
    return f"{held_out}_in_{searched}"


def find_exact(splits: Splits) -> ExactFindings:
    """Run the exact checks on the splits."""
    rows = split_rows(splits)
    keys = {split: [r.key for r in members] for split, members in rows.items()}
    found = ExactFindings(rows)
    by_key: dict[str, dict[str, list[Row]]] = {}
    for split, members in rows.items():
        groups: dict[str, list[Row]] = defaultdict(list)
        for row, key in zip(members, keys[split]):
            groups[key].append(row)
        by_key[split] = groups
        found.duplicates[split] = [g for g in groups.values() if len(g) > 1]
    for searched, held_out in LEAK_PAIRS:
        if searched in rows and held_out in rows:
            index = by_key[searched]
            found.leakage[leak_name(searched, held_out)] = [
                [row, *index[key]] for row, key in zip(rows[held_out], keys[held_out]) if key in index]
    everywhere: dict[str, list[Row]] = defaultdict(list)
    for split in rows:
        for key, group in by_key[split].items():
            everywhere[key] += group
    found.conflicts = [g for g in everywhere.values() if len({r.labels for r in g}) > 1]
    for split, members in rows.items():
        for row, key in zip(members, keys[split]):
            words = len(key.split())
            if words == 0:
                found.empty.append(row)
            elif words == 1:
                found.one_word.append(row)
    return found


def label_counts(rows: list[Row]) -> dict[str, int]:
    """Rows per label (a multi-label row counts for each of its labels), most frequent first."""
    return dict(Counter(label for r in rows for label in r.labels).most_common())


def summary(found: ExactFindings, labels: list[str]) -> dict:
    """The counts of every finding, JSON-ready."""
    rows = found.rows
    counts = {split: label_counts(members) for split, members in rows.items()}
    train_counts = {label: counts["train"].get(label, 0) for label in labels}
    largest, smallest = max(train_counts, key=train_counts.get), min(train_counts, key=train_counts.get)
    return {
        "normalisation": NORMALISATION,
        "rows": {split: len(r) for split, r in rows.items()},
        "files": {split: r[0].file for split, r in rows.items() if r},
        "duplicates": {split: {"groups": len(groups), "extra_rows": sum(len(g) - 1 for g in groups)}
                       for split, groups in found.duplicates.items()},
        "leakage": {name: {"rows": len(groups), "share": len(groups) / max(len(rows[name.split("_in_")[0]]), 1)}
                    for name, groups in found.leakage.items()},
        "conflicts": {"groups": len(found.conflicts), "rows": sum(len(g) for g in found.conflicts)},
        "labels": {"counts": counts, "largest": largest, "smallest": smallest,
                   "imbalance_ratio": train_counts[largest] / max(train_counts[smallest], 1)},
        "short_texts": {"empty": dict(Counter(r.split for r in found.empty)),
                        "one_word": dict(Counter(r.split for r in found.one_word))},
    }


def listed(group: list[Row]) -> list[dict]:
    """A group of rows as JSON: where each is, its text and labels."""
    return [{"split": r.split, "file": r.file, "row": r.row, "text": r.text, **({"text_pair": r.pair} if r.pair
            is not None else {}), "labels": list(r.labels)} for r in group]


# --- inside `textxfer train` ----------------------------------------------------------------------

def _leak_sentence(found: ExactFindings) -> str:
    parts = []
    for name, groups in found.leakage.items():
        if groups:
            held_out, searched = name.split("_in_")
            total = len(found.rows[held_out])
            parts.append(f"{len(groups)} of {total} {held_out} rows ({len(groups) / total:.1%}) also occur in {searched}")
    return "; ".join(parts)


def guard_leakage(splits: Splits, cfg: DataConfig, run_dir: str | Path) -> Splits:
    """The exact checks at training time, acting on leakage as `data.leakage` says: `warn` (a warning with
    the counts), `error` (refuse to train) or `drop_from_train` (train without the train rows whose text is
    also held out). Returns the splits (without those rows, if dropped) carrying the summary in `audit`."""
    found = find_exact(splits)
    leaks = _leak_sentence(found)
    where = Path(run_dir) / "audit.json"
    compared = "after normalisation (case, whitespace and Unicode NFKC folded)"
    if leaks and cfg.leakage == "error":
        raise TextxferError(
            f"Held-out rows repeat training rows: {leaks}, {compared}. Scores on rows the model trained on overstate "
            f"it, and `data.leakage=error` refuses to train on such data. Remove those rows from one of "
            f"the files (`textxfer audit RECIPE` lists them, with their files and rows), or set "
            f"`data.leakage=drop_from_train` to train without the train copies.")
    dropped = found.train_rows_leaking() if cfg.leakage == "drop_from_train" else []
    report = summary(found, splits.labels.labels)
    report["leakage_action"] = cfg.leakage
    report["listed"] = {name: [listed(g) for g in groups[:LISTED_IN_RUN]]
                        for name, groups in {**found.leakage, "conflicts": found.conflicts}.items() if groups}
    if dropped:
        splits = drop_train_rows(splits, dropped)
        report["dropped_from_train"] = len(dropped)
        note(log, f"{leaks} {compared}: dropped {len(dropped)} train row(s) holding those texts "
                  f"(data.leakage=drop_from_train), {len(splits.train)} train rows left; they are listed in {where}.")
    elif leaks:
        log.warning(f"{leaks}, {compared}: scores on those rows count what the model saw in training. The rows are "
                    f"listed in {where} (`listed`); set `data.leakage=drop_from_train` to train without the train "
                    f"copies, or `data.leakage=error` to refuse such data. `textxfer audit RECIPE` also finds "
                    f"near-duplicates.")
    if found.conflicts:
        note(log, f"{len(found.conflicts)} text(s) carry different labels in different rows {compared}; listed in "
                  f"{where} (`listed.conflicts`).")
    return dataclasses.replace(splits, audit=report)


def drop_train_rows(splits: Splits, positions: list[int]) -> Splits:
    """The splits without the train rows at `positions`; refuses to leave train empty."""
    drop = set(positions)
    keep = [i for i in range(len(splits.train)) if i not in drop]
    if not keep:
        raise TextxferError(f"Every train row's text also occurs in validation or test, so "
                            f"`data.leakage=drop_from_train` would leave nothing to train on. Give separate data for "
                            f"training and evaluation.")
    origins = dict(splits.origins)
    if "train" in origins:
        origins["train"] = Origin(origins["train"].path, [origins["train"].rows[i] for i in keep])
    return dataclasses.replace(splits, train=splits.train.select(keep), origins=origins)


def card_section(run_dir: str | Path) -> str | None:
    """The model card's paragraph on the run's data checks (`audit.json` of the run folder): counts only,
    never texts. None when the run has no audit (an earlier textxfer, a merged or ensemble folder)."""
    path = Path(run_dir) / "audit.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    leaks = [f"{v['rows']} {name.split('_in_')[0]} row(s) also in {name.split('_in_')[1]}"
             for name, v in report.get("leakage", {}).items() if v.get("rows")]
    action = {"drop_from_train": f"dropped from train: {report.get('dropped_from_train', 0)} row(s)",
              "error": "refused"}.get(report.get("leakage_action"), "kept")
    labels = report.get("labels", {})
    ratio = labels.get("imbalance_ratio", 1.0)
    balance = (f"{ratio:.1f} (`{labels.get('largest')}` / `{labels.get('smallest')}`, the largest and the smallest "
               f"class)" if ratio > 1 else "none (every class has as many rows)")
    return "\n".join([
        "### Data checks", "",
        f"textxfer compared the texts of the splits at training time ({NORMALISATION}):", "",
        f"- repeated texts within train: {report.get('duplicates', {}).get('train', {}).get('extra_rows', 0)}",
        f"- texts shared between splits: " + (f"{'; '.join(leaks)} ({action})" if leaks else "none"),
        f"- texts with conflicting labels: {report.get('conflicts', {}).get('groups', 0)}",
        f"- train imbalance: {balance}",
    ])
