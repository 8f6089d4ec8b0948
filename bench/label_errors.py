"""How well `textxfer audit --label-errors` finds wrong labels: 5% of Banking77's training labels flipped
at random (seeded), precision and recall of the flagged rows against the flipped ones; then what it
flags on the unmodified labels (the top rows written out, to be read by eye).

    python bench/label_errors.py [--json label-errors.json] [--top top20.md]

Each audit runs as `textxfer audit` does (`textxfer.commands.audit.audit`, in this process) on
`data/banking77/train.csv` alone (10,003 rows; the 10% validation split is drawn from it, so every row
is checked), with the recipe's model (MiniLM-L6, mean-pooled) and 5 folds. Target (issue 22): precision
and recall both >= 0.7.

Needs the Banking77 export: `python -m textxfer.samples banking77 data/banking77`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import _common as common

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/banking77_feature_extraction.yaml"
TRAIN = "data/banking77/train.csv"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train", default=TRAIN, help="labelled CSV (text,label) whose labels are flipped")
    p.add_argument("--share", type=float, default=0.05, help="share of labels flipped")
    p.add_argument("--seed", type=int, default=0, help="seed of the flips")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--top", help="write the 20 rows flagged first on the unmodified labels here (markdown)")
    p.add_argument("--json", help="write the figures as JSON here")
    return p.parse_args(argv)


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def flip(rows: list[dict], share: float, seed: int) -> tuple[list[dict], set[int]]:
    """A copy of `rows` with `share` of the labels changed to another label, uniformly; the flipped rows
    as the audit numbers them (from 1, the header not counted)."""
    labels = sorted({r["label"] for r in rows})
    rng = random.Random(seed)
    chosen = rng.sample(range(len(rows)), round(share * len(rows)))
    out = [dict(r) for r in rows]
    for i in chosen:
        out[i]["label"] = rng.choice([l for l in labels if l != rows[i]["label"]])
    return out, {i + 1 for i in chosen}


def run_audit(train: Path, out: Path, folds: int) -> tuple[list[dict], dict, float]:
    """Audit `train` alone with --label-errors; returns the flagged rows, the report and the seconds."""
    from textxfer.commands.audit import audit
    from textxfer.config import load_recipe

    recipe = load_recipe(ROOT / RECIPE, [f"data.train={train}", "data.test=null", "data.validation=null"])
    started = time.perf_counter()
    result = audit(recipe, str(out), near_duplicates=False, label_errors=True, folds=folds)
    seconds = time.perf_counter() - started
    return read_rows(out / "label_errors.csv"), result.report["label_errors"], seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = read_rows(ROOT / args.train)
    noisy, flipped = flip(rows, args.share, args.seed)
    figures = {"machine": common.machine_info(), "train": args.train, "rows": len(rows), "flipped": len(flipped),
               "seed": args.seed, "folds": args.folds}
    with tempfile.TemporaryDirectory(prefix="bench-label-errors-") as tmp:
        noisy_file = Path(tmp) / "train_flipped.csv"
        with noisy_file.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, ["text", "label"])
            writer.writeheader()
            writer.writerows(noisy)
        load = os.getloadavg()[0]
        flagged, report, seconds = run_audit(noisy_file, Path(tmp) / "flipped", args.folds)
        found = {int(r["row"]) for r in flagged}
        hits = found & flipped
        precision, recall = len(hits) / max(len(found), 1), len(hits) / len(flipped)
        suggested_right = sum(1 for r in flagged if int(r["row"]) in hits
                              and r["suggested_label"] == rows[int(r["row"]) - 1]["label"])
        figures["flipped_run"] = {"flagged": len(found), "true_positives": len(hits), "precision": precision,
                                  "recall": recall, "suggested_the_original_label": suggested_right,
                                  "estimated_error_rate": report["estimated_error_rate"],
                                  "out_of_fold_accuracy": report["out_of_fold_accuracy"], "head_l2": report["head_l2"],
                                  "seconds": round(seconds, 1), "load_average_before": round(load, 2)}
        print(f"5% flipped: {len(found)} flagged, {len(hits)} of {len(flipped)} flips found: precision "
              f"{precision:.3f}, recall {recall:.3f} ({suggested_right} of the found flips suggest the original "
              f"label); out-of-fold accuracy {report['out_of_fold_accuracy']:.3f}; {seconds:.0f} s", flush=True)
        load = os.getloadavg()[0]
        clean_flagged, clean_report, seconds = run_audit(ROOT / args.train, Path(tmp) / "clean", args.folds)
        figures["unmodified_run"] = {"flagged": len(clean_flagged), "estimated_error_rate":
                                     clean_report["estimated_error_rate"],
                                     "out_of_fold_accuracy": clean_report["out_of_fold_accuracy"],
                                     "seconds": round(seconds, 1), "load_average_before": round(load, 2),
                                     "top": clean_flagged[:20]}
        print(f"unmodified labels: {len(clean_flagged)} of {len(rows)} rows flagged "
              f"({clean_report['estimated_error_rate']:.1%} estimated wrong); {seconds:.0f} s", flush=True)
    if args.top:
        lines = ["| rank | row | text | given | suggested | confidence |", "|---:|---:|---|---|---|---:|"]
        lines += [f"| {r['rank']} | {r['row']} | {r['text'].replace('|', '/')} | `{r['given_label']}` | "
                  f"`{r['suggested_label']}` | {float(r['confidence']):.2f} |" for r in clean_flagged[:20]]
        common.atomic_write_text(args.top, "\n".join(lines) + "\n")
    if args.json:
        common.atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
