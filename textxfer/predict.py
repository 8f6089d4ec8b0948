"""Load a saved run and classify texts, files or Python strings.

```python
from textxfer import load_classifier
clf = load_classifier("runs/tickets")
clf.predict(["my card was charged twice"])
```
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .batching import PadCollator, TokenizedDataset, eval_loader, tokenize
from .data import read_texts
from .errors import TextxferError
from .models import PooledClassifier, quiet_loading
from .runfolder import RUN_INFO

import datasets


class Classifier:
    """A trained classifier: texts in, labels and class probabilities out."""

    def __init__(self, model, tokenizer, info: dict):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.info = info
        self.labels: list[str] = info["labels"]
        self.collate = PadCollator(tokenizer.pad_token_id, tokenizer.padding_side)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> "Classifier":
        """Load a run folder written by `textxfer train` (on CUDA when available, unless `device` says)."""
        run_dir = Path(run_dir)
        info_path = run_dir / RUN_INFO
        if not info_path.is_file():
            hint = " (a run that was interrupted is left in a `.incomplete` folder)" if run_dir.with_name(run_dir.name + ".incomplete").exists() else ""
            raise TextxferError(f"{run_dir} is not a textxfer run folder: it has no {RUN_INFO}{hint}. Point at the `output_dir` of a finished run.")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        if info["method"] == "feature_extraction":
            model = PooledClassifier.from_pretrained(run_dir)
        else:
            with quiet_loading():
                model = AutoModelForSequenceClassification.from_pretrained(run_dir, use_safetensors=True)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), tokenizer, info)

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (len(texts), num_labels), columns in `self.labels` order."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        dataset = TokenizedDataset(tokenize(datasets.Dataset.from_dict({"text": list(texts)}),
                                            self.tokenizer, self.info["max_length"]))
        loader, order = eval_loader(dataset, batch_size or self.info.get("eval_batch_size", 64), self.collate)
        device = next(self.model.parameters()).device
        chunks = []
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = self.model(**batch)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            chunks.append(torch.softmax(logits.float(), dim=-1).cpu())
        probs = torch.cat(chunks).numpy()
        result = np.empty_like(probs)
        result[np.asarray(order)] = probs
        return result

    def predict(self, texts: list[str]) -> list[str]:
        """The most likely label of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(1)]

    def predict_file(self, input_path: str | Path, output_path: str | Path, text_column=None) -> int:
        """Classify every row of a CSV/TSV/JSONL/parquet file; write it back with `predicted_label`
        and `score`. Returns the number of rows written."""
        texts, table = read_texts(input_path, text_column or self.info["text_column"])
        probs = self.predict_proba(texts)
        self.write_predictions(table, probs, output_path)
        return len(texts)

    def write_predictions(self, table, probs: np.ndarray, output_path: str | Path) -> None:
        """Input columns + `predicted_label` + `score`, as CSV (or JSONL if the name ends in .jsonl)."""
        output_path = Path(output_path)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        columns = [c for c in table.column_names if c not in ("predicted_label", "score")]
        rows = table.to_dict()
        best = probs.argmax(1)
        tmp = output_path.with_name(output_path.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            if output_path.suffix.lower() in (".jsonl", ".ndjson"):
                for i, k in enumerate(best):
                    record = {c: rows[c][i] for c in columns}
                    record.update(predicted_label=self.labels[k], score=round(float(probs[i, k]), 6))
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                writer = csv.writer(fh, delimiter="\t" if output_path.suffix.lower() == ".tsv" else ",")
                writer.writerow([*columns, "predicted_label", "score"])
                for i, k in enumerate(best):
                    cells = [_cell(rows[c][i]) for c in columns]
                    writer.writerow([*cells, self.labels[k], f"{probs[i, k]:.6f}"])
        tmp.replace(output_path)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def load_classifier(run_dir: str | Path, device: str | None = None) -> Classifier:
    """Load a saved run for prediction: `load_classifier("runs/tickets").predict([...])`."""
    return Classifier.load(run_dir, device)
