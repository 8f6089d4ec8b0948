"""Load a saved run and classify texts, files or Python strings.

```python
from textxfer import load_classifier
clf = load_classifier("runs/tickets")
clf.predict(["my card was charged twice"])
```
"""
from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..config import LoraSettings
from ..data.batching import PadCollator, TokenizedDataset, eval_loader, tokenize
from ..data.splits import read_texts
from ..data.tables_out import added_names, check_output_path, note_renamed, output_format, write_table
from ..errors import TextxferError
from ..evaluation.decisions import aggregate, decide, probabilities
from ..models.adapters import load_adapter
from ..models.build import accepts_position_ids
from ..models.quiet import quiet_loading
from ..models.pooled import PooledClassifier
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

    def __init__(self, model, tokenizer, info: RunInfo):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.info = info
        self.labels: list[str] = info.labels
        self.multi_label: bool = info.multi_label
        self.decision: dict = info.decision
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
        return cls(model, tokenizer, info)

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], pairs: list[str] | None = None, batch_size: int | None = None) -> np.ndarray:
        """Probabilities, shape (len(texts), num_labels), columns in `self.labels` order: softmax over
        classes, or for multi-label runs an independent sigmoid per label."""
        if isinstance(texts, str):
            texts, pairs = [texts], [pairs] if isinstance(pairs, str) else pairs
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.info.text_pair_column and pairs is None:
            raise TextxferError(f"This run classifies text pairs (`{self.info.text_pair_column}` with each text): "
                                f"pass `pairs` with one pair text per text.")
        columns = {"text": list(texts)}
        if pairs is not None:
            columns["text_pair"] = list(pairs)
        info = self.info
        dataset = TokenizedDataset(tokenize(datasets.Dataset.from_dict(columns), self.tokenizer, info.max_length,
                                            info.long_text, info.stride, info.max_chunks))
        loader, _ = eval_loader(dataset, batch_size or info.eval_batch_size, self.collate)
        device = next(self.model.parameters()).device
        chunks, docs = [], []
        for batch in loader:
            docs.append(batch.pop("doc"))
            batch = {k: v.to(device) for k, v in batch.items()}
            out = self.model(**batch)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            chunks.append(logits.float().cpu())
        logits, _ = aggregate(torch.cat(chunks), None, torch.cat(docs), info.chunk_aggregation)
        return probabilities(logits, self.multi_label)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class ids (or, multi-label, a multi-hot matrix) from probabilities, by the run's decision rule."""
        thresholds = self.decision.get("thresholds")
        positive = self.decision.get("positive_label")
        return decide(probs, self.multi_label,
                      thresholds=[thresholds[l] for l in self.labels] if thresholds else None,
                      positive_index=self.labels.index(positive) if positive else None,
                      threshold=self.decision.get("threshold"))

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list:
        """The label of each text, or for multi-label runs the list of its labels."""
        decided = self.decide(self.predict_proba(texts, pairs))
        if self.multi_label:
            return [[self.labels[j] for j in np.flatnonzero(row)] for row in decided]
        return [self.labels[i] for i in decided]

    def predict_file(self, input_path: str | Path, output_path: str | Path, text_column=None,
                     pair_column: str | None = None, escape_formulas: bool = True) -> int:
        """Classify every row of a CSV/TSV/JSONL/parquet file; write it back with the prediction and
        scores (see `write_predictions`). Returns the number of rows written."""
        check_output_path(output_path, [input_path])
        texts, pairs, table = read_texts(input_path, text_column or self.info.text_column,
                                         text_pair_column=pair_column or self.info.text_pair_column)
        probs = self.predict_proba(texts, pairs)
        self.write_predictions(table, probs, output_path, escape_formulas, source=str(input_path))
        return len(texts)

    def write_predictions(self, table, probs: np.ndarray, output_path: str | Path, escape_formulas: bool = True,
                          source: str = "the input") -> None:
        """Input columns, unchanged, plus the prediction; the format follows the extension (.csv, .tsv,
        .jsonl, .parquet; see textxfer.tables_out, which also escapes spreadsheet formulas in CSV/TSV).

        Single-label: `predicted_label` and its probability `score`. Multi-label: `predicted_labels`
        (a list in JSONL and parquet, joined by the run's label separator in CSV/TSV) and `score_<label>`
        per label. A prediction column whose name the input already uses gets a suffix (`score_1`).
        """
        decided = self.decide(probs)
        delimited = output_format(output_path) in ("csv", "tsv")
        if self.multi_label:
            separator = self.info.label_separator
            sets = [[self.labels[j] for j in np.flatnonzero(row)] for row in decided]
            wanted = ["predicted_labels", *[f"score_{l}" for l in self.labels]]
            values = [[separator.join(s) for s in sets] if delimited else sets,
                      *[_scores(probs[:, j], delimited) for j in range(len(self.labels))]]
        else:
            wanted = ["predicted_label", "score"]
            values = [[self.labels[k] for k in decided], _scores(probs[np.arange(len(probs)), decided], delimited)]
        names = added_names(wanted, table.column_names)
        note_renamed(wanted, names, source)
        columns = table.to_dict() if len(table.column_names) else {}
        write_table(output_path, {**columns, **dict(zip(names, values))}, escape_formulas)


def _scores(p: np.ndarray, delimited: bool) -> list:
    """Probabilities as CSV text with 6 decimals, or as numbers rounded to 6 decimals."""
    return [f"{v:.6f}" for v in p] if delimited else [round(float(v), 6) for v in p]
