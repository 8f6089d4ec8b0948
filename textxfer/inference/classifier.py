"""Load a saved run and classify texts, files or Python strings.

```python
from textxfer import load_classifier
clf = load_classifier("runs/tickets")
clf.predict(["my card was charged twice"])
```
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..config import LoraSettings
from ..data.batching import InMemoryTable, PadCollator, TokenizedDataset, length_sorted, tokenize
from ..data.tables_out import added_names, note_renamed, output_format, write_table
from ..errors import TextxferError
from ..evaluation.abstention import (accuracy_at_threshold, check_coverage, check_min_confidence, decided_confidence,
                                     threshold_for_coverage)
from ..evaluation.calibration import calibrate
from ..evaluation.decisions import aggregate, decide_by_rule, probabilities
from ..models.adapters import load_adapter
from ..models.build import accepts_position_ids
from ..models.quiet import quiet_loading
from ..models.pooled import PooledClassifier
from ..runs.folder import read_validation_scores
from ..runs.info import RunInfo


# Weight files a run folder needs, per what its method saves; safetensors only: pickles can run code when loaded.
_WEIGHTS = {"pooled": [("backbone/model.safetensors", "backbone/model.safetensors.index.json"), ("head.safetensors",)],
            "adapter": [("adapter_model.safetensors",)],
            "model": [("model.safetensors", "model.safetensors.index.json")]}
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin", "backbone/pytorch_model.bin",
            "head.bin", "model.ckpt", "tf_model.h5", "flax_model.msgpack")


def require_weights(run_dir: Path, info: RunInfo) -> None:
    """Refuse, with the missing file named, a run folder without its safetensors weights; say so plainly
    when it holds only pickled (`.bin`) weights, which textxfer never loads."""
    if info.onnx is not None:
        raise TextxferError(f"{run_dir} is an ONNX export ({info.onnx.get('file', 'model.onnx')}), which textxfer "
                            f"checks but does not predict with; load it with onnxruntime, or point at the run it was "
                            f"exported from.")
    missing = [names[0] for names in _WEIGHTS[info.method_spec.saves]
               if not any((run_dir / n).is_file() for n in names)]
    if not missing:
        return
    pickles = [n for n in _PICKLES if (run_dir / n).is_file()]
    why = (f" It holds {', '.join(pickles)} instead: pickled weights can run arbitrary code when loaded, so textxfer "
           f"refuses them on purpose. Convert them to safetensors (`model.save_pretrained(folder)` with a current "
           f"transformers writes safetensors) or train the run again." if pickles else
           " The folder is incomplete or was changed by hand: train the run again, or restore the file.")
    raise TextxferError(f"{run_dir} is a textxfer run folder, but its weights file {', '.join(missing)} is "
                        f"missing.{why}")


class Classifier:
    """A trained classifier: texts in, labels (or label sets) and probabilities out.

    Long texts are handled as in training (`data.long_text`); with `chunks`, window logits are
    aggregated per text. Decisions use the rule chosen on validation (per-label thresholds for
    multi-label runs, a target-precision/recall threshold for binary runs that asked for one).
    """

    def __init__(self, model, tokenizer, info: RunInfo, run_dir: Path | None = None):
        self.model = model.eval()
        self.run_dir = run_dir
        self.tokenizer = tokenizer
        self.info = info
        self.labels: list[str] = info.labels
        self.multi_label: bool = info.multi_label
        self.decision: dict = info.decision
        self.calibration: dict | None = info.calibration
        self.collate = PadCollator(tokenizer.pad_token_id, tokenizer.padding_side, accepts_position_ids(model))

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None, info: RunInfo | None = None) -> "Classifier":
        """Load a run folder written by `textxfer train` or `merge` (on CUDA when available, unless `device`
        says); `load_classifier` also loads ensembles."""
        run_dir = Path(run_dir)
        info = info or RunInfo.read(run_dir)
        require_weights(run_dir, info)
        method = info.method_spec
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if method.saves == "pooled":
            model = PooledClassifier.from_pretrained(run_dir)
        elif method.saves == "adapter":
            model = load_adapter(run_dir, LoraSettings(**(info.lora or {})), device, method.quantized)
        else:
            with quiet_loading():
                model = AutoModelForSequenceClassification.from_pretrained(run_dir, use_safetensors=True)
        if not method.quantized:  # a 4-bit model is placed when loaded and cannot move
            model = model.to(device)
        return cls(model, tokenizer, info, run_dir)

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None, batch_size: int | None = None,
                      calibrated: bool = True) -> np.ndarray:
        """Calibrated probabilities, shape (len(texts), num_labels), columns in `self.labels` order: softmax
        over classes, or for multi-label runs an independent sigmoid per label, after the run's calibration
        (the temperature fitted on validation; `textxfer.evaluation.calibration`). `calibrated=False` gives
        the model's raw probabilities: what stock transformers/peft compute from the same weights."""
        return self.proba_from_logits(self.predict_logits(texts, pairs, batch_size), calibrated)

    def proba_from_logits(self, logits: torch.Tensor, calibrated: bool = True) -> np.ndarray:
        """Probabilities from this run's logits: softmax or per-label sigmoid, after the calibration."""
        return probabilities(calibrate(logits, self.calibration) if calibrated else logits, self.multi_label)

    def predict_logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int | None = None) -> torch.Tensor:
        """Uncalibrated logits, one row per text (windows of a long text aggregated by the run's rule)."""
        if isinstance(texts, str):
            texts, pairs = [texts], [pairs] if isinstance(pairs, str) else pairs
        if not texts:
            return torch.zeros((0, len(self.labels)))
        windows = self.tokenized(texts, pairs)
        batches = self.batches(windows, batch_size)
        return self.aggregate_windows(windows, batches, [self.batch_logits(windows, b) for b in batches])

    def tokenized(self, texts: list[str], pairs: list[str] | None = None) -> TokenizedDataset:
        """The texts tokenized as the run was trained: one row per window, each with its text's index."""
        if self.info.text_pair_column and pairs is None:
            raise TextxferError(f"This run classifies text pairs (`{self.info.text_pair_column}` with each text): "
                                f"pass `pairs` with one pair text per text.")
        columns = {"text": list(texts)}
        if pairs is not None:
            columns["text_pair"] = list(pairs)
        info = self.info
        return TokenizedDataset(tokenize(InMemoryTable(columns), self.tokenizer, info.max_length, info.long_text,
                                         info.stride, info.max_chunks))

    def batches(self, windows: TokenizedDataset, batch_size: int | None = None) -> list[list[int]]:
        """Window indices in length-sorted batches (longest first): little padding, and a fixed split
        into batches that does not depend on who runs them (so N processes compute what one does)."""
        order, size = length_sorted(windows), batch_size or self.info.eval_batch_size
        return [order[i:i + size] for i in range(0, len(order), size)]

    @torch.inference_mode()
    def batch_logits(self, windows: TokenizedDataset, batch: list[int]) -> torch.Tensor:
        """The model's logits for one batch of windows (float32, on the CPU)."""
        inputs = self.collate([windows[i] for i in batch])
        inputs.pop("doc", None)
        device = next(self.model.parameters()).device
        out = self.model(**{k: v.to(device) for k, v in inputs.items()})
        return (out if isinstance(out, torch.Tensor) else out.logits).float().cpu()

    def aggregate_windows(self, windows: TokenizedDataset, batches: list[list[int]],
                          logits: list[torch.Tensor]) -> torch.Tensor:
        """Per-batch window logits (in `batches` order) -> one row per text, in input order."""
        docs = torch.tensor([windows.columns["doc"][i] for b in batches for i in b])
        return aggregate(torch.cat(logits), None, docs, self.info.chunk_aggregation)[0]

    def explain(self, texts: list[str], pairs: list[str] | None = None, label: str | None = None, **options) -> list:
        """Token attributions for the predicted class of each text (or for `label`), by layer integrated
        gradients on the input embeddings; see `textxfer.inference.explain` (needs the `explain` extra)."""
        from .explain import explain

        return explain(self, texts, pairs, label, **options)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class ids (or, multi-label, a multi-hot matrix) from probabilities, by the run's decision rule."""
        return decide_by_rule(probs, self.multi_label, self.decision, self.labels)

    def predict(self, texts: list[str], pairs: list[str] | None = None, min_confidence: float | None = None) -> list:
        """The label of each text, or for multi-label runs the list of its labels. With `min_confidence`
        (default: the run's `train.min_confidence`), a text whose calibrated score for its label is
        below it gets None (abstained)."""
        probs = self.predict_proba(texts, pairs)
        decided = self.decide(probs)
        if self.multi_label:
            self.min_confidence(min_confidence)  # refuses a threshold: multi-label runs cannot abstain
            return [[self.labels[j] for j in np.flatnonzero(row)] for row in decided]
        threshold = self.min_confidence(min_confidence)
        confidence = decided_confidence(probs, decided)
        return [None if threshold is not None and c < threshold else self.labels[i]
                for i, c in zip(decided, confidence)]

    def min_confidence(self, given: float | None = None) -> float | None:
        """The abstention threshold in effect: `given` (checked to lie in [0, 1]) or the run's default."""
        if given is not None and self.multi_label:
            raise TextxferError("A minimum confidence applies to single-label runs: this multi-label run decides "
                                "each label by its own threshold tuned on validation, so there is no single score "
                                "to abstain on. Leave out --min-confidence / --coverage.")
        return check_min_confidence(given) if given is not None else self.decision.get("min_confidence")

    def threshold_for_coverage(self, coverage: float) -> tuple[float, float, float]:
        """The highest confidence threshold that keeps at least `coverage` of the run's validation texts;
        with the share it keeps (ties can keep more) and the validation accuracy on those texts."""
        coverage = check_coverage(coverage)
        if self.multi_label:
            self.min_confidence(coverage)
        if self.run_dir is None:
            raise TextxferError("This classifier was not loaded from a run folder, so it has no validation scores "
                                "to choose a coverage on; give a threshold (`min_confidence`) instead.")
        confidence, correct = read_validation_scores(self.run_dir)
        threshold = threshold_for_coverage(confidence, coverage)
        return (threshold, *accuracy_at_threshold(confidence, correct, threshold))

    def predict_file(self, input_path: str | Path, output_path: str | Path, text_column=None,
                     pair_column: str | None = None, escape_formulas: bool = True,
                     min_confidence: float | None = None, chunk_rows: int | None = None) -> int:
        """Classify every row of a CSV/TSV/JSONL/parquet file, read `chunk_rows` rows at a time; write
        it back with the prediction and scores (see `prediction_columns`). Returns the number of rows.
        Under `accelerate launch`, `python -m textxfer.predict` shares the work among the processes."""
        from .batch import DEFAULT_CHUNK_ROWS, predict_file

        return predict_file(self, input_path, output_path, text_column, pair_column, escape_formulas,
                            min_confidence, chunk_rows or DEFAULT_CHUNK_ROWS)

    def write_predictions(self, table, probs: np.ndarray, output_path: str | Path, escape_formulas: bool = True,
                          source: str = "the input", min_confidence: float | None = None) -> None:
        """Input columns, unchanged, plus the prediction (see `prediction_columns`); the format follows
        the extension (.csv, .tsv, .jsonl, .parquet; see textxfer.data.tables_out, which also escapes
        spreadsheet formulas in CSV/TSV)."""
        delimited = output_format(output_path) in ("csv", "tsv")
        write_table(output_path, self.prediction_columns(table, probs, delimited, min_confidence, source),
                    escape_formulas)

    def prediction_columns(self, table, probs: np.ndarray, delimited: bool, min_confidence: float | None = None,
                           source: str = "the input") -> dict[str, list]:
        """The table's columns, unchanged, followed by the prediction's (`delimited`: for CSV/TSV text).

        Single-label: `predicted_label` and its calibrated probability `score`; with an abstention
        threshold (`min_confidence`, default the run's), also `abstained` (true/false) and
        `suggested_label` (the best guess, kept when abstaining; `predicted_label` is then empty).
        Multi-label: `predicted_labels` (a list in JSONL and parquet, joined by the run's label
        separator in CSV/TSV) and `score_<label>` per label. A prediction column whose name the input
        already uses gets a suffix (`score_1`), and `source` is named in a note saying so.
        """
        decided = self.decide(probs)
        threshold = self.min_confidence(min_confidence)
        if self.multi_label:
            separator = self.info.label_separator
            sets = [[self.labels[j] for j in np.flatnonzero(row)] for row in decided]
            wanted = ["predicted_labels", *[f"score_{l}" for l in self.labels]]
            values = [[separator.join(s) for s in sets] if delimited else sets,
                      *[_scores(probs[:, j], delimited) for j in range(len(self.labels))]]
        else:
            wanted = ["predicted_label", "score"]
            best = [self.labels[k] for k in decided]
            confidence = decided_confidence(probs, decided)
            values = [best, _scores(confidence, delimited)]
            if threshold is not None:
                abstained = confidence < threshold
                empty = "" if delimited else None
                wanted += ["abstained", "suggested_label"]
                values = [[empty if a else b for a, b in zip(abstained, best)], values[1],
                          [("true" if a else "false") if delimited else bool(a) for a in abstained], best]
        names = added_names(wanted, table.column_names)
        if source is not None:
            note_renamed(wanted, names, source)
        columns = table.to_dict() if len(table.column_names) else {}
        return {**columns, **dict(zip(names, values))}


def _scores(p: np.ndarray, delimited: bool) -> list:
    """Probabilities as CSV text with 6 decimals, or as numbers rounded to 6 decimals."""
    return [f"{v:.6f}" for v in p] if delimited else [round(float(v), 6) for v in p]
