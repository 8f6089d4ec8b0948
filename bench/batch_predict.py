"""Batch prediction at scale: peak memory of `textxfer predict` on a generated 1M-row file (streamed in
chunks vs read whole), and int8 vs float32 ONNX on Banking77 test.

    python bench/batch_predict.py --run runs/b77-full --out docs/benchmarks_batch_predict.md

1. Peak RSS. A CSV of `--rows` rows (default 1,000,000: Banking77 train texts repeated, with an id column)
   is classified by `textxfer predict` in a child process, twice: with the default `--chunk-rows 20000`
   (the file streams through) and with `--chunk-rows` = all rows (the whole file in memory at once, what
   textxfer did before chunking). The model is a tiny random BERT (2 layers, hidden 32, the MiniLM
   vocabulary) trained for one epoch on the demo tickets: what is measured is the data path, and a real
   MiniLM would need about an hour of 2-core CPU for a million texts. Peak RSS is the child's own
   (`os.wait4`), wall time includes start-up.
2. int8. `textxfer export-onnx RUN OUT --quantize int8` on a real run (`--run`, e.g. full MiniLM on
   Banking77): the export checks the float graph against PyTorch, then measures the int8 graph against
   it on the run's labeled test texts, and writes accuracy, ONNX Runtime seconds and file sizes of both
   to onnx_check.json, which this script reports.
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

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated file")
    p.add_argument("--run", help="a full (or merged) run folder for the int8 measurement (skipped without one)")
    p.add_argument("--out", help="write the markdown report here")
    return p.parse_args(argv)


def _textxfer() -> str:
    return str(Path(sys.executable).with_name("textxfer"))


def _tiny_run(work: Path) -> Path:
    """A tiny random BERT, trained one epoch on the demo tickets by `textxfer train`."""
    import torch
    from transformers import AutoModel, BertConfig, BertTokenizer

    from textxfer.models.embedded import resolve_model_path

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    AutoModel.from_config(config).save_pretrained(work / "tiny-bert")
    BertTokenizer.from_pretrained(resolve_model_path("minilm-l6")).save_pretrained(work / "tiny-bert")
    run = work / "tiny-run"
    command = [_textxfer(), "train", str(ROOT / "recipes/tickets_minilm.yaml"), f"model.name={work / 'tiny-bert'}",
               "train.epochs=1", "data.max_length=32", f"output_dir={run}", "train.calibration=none"]
    done = common.run_child(command, env=common.child_env("cpu"), cwd=ROOT, log_prefix=work / "train", timeout=1800)
    if done.returncode:
        raise SystemExit(f"training the tiny run failed:\n{done.stderr_tail()}")
    return run


def _big_file(path: Path, rows: int) -> None:
    source = ROOT / "data/banking77/train.csv"
    if not source.is_file():
        raise SystemExit("needs the Banking77 export: python -m textxfer.samples banking77 data/banking77")
    with source.open(encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, texts[i % len(texts)]])


def peak_rss(work: Path, rows: int) -> list[dict]:
    """`textxfer predict` on the big file, streamed and whole."""
    run = _tiny_run(work)
    source = work / "big.csv"
    _big_file(source, rows)
    results = []
    for label, chunk in (("streamed (--chunk-rows 20000, the default)", 20_000), ("whole file at once", rows)):
        out = work / f"out-{chunk}.csv"
        command = [_textxfer(), "predict", str(run), str(source), "-o", str(out), "--chunk-rows", str(chunk)]
        done = common.run_child(command, env=common.child_env("cpu"), cwd=ROOT, log_prefix=work / f"predict-{chunk}",
                                timeout=7200)
        if done.returncode:
            raise SystemExit(f"predict failed:\n{done.stderr_tail()}")
        results.append({"how": label, "rows": rows, "wall_s": done.wall_seconds, "peak_rss_mb": done.peak_rss_mb,
                        "rows_per_s": rows / done.wall_seconds, "foreign_cpu_s": done.foreign_cpu_seconds,
                        "input_mb": source.stat().st_size / 2**20, "output_mb": out.stat().st_size / 2**20})
        out.unlink()
    return results


def int8(work: Path, run: str) -> dict:
    out = work / "onnx-int8"
    command = [_textxfer(), "export-onnx", run, str(out), "--quantize", "int8"]
    done = common.run_child(command, env=common.child_env("cpu"), cwd=ROOT, log_prefix=work / "int8", timeout=3600)
    if done.returncode:
        raise SystemExit(f"export-onnx --quantize int8 failed:\n{done.stderr_tail()}")
    check = json.loads((out / "onnx_check.json").read_text(encoding="utf-8"))
    return {**check["int8"], "pytorch_seconds": check["pytorch_seconds"], "wall_s": done.wall_seconds}


def report(rss: list[dict], quantized: dict | None, argv: list[str]) -> str:
    machine = common.machine_info()
    lines = [f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, {machine['ram_gib']} GiB; "
             f"torch {machine['versions']['torch']}, transformers {machine['versions']['transformers']}; "
             f"{time.strftime('%Y-%m-%d')}. Command: `{common.display_command(argv)}`.", ""]
    lines += ["| `textxfer predict` on a generated file | rows | input | peak RSS | wall | rows/s |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in rss:
        lines.append(f"| {r['how']} | {r['rows']:,} | {r['input_mb']:.0f} MB | **{r['peak_rss_mb']:,.0f} MiB** | "
                     f"{r['wall_s']:.0f} s | {r['rows_per_s']:,.0f} |")
    if quantized:
        q = quantized
        lines += ["", "| ONNX on the run's test texts | accuracy | ONNX Runtime time | file |", "|---|---:|---:|---:|",
                  f"| float32 | {q['float_accuracy']:.4f} | {q['float_onnx_seconds']:.2f} s | {q['float_megabytes']:.1f} MB |",
                  f"| int8 (dynamic) | {q['int8_accuracy']:.4f} | {q['int8_onnx_seconds']:.2f} s | {q['int8_megabytes']:.1f} MB |",
                  "", f"{q['texts']} texts; int8 loses {q['drop_points']:+.2f} accuracy points, makes the same decision "
                  f"for {100 * q['agreement']:.2f}% of texts, and runs {q['float_onnx_seconds'] / q['int8_onnx_seconds']:.2f}x "
                  f"as fast as float32 in ONNX Runtime (PyTorch fp32 on the same batches: {q['pytorch_seconds']:.2f} s)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        rss = peak_rss(work, args.rows)
        quantized = int8(work, args.run) if args.run else None
    text = report(rss, quantized, ["bench/batch_predict.py", *(sys.argv[1:] if argv is None else argv)])
    print(text)
    if args.out:
        common.atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
