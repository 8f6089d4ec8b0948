"""Plain ``transformers.Trainer`` fine-tuning run, used as the baseline by ``compare_trainer.py``.

It follows transformers' ``examples/pytorch/text-classification/run_classification.py``
(``AutoTokenizer`` + ``AutoModelForSequenceClassification``, ``set_seed`` before the
model is built, ``Trainer.train`` then ``Trainer.predict``) in one of two padding modes:

* ``--padding max_length`` -- the example's default (``pad_to_max_length=True``): every
  text is tokenized with ``padding="max_length", max_length=128, truncation=True`` and
  batches are stacked by ``default_data_collator``;
* ``--padding dynamic`` -- tokenized with truncation only, batches padded to their
  longest member by ``DataCollatorWithPadding`` (the example's ``--pad_to_max_length False``).

Reported on one stdout line prefixed with ``BENCH_RESULT `` (JSON):

* ``train_samples_per_second`` -- Trainer's own figure from ``train()``: samples of the
  schedule / time spent inside the training loop (model loading and tokenization excluded);
* ``eval_texts_per_second`` -- Trainer's ``test_samples_per_second`` from ``predict()`` on the test file;
* ``test_accuracy`` / ``test_macro_f1`` -- computed with numpy / scikit-learn from the
  predictions (no ``evaluate.load``: it would need the Hub);
* phase timings, ``peak_rss_self_mb`` (``getrusage(RUSAGE_SELF).ru_maxrss``) and, on CUDA,
  ``cuda_max_memory_allocated_mb``.

Never touches the network: it sets ``HF_HUB_OFFLINE=1`` and only loads a local model folder.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()  # before the heavy imports, to report their cost

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import OFFLINE_ENV, emit_result, read_tsv, self_peak_rss_mb  # noqa: E402

os.environ.update(OFFLINE_ENV)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

try:  # run_classification.py tokenizes with datasets.Dataset.map; fall back to a list if it is missing
    import datasets  # noqa: E402
except ImportError:  # pragma: no cover - only on hosts without `datasets`
    datasets = None
from sklearn.metrics import f1_score  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the baseline run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--padding", choices=("max_length", "dynamic"), required=True,
                   help="max_length: pad every text to --max-length + default_data_collator (example default); "
                        "dynamic: no padding at tokenization + DataCollatorWithPadding")
    p.add_argument("--train", required=True, help="training TSV/CSV file with columns text,label")
    p.add_argument("--test", required=True, help="test TSV/CSV file with columns text,label")
    p.add_argument("--model", required=True, help="local model folder (config, tokenizer, weights)")
    p.add_argument("--epochs", type=float, default=1.0, help="number of training epochs")
    p.add_argument("--batch-size", type=int, default=32, help="per-device training batch size")
    p.add_argument("--eval-batch-size", type=int, default=None,
                   help="per-device prediction batch size (default: --batch-size)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (AdamW, linear decay)")
    p.add_argument("--seed", type=int, default=0, help="seed for head initialisation and data order")
    p.add_argument("--max-length", type=int, default=128, help="truncation (and max_length padding) length")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device to train on")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (TrainingArguments.bf16)")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="feature extraction the usual Trainer way: requires_grad=False on the whole base model "
                        "(model.base_model), so only the classification head trains, but every epoch still runs "
                        "the backbone forward on every text")
    p.add_argument("--output-dir", default=None,
                   help="Trainer output_dir (nothing is saved; default: a temporary folder)")
    return p.parse_args(argv)


def load_split(path: str) -> tuple[list[str], list[str]]:
    """Read a text/label file; tab-separated for .tsv, comma-separated otherwise."""
    if path.endswith(".tsv"):
        rows = read_tsv(path)
    else:
        import csv

        with open(path, newline="", encoding="utf-8") as fh:
            rows = [(r["text"], r["label"]) for r in csv.DictReader(fh)]
    return [t for t, _ in rows], [lab for _, lab in rows]


def tokenize(tokenizer, texts: list[str], label_ids: list[int], padding: str, max_length: int):
    """Tokenize like run_classification.py's ``preprocess_function``.

    With ``datasets`` installed this is the example's batched ``Dataset.map`` (Arrow-backed
    dataset); without it, the same tokenizer call over all texts into a list of dicts.
    """
    pad = "max_length" if padding == "max_length" else False
    if datasets is not None:
        ds = datasets.Dataset.from_dict({"text": texts, "label": label_ids})

        def preprocess(batch):
            """Tokenize one batch of texts."""
            return tokenizer(batch["text"], padding=pad, max_length=max_length, truncation=True)

        return ds.map(preprocess, batched=True, remove_columns=["text"])
    enc = tokenizer(texts, padding=pad, max_length=max_length, truncation=True)
    return [{**{k: enc[k][i] for k in enc}, "label": label_ids[i]} for i in range(len(texts))]


def main(argv: list[str] | None = None) -> None:
    """Fine-tune, predict on the test file and print the BENCH_RESULT line."""
    args = parse_args(argv)
    t_imports = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    transformers.logging.set_verbosity_error()  # the 'newly initialized classifier' notice etc.
    transformers.logging.disable_progress_bar()  # weight-loading bar
    if datasets is not None:
        datasets.disable_progress_bars()  # Dataset.map bars

    train_texts, train_labels = load_split(args.train)
    test_texts, test_labels = load_split(args.test)
    label_list = sorted(set(train_labels) | set(test_labels))
    label2id = {lab: i for i, lab in enumerate(label_list)}

    set_seed(args.seed)  # as in run_classification.py: before the model (its head) is created
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        num_labels=len(label_list),
        label2id=label2id,
        id2label={i: lab for lab, i in label2id.items()},
    )
    if args.freeze_backbone:
        for param in model.base_model.parameters():
            param.requires_grad = False
    t_loaded = time.perf_counter()

    train_ds = tokenize(tokenizer, train_texts, [label2id[x] for x in train_labels], args.padding, args.max_length)
    test_ds = tokenize(tokenizer, test_texts, [label2id[x] for x in test_labels], args.padding, args.max_length)
    t_tokenized = time.perf_counter()
    real_lengths = [int(np.sum(row["attention_mask"])) for row in train_ds]

    collator = default_data_collator if args.padding == "max_length" else DataCollatorWithPadding(tokenizer)
    with tempfile.TemporaryDirectory(prefix="trainer_baseline_") as tmp:
        training_args = TrainingArguments(
            output_dir=args.output_dir or tmp,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.eval_batch_size or args.batch_size,
            learning_rate=args.lr,
            seed=args.seed,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=args.device == "cpu",
            bf16=args.bf16,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train_ds,
            data_collator=collator,
            processing_class=tokenizer,
        )
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        train_out = trainer.train()
        t_trained = time.perf_counter()
        pred = trainer.predict(test_ds)
        t_predicted = time.perf_counter()

    y_pred = np.argmax(pred.predictions, axis=-1)
    y_true = pred.label_ids
    tm, pm = train_out.metrics, pred.metrics
    result = {
        "variant": f"trainer-{args.padding}" + ("-frozen" if args.freeze_backbone else ""),
        "padding": args.padding,
        "n_train": len(train_ds),
        "n_test": len(test_ds),
        "n_labels": len(label_list),
        "epochs": args.epochs,
        "global_steps": train_out.global_step,
        "train_samples_per_second": tm.get("train_samples_per_second"),
        "train_runtime": tm.get("train_runtime"),
        "train_loss": tm.get("train_loss"),
        "train_seconds_measured": t_trained - t0,
        "eval_texts_per_second": pm.get("test_samples_per_second"),
        "predict_runtime": pm.get("test_runtime"),
        "predict_seconds_measured": t_predicted - t_trained,
        "test_accuracy": float(np.mean(y_pred == y_true)),
        "test_macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "mean_real_tokens_per_text": float(np.mean(real_lengths)),
        "import_seconds": t_imports - _T_START,
        "load_seconds": t_loaded - t_imports,
        "tokenize_seconds": t_tokenized - t_loaded,
        "in_process_seconds": time.perf_counter() - _T_START,
        "peak_rss_self_mb": self_peak_rss_mb(),
        "cuda_max_memory_allocated_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        ),
        "device": str(training_args.device),
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "bf16": args.bf16,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": str(Path(args.model)),
        "dataset_backend": "datasets.Dataset" if datasets is not None else "list",
    }
    emit_result(result)


if __name__ == "__main__":
    main()
