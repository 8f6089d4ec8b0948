"""`textxfer shift` on real data: pairs where no shift is expected and pairs where one is.

    python bench/shift.py [--json shift-bench.json]

Trains two `feature_extraction` runs of the embedded MiniLM-L6 (cheap: the backbone runs once):
- `all`: all of Banking77 train (77 intents);
- `group_a`: the Banking77 train rows of the first 38 intents (sorted by name);
then runs `textxfer shift` (`textxfer.commands.shift.shift`, in this process, defaults: up to 5,000
texts per side, 500 permutations) on:
- `all` vs Banking77 test (same distribution: no shift expected);
- `group_a` vs the test rows of the same 38 intents (no shift expected);
- `group_a` vs the test rows of the other 39 intents (shift expected);
- `all` vs data_samples/tickets_test.csv (10 of the 77 intents: a label shift);
- `all` vs data_samples/newsgroups_test.jsonl (another domain).

Needs the Banking77 export: `python -m textxfer.samples banking77 data/banking77`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _common as common

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/banking77_feature_extraction.yaml"
BANKING = ROOT / "data" / "banking77"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--json", help="write the figures as JSON here")
    return p.parse_args(argv)


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write_rows(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def train_run(train: Path, output: Path) -> Path:
    from textxfer import load_recipe, train as train_recipe

    train_recipe(load_recipe(ROOT / RECIPE, [f"data.train={train}", "data.test=null", f"output_dir={output}"]))
    return output


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from textxfer.commands.shift import shift

    train, test = read_rows(BANKING / "train.csv"), read_rows(BANKING / "test.csv")
    intents = sorted({r["label"] for r in train})
    group_a = set(intents[:len(intents) // 2])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-shift-") as tmp:
        tmp = Path(tmp)
        files = {
            "group_a_train": write_rows(tmp / "group_a_train.csv", [r for r in train if r["label"] in group_a]),
            "group_a_test": write_rows(tmp / "group_a_test.csv", [r for r in test if r["label"] in group_a]),
            "group_b_test": write_rows(tmp / "group_b_test.csv", [r for r in test if r["label"] not in group_a]),
        }
        runs = {"all": train_run(BANKING / "train.csv", tmp / "runs" / "all"),
                "group_a": train_run(files["group_a_train"], tmp / "runs" / "group_a")}
        pairs = [("all", BANKING / "test.csv", "no"), ("group_a", files["group_a_test"], "no"),
                 ("group_a", files["group_b_test"], "yes"), ("all", ROOT / "data_samples" / "tickets_test.csv", "yes"),
                 ("all", ROOT / "data_samples" / "newsgroups_test.jsonl", "yes")]
        for k, (run, new, expected) in enumerate(pairs):
            load = os.getloadavg()[0]
            started = time.perf_counter()
            report = shift(runs[run], new, tmp / f"shift-{k}").report
            seconds = time.perf_counter() - started
            name = Path(new).name
            results.append({"run": run, "new_file": name, "shift_expected": expected, "verdict": report["verdict"],
                            "auc": report["classifier_two_sample"]["auc"], "mmd2": report["mmd"]["mmd2"],
                            "mmd_p_value": report["mmd"]["p_value"], "texts": report["texts"],
                            "total_variation": report["labels"]["total_variation"],
                            "grew": report["labels"]["grew"][:3], "shrank": report["labels"]["shrank"][:3],
                            "seconds": round(seconds, 1), "load_average_before": round(load, 2)})
            r = results[-1]
            print(f"{run} vs {name}: {r['verdict']} (expected shift: {expected}); AUC {r['auc']:.3f}, MMD^2 "
                  f"{r['mmd2']:.4f}, p {r['mmd_p_value']:.3g}; label TV {r['total_variation']:.3f}; {seconds:.0f} s",
                  flush=True)
    if args.json:
        common.atomic_write_text(args.json, json.dumps({"machine": common.machine_info(), "pairs": results}, indent=2)
                                 + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
