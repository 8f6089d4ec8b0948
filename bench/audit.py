"""How long a full `textxfer audit` of Banking77 train + test takes (near-duplicates included).

    python bench/audit.py [--json audit-bench.json] [--label-errors]

Runs `textxfer audit recipes/banking77_feature_extraction.yaml --output TMP` in a child process
(interpreter start to exit: reading the splits, the exact checks, token lengths, MiniLM-L6 embeddings
of every text, the blocked nearest-neighbour search across splits, writing the files) `--repeats`
times, and reports the wall and CPU time of each run, the CPU time the rest of the machine used
meanwhile (a shared host slows every figure), and the audit's counts. Add `--label-errors` to time
the audit with label errors too. The target (issue 22) is under 2 minutes on a 2-core machine.

Needs the Banking77 export: `python -m textxfer.samples banking77 data/banking77`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import _common as common

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/banking77_feature_extraction.yaml"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe", default=RECIPE, help="recipe whose data is audited (Banking77 train + test)")
    p.add_argument("--repeats", type=int, default=1, help="audits run (each in a fresh process)")
    p.add_argument("--label-errors", action="store_true", help="also time `--label-errors`")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a run is stopped")
    p.add_argument("--json", help="write the figures as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    textxfer = Path(sys.executable).with_name("textxfer")
    env = {**os.environ, **common.OFFLINE_ENV, "TQDM_DISABLE": "1"}
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        for k in range(args.repeats):
            out = Path(tmp) / f"audit-{k}"
            cmd = [str(textxfer), "audit", args.recipe, "--output", str(out),
                   *(["--label-errors"] if args.label_errors else [])]
            load = os.getloadavg()[0]
            child = common.run_child(cmd, env=env, cwd=ROOT, log_prefix=Path(tmp) / f"audit-{k}", timeout=args.timeout)
            if child.returncode != 0:
                print(child.stderr_tail(), file=sys.stderr)
                return 1
            report = json.loads((out / "audit.json").read_text(encoding="utf-8"))
            runs.append({"command": common.display_command(cmd), "wall_seconds": round(child.wall_seconds, 1),
                         "cpu_seconds": round(child.cpu_seconds, 1),
                         "foreign_cpu_seconds": round(child.foreign_cpu_seconds or 0, 1),
                         "load_average_before": round(load, 2), "peak_rss_mb": round(child.peak_rss_mb),
                         "rows": report["rows"], "duplicates": report["duplicates"], "leakage": report["leakage"],
                         "conflicts": report["conflicts"], "near_duplicates": report.get("near_duplicates"),
                         "label_errors": report.get("label_errors")})
            r = runs[-1]
            print(f"run {k + 1}: {r['wall_seconds']} s wall, {r['cpu_seconds']} CPU s (other processes meanwhile: "
                  f"{r['foreign_cpu_seconds']} CPU s, load average {r['load_average_before']} before); "
                  f"rows {r['rows']}; exact test_in_train {r['leakage']['test_in_train']['rows']}; "
                  f"near-duplicates {r['near_duplicates']}", flush=True)
    if args.json:
        common.atomic_write_text(args.json, json.dumps({"machine": common.machine_info(), "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
