"""Feature extraction on full Banking77, end to end: textxfer vs a frozen-backbone Trainer.

    python bench/feature_extraction.py --out docs/benchmarks_feature_extraction.md

- (t) textxfer: `textxfer train recipes/banking77_feature_extraction.yaml` in a child process:
  load, tokenize, embed every text once (features cached), fit the head on the cached features,
  evaluate on validation each epoch and on the test set, write the run folder. Timed end to end
  (interpreter start to exit), with textxfer's own phase timings from metrics.json.
- (f) `transformers.Trainer` with `requires_grad=False` on the whole base model (the usual way to
  do feature extraction with Trainer), `DataCollatorWithPadding`, the same learning rate and batch
  size: every epoch runs the backbone forward over every text again. Run for `--trainer-epochs`
  (default 3, because 40 epochs take most of an hour on 2 cores); its per-epoch time is reported and
  also projected to `--projected-epochs` (40: what a minibatch-trained head needs, textxfer's `sgd`
  head default), marked as a projection.

Needs the Banking77 export: `python -m textxfer.samples banking77 data/banking77`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import _common as common

RECIPE = "recipes/banking77_feature_extraction.yaml"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe", default=RECIPE, help="textxfer feature-extraction recipe")
    p.add_argument("--repeats", type=int, default=2, help="textxfer runs (medians reported)")
    p.add_argument("--trainer-epochs", type=float, default=3, help="epochs of the frozen-backbone Trainer run (0 = skip)")
    p.add_argument("--trainer-lr", type=float, default=3e-3,
                   help="Trainer learning rate (textxfer's `sgd` head default; its L-BFGS head has none)")
    p.add_argument("--projected-epochs", type=int, default=40,
                   help="epochs the Trainer's time is projected to: what a minibatch-trained head needs "
                        "(textxfer's `sgd` head default)")
    p.add_argument("--out", default=None, help="write the markdown report here (atomically)")
    p.add_argument("--json", default=None, help="write every run's figures as JSON here")
    return p.parse_args(argv)


def _recipe(path: str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def run_textxfer(args, tmp: Path, repeat: int) -> dict:
    out_dir = tmp / f"textxfer-{repeat}"
    cmd = [sys.executable, "-m", "textxfer", "train", args.recipe, f"output_dir={out_dir}"]
    run = common.run_child(cmd, env=common.child_env("cpu"), cwd=common.REPO_ROOT, log_prefix=tmp / f"t{repeat}",
                           timeout=3600)
    if run.returncode != 0:
        sys.exit(f"bench/feature_extraction.py: textxfer failed (exit {run.returncode}):\n{run.stderr_tail()}")
    metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    return {"variant": "t", "wall_seconds": run.wall_seconds, "peak_rss_mb": run.peak_rss_mb,
            "foreign_cpu_seconds": run.foreign_cpu_seconds, "test_accuracy": metrics["test"]["accuracy"],
            "test_macro_f1": metrics["test"]["macro_f1"], "epochs": metrics["train"]["epochs_run"],
            "train_seconds": metrics["train"]["wall_seconds"], "timings": metrics["train"].get("timings", {})}


def run_trainer(args, tmp: Path, recipe: dict, epochs: int) -> dict:
    model = common.default_model_dir()
    cmd = [sys.executable, str(Path(__file__).with_name("trainer_baseline.py")), "--padding", "dynamic",
           "--freeze-backbone", "--train", recipe["data"]["train"], "--test", recipe["data"]["test"],
           "--model", str(model), "--epochs", str(args.trainer_epochs), "--lr", str(args.trainer_lr),
           "--batch-size", str(recipe.get("train", {}).get("batch_size", 32)), "--eval-batch-size", "64",
           "--max-length", str(recipe["data"].get("max_length", 128)), "--seed", "0"]
    run = common.run_child(cmd, env=common.child_env("cpu"), cwd=common.REPO_ROOT, log_prefix=tmp / "trainer",
                           timeout=7200)
    if run.returncode != 0 or run.result is None:
        sys.exit(f"bench/feature_extraction.py: the Trainer run failed (exit {run.returncode}):\n{run.stderr_tail()}")
    r = run.result
    per_epoch = r["train_runtime"] / args.trainer_epochs
    fixed = run.wall_seconds - r["train_runtime"]
    return {"variant": "f", "wall_seconds": run.wall_seconds, "peak_rss_mb": run.peak_rss_mb,
            "foreign_cpu_seconds": run.foreign_cpu_seconds, "test_accuracy": r["test_accuracy"],
            "test_macro_f1": r["test_macro_f1"], "epochs": args.trainer_epochs, "train_seconds": r["train_runtime"],
            "seconds_per_epoch": per_epoch, "projected_wall_seconds": fixed + per_epoch * epochs}


def main(argv=None) -> int:
    args = parse_args(argv)
    recipe = _recipe(args.recipe)
    for key in ("train", "test"):
        if not Path(recipe["data"][key]).is_file():
            sys.exit(f"bench/feature_extraction.py: {recipe['data'][key]} (data.{key} of {args.recipe}) is missing; "
                     f"export it with `python -m textxfer.samples banking77 data/banking77`.")
    records = []
    with tempfile.TemporaryDirectory(prefix="textxfer-bench-fe-") as tmp:
        tmp = Path(tmp)
        for repeat in range(args.repeats):
            print(f"bench/feature_extraction.py: textxfer run {repeat + 1}/{args.repeats}", flush=True)
            records.append(run_textxfer(args, tmp, repeat))
        if args.trainer_epochs:
            print(f"bench/feature_extraction.py: frozen-backbone Trainer, {args.trainer_epochs:g} epoch(s)", flush=True)
            records.append(run_trainer(args, tmp, recipe, args.projected_epochs))
    report = render(args, records)
    print(report)
    if args.out:
        common.atomic_write_text(args.out, report)
    if args.json:
        common.atomic_write_text(args.json, json.dumps({"machine": common.machine_info(), "runs": records}, indent=2))
    return 0


def render(args, records) -> str:
    machine = common.machine_info()
    ours = [r for r in records if r["variant"] == "t"]
    wall = common.median_or_none(r["wall_seconds"] for r in ours)
    acc = common.median_or_none(r["test_accuracy"] for r in ours)
    phases = {k: common.median_or_none(r["timings"].get(k) for r in ours) for k in ours[0]["timings"]}
    rows = [["(t) textxfer, features cached once, L-BFGS head", f"{ours[0]['epochs']} L2 fits", common.fmt(wall), "",
             common.fmt(common.median_or_none(r["peak_rss_mb"] for r in ours), 0), common.fmt(acc, 4),
             common.fmt(common.median_or_none(r["test_macro_f1"] for r in ours), 4)]]
    for r in records:
        if r["variant"] == "f":
            rows.append([f"(f) Trainer, frozen base model", f"{r['epochs']:g}", common.fmt(r["wall_seconds"]),
                         f"{common.fmt(r['projected_wall_seconds'])} (projected, {args.projected_epochs} epochs at "
                         f"{common.fmt(r['seconds_per_epoch'])} s/epoch)",
                         common.fmt(r["peak_rss_mb"], 0), common.fmt(r["test_accuracy"], 4),
                         common.fmt(r["test_macro_f1"], 4)])
    table = common.markdown_table(["variant", "epochs", "end-to-end s", "Trainer at the projected epochs", "peak RSS MB",
                                   "test acc", "test macro-F1"], rows)
    phase_lines = [f"- {k.replace('_', ' ')}: {common.fmt(v)} s" for k, v in phases.items() if v is not None]
    every = common.markdown_table(["#", "variant", "end-to-end s", "test acc", "other processes' CPU s"],
                                  [[str(i + 1), r["variant"], common.fmt(r["wall_seconds"]), common.fmt(r["test_accuracy"], 4),
                                    common.fmt(r["foreign_cpu_seconds"])] for i, r in enumerate(records)])
    return "\n".join([
        "## Feature extraction on full Banking77, end to end", "",
        f"`{common.display_command(sys.argv)}`", "",
        f"- recipe `{args.recipe}`; CPU, {machine['usable_cores']} cores ({machine['cpu_model']}), "
        f"torch {machine['versions']['torch']}, transformers {machine['versions']['transformers']}",
        f"- end-to-end = the child process from interpreter start to exit (imports, loading, tokenization, "
        f"embedding, head fitting, validation, test prediction, plots, writing the run folder); "
        f"textxfer median of {len(ours)} run(s)", "", table, "",
        "textxfer's phases (median, from metrics.json `train.timings`):", "", *phase_lines, "",
        "Every run, in order:", "", every, ""])


if __name__ == "__main__":
    sys.exit(main())
