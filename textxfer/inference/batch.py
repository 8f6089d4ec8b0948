"""Batch prediction of a whole file: read in chunks, shared across processes, written in input order.

A file is read `chunk_rows` rows at a time (textxfer.data.streaming), so a file larger than memory
streams through. Each chunk's texts are tokenized and cut into length-sorted batches the same way
whatever the number of processes; under `accelerate launch` process r runs batches r, r + N, ...,
their logits are gathered on every process (Accelerate's `gather_object`), and the main process alone
writes the chunk, so N processes write exactly the bytes one process writes.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.rows import texts_of
from ..data.streaming import DEFAULT_CHUNK_ROWS, iter_chunks
from ..data.tables_out import TableWriter, check_output_path, output_format
from ..models.build import has_accelerator
from .classifier import Classifier


@dataclass(frozen=True)
class Processes:
    """Who this process is among the ones sharing the work (one, unless under `accelerate launch`)."""
    index: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def gather(self, items: list) -> list:
        """Every process's `items`, concatenated in process order, on every process."""
        if self.count == 1:
            return items
        from accelerate.utils import gather_object

        return gather_object(items)


def launched_processes() -> tuple[Processes, str | None]:
    """This process's place under `accelerate launch` and the device it should use; without a launcher
    (or with one process), one process and no device preference."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes(), None
    from accelerate import PartialState

    state = PartialState(cpu=not has_accelerator())
    return Processes(state.process_index, state.num_processes), str(state.device)


def predict_file(classifier: Classifier, input_path: str | Path, output_path: str | Path, text_column=None,
                 pair_column: str | None = None, escape_formulas: bool = True, min_confidence: float | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, processes: Processes = Processes()) -> int:
    """Classify every row of a CSV/TSV/JSONL/parquet file into `output_path` (its columns kept, the
    prediction added: see `Classifier.prediction_columns`); returns the number of rows."""
    threshold = classifier.min_confidence(min_confidence)  # a bad threshold fails before any work
    check_output_path(output_path, [input_path])
    info = classifier.info
    delimited = output_format(output_path) in ("csv", "tsv")
    writer = TableWriter(output_path, escape_formulas) if processes.is_main else nullcontext()
    rows = 0
    with writer, tqdm(desc="predict", unit=" rows", leave=False,
                       disable=None if processes.is_main else True) as bar:  # None: shown on a terminal only
        for chunk in iter_chunks(input_path, chunk_rows):
            texts, pairs = texts_of(chunk.table, input_path, text_column or info.text_column,
                                    pair_column or info.text_pair_column, chunk.first_row)
            probs = shared_probabilities(classifier, texts, pairs, processes)
            if processes.is_main:
                writer.write(classifier.prediction_columns(chunk.table, probs, delimited, threshold,
                                                           source=str(input_path) if rows == 0 else None))
            rows += len(texts)
            bar.update(len(texts))
    return rows


def shared_probabilities(classifier: Classifier, texts: list[str], pairs: list[str] | None,
                         processes: Processes = Processes()) -> np.ndarray:
    """`classifier.predict_proba(texts, pairs)`, its batches shared among `processes` (an ensemble
    shares each member's)."""
    members = getattr(classifier, "members", None)
    if members is not None:
        return classifier.from_member_probs([shared_probabilities(m, texts, pairs, processes) for m in members])
    return classifier.proba_from_logits(_shared_logits(classifier, texts, pairs, processes))


def _shared_logits(classifier: Classifier, texts: list[str], pairs: list[str] | None,
                   processes: Processes) -> torch.Tensor:
    if not texts:
        return torch.zeros((0, len(classifier.labels)))
    windows = classifier.tokenized(texts, pairs)
    batches = classifier.batches(windows)
    mine = range(processes.index, len(batches), processes.count)
    done = processes.gather([(k, classifier.batch_logits(windows, batches[k])) for k in mine])
    logits = [l for _, l in sorted(done, key=lambda pair: pair[0])]
    return classifier.aggregate_windows(windows, batches, logits)
