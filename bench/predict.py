"""textxfer batch prediction vs ``transformers.pipeline("text-classification")`` on one saved model.

    python bench/predict.py --run runs/banking77-full --repeats 3 --out docs/benchmarks_predict.md

Every variant classifies the same texts (the run's test file, or ``--texts``) with the same saved
model, in its own child process, alternately over the repeats; the report gives medians:

- (p1) ``pipeline("text-classification", model=RUN)`` called on the list of texts with its
  defaults (batch size 1), which is what most scripts do;
- (p64) the same pipeline with ``batch_size=64`` (padding to the longest text of each batch);
- (t) textxfer: ``load_classifier(RUN).predict(texts)`` (batches of 64 sorted by length, so each
  batch pads to similar lengths, under ``torch.inference_mode``).

Timed: the prediction call only, after one warm-up call on 64 texts; model loading is reported
separately. Both truncate at the run's ``max_length``. Accuracy against the file's labels and the
agreement between each variant's labels and textxfer's are reported too, so a speed-up cannot
come from computing something else.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import _common as common

VARIANTS = {
    "p1": "(p1) pipeline, default batch size 1",
    "p64": "(p64) pipeline, batch_size=64",
    "t": "(t) textxfer load_classifier().predict",
}


def read_texts(run: Path, texts_file: str | None) -> tuple[list[str], list[str], str]:
    """Texts and labels of `--texts`, else of the run's test file (from its recipe.yaml)."""
    import yaml

    recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    path = texts_file or recipe["data"].get("test")
    if not path or not Path(path).is_file():
        sys.exit(f"bench/predict.py: no text file to classify ({path!r}); pass --texts FILE (CSV with the run's text "
                 f"and label columns).")
    text_col, label_col = recipe["data"].get("text_column", "text"), recipe["data"].get("label_column", "label")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r[text_col] for r in rows], [r.get(label_col, "") for r in rows], path


def child(variant: str, run: Path, texts_file: str | None, out: Path) -> None:
    """Load the model the variant's way, classify every text, write labels and timings to `out`."""
    import torch

    texts, labels, _ = read_texts(run, texts_file)
    info = json.loads((run / "textxfer.json").read_text(encoding="utf-8"))
    started = time.perf_counter()
    if variant == "t":
        from textxfer import load_classifier

        clf = load_classifier(run, device="cpu")
        load_seconds = time.perf_counter() - started

        def predict(batch):
            return clf.predict(batch)
    else:
        from transformers import pipeline

        pipe = pipeline("text-classification", model=str(run), device="cpu")
        load_seconds = time.perf_counter() - started
        kwargs = {"truncation": True, "max_length": info["max_length"]}
        if variant == "p64":
            kwargs["batch_size"] = 64

        def predict(batch):
            return [r["label"] for r in pipe(batch, **kwargs)]
    predict(texts[:64])  # warm-up: first-call allocations and lazy initialisation
    started = time.perf_counter()
    predicted = predict(texts)
    seconds = time.perf_counter() - started
    out.write_text(json.dumps({"predicted": predicted}), encoding="utf-8")
    accuracy = sum(p == y for p, y in zip(predicted, labels)) / len(labels)
    common.emit_result({"texts": len(texts), "predict_seconds": seconds, "texts_per_second": len(texts) / seconds,
                        "load_seconds": load_seconds, "accuracy": accuracy, "threads": torch.get_num_threads()})


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", default="runs/banking77-full",
                   help="a textxfer run folder of a full (or merged) model; make the default one with "
                        "`textxfer train recipes/banking77_full.yaml`")
    p.add_argument("--texts", default=None, help="CSV to classify (default: the run's test file)")
    p.add_argument("--variants", default="p1,p64,t", help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the variants, run alternately")
    p.add_argument("--out", default=None, help="write the markdown report here (atomically)")
    p.add_argument("--json", default=None, help="write every run's result as JSON here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variant_list or any(v not in VARIANTS for v in args.variant_list):
        p.error(f"--variants: choose from {','.join(VARIANTS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    run = Path(args.run)
    if args.child:
        child(args.child, run, args.texts, Path(args.child_out))
        return 0
    if not (run / "textxfer.json").is_file() or not (run / "config.json").is_file():
        sys.exit(f"bench/predict.py: {run} is not a finished full-model textxfer run (it needs textxfer.json and "
                 f"config.json; feature_extraction and adapter runs do not load in a pipeline). Train one with "
                 f"`textxfer train recipes/banking77_full.yaml`, or merge an adapter run with `textxfer merge`.")
    texts, _, texts_path = read_texts(run, args.texts)
    records = []
    with tempfile.TemporaryDirectory(prefix="textxfer-bench-predict-") as tmp:
        tmp = Path(tmp)
        for repeat in range(args.repeats):
            for variant in args.variant_list:
                print(f"bench/predict.py: repeat {repeat + 1}/{args.repeats}: {VARIANTS[variant]}", flush=True)
                out = tmp / f"{variant}-{repeat}.json"
                cmd = [sys.executable, __file__, "--child", variant, "--child-out", str(out), "--run", str(run)]
                if args.texts:
                    cmd += ["--texts", args.texts]
                result = common.run_child(cmd, env=common.child_env("cpu"), cwd=common.REPO_ROOT,
                                          log_prefix=tmp / f"{variant}-{repeat}", timeout=3600)
                if result.returncode != 0 or result.result is None:
                    sys.exit(f"bench/predict.py: {VARIANTS[variant]} failed (exit {result.returncode}):\n"
                             f"{result.stderr_tail()}")
                predicted = json.loads(out.read_text(encoding="utf-8"))["predicted"]
                records.append({"variant": variant, "repeat": repeat, **result.result,
                                "peak_rss_mb": result.peak_rss_mb, "wall_seconds": result.wall_seconds,
                                "foreign_cpu_seconds": result.foreign_cpu_seconds, "predicted": predicted})
    reference = next((r["predicted"] for r in records if r["variant"] == "t"), None)
    report = render(args, records, reference, texts_path, len(texts))
    print(report)
    if args.out:
        common.atomic_write_text(args.out, report)
    if args.json:
        slim = [{k: v for k, v in r.items() if k != "predicted"} for r in records]
        common.atomic_write_text(args.json, json.dumps({"machine": common.machine_info(), "runs": slim}, indent=2))
    return 0


def render(args, records, reference, texts_path, n_texts) -> str:
    """The markdown report: medians per variant, ratios to textxfer, agreement with textxfer."""
    machine = common.machine_info()
    med = {v: {k: common.median_or_none(r[k] for r in records if r["variant"] == v)
               for k in ("texts_per_second", "load_seconds", "peak_rss_mb", "accuracy")} for v in args.variant_list}
    rows = []
    for v in args.variant_list:
        preds = next(r["predicted"] for r in records if r["variant"] == v)
        agree = sum(a == b for a, b in zip(preds, reference)) / len(preds) if reference else None
        speed = med["t"]["texts_per_second"] / med[v]["texts_per_second"] if "t" in med else None
        rows.append([VARIANTS[v], common.fmt(med[v]["texts_per_second"]), common.fmt(speed, 2) + "x",
                     common.fmt(med[v]["load_seconds"], 2), common.fmt(med[v]["peak_rss_mb"], 0),
                     common.fmt(med[v]["accuracy"], 4), common.fmt(100 * agree, 2) + "%" if agree is not None else "n/a"])
    table = common.markdown_table(["variant", "texts/s", "textxfer speed-up", "load s", "peak RSS MB",
                                   "accuracy", "same label as textxfer"], rows)
    every = common.markdown_table(
        ["#", "variant", "texts/s", "other processes' CPU s"],
        [[str(i + 1), VARIANTS[r["variant"]], common.fmt(r["texts_per_second"]), common.fmt(r["foreign_cpu_seconds"])]
         for i, r in enumerate(records)])
    return "\n".join([
        "## Prediction: textxfer vs `transformers.pipeline`", "",
        f"`{common.display_command(sys.argv)}`", "",
        f"- model: run `{args.run}`; texts: `{texts_path}` ({n_texts} texts); CPU, {machine['usable_cores']} cores "
        f"({machine['cpu_model']}), torch {machine['versions']['torch']}, transformers {machine['versions']['transformers']}",
        f"- {args.repeats} repeat(s), variants alternated; medians; the prediction call is timed after a 64-text warm-up",
        "", table, "", "Every run, in order:", "", every, ""])


if __name__ == "__main__":
    sys.exit(main())
