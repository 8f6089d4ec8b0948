"""What a server runs: a run folder on PyTorch, or a `textxfer export-onnx` folder on ONNX Runtime.

Both are `Classifier`s, so a served prediction is decided exactly as `textxfer predict` decides it (the
run's calibration, decision rule, per-label thresholds and abstention threshold; `Classifier.decide` and
`Classifier.min_confidence`), and tokenized as `Classifier.tokenized` tokenizes (in memory, the same
`data.batching.tokenize` as training). They differ in one thing: a gathered batch runs in passes of
similar lengths (`length_batches`), not in one pass padded to its longest text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.batching import PadCollator, TokenizedDataset
from ..errors import TextxferError
from ..inference import Classifier, EnsembleClassifier, load_classifier
from ..runs.info import RunInfo

BACKENDS = ("torch", "onnx")
# What one more forward pass costs beyond its tokens, in padded tokens: the fixed (Python, kernel launch)
# part of a pass. MiniLM-L6 on a 2-core CPU: about 6 ms a pass and 0.11 ms a padded token (batch x length
# from 1 x 8 to 64 x 40). It sets where `length_batches` cuts; bigger models cut a little too often.
PASS_COST_TOKENS = 56


def length_batches(lengths: list[int], max_batch: int, pass_cost: int = PASS_COST_TOKENS) -> list[list[int]]:
    """Row indices in forward batches of at most `max_batch`, sorted by length and cut where the padding
    a longer neighbour forces on shorter rows costs more than another pass: the partition of the sorted
    rows that minimises `passes * pass_cost + sum(rows * longest)` (dynamic programming, O(n * max_batch)).
    A gathered batch of short and long requests runs as a few passes of similar lengths, not one padded
    to its longest text."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best, cut = [0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for start in range(max(0, end - max_batch), end):
            cost = best[start] + pass_cost + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches, end = [], len(order)
    while end:
        batches.append(order[cut[end]:end])
        end = cut[end]
    return batches[::-1]


class _ServedLogits:
    """`Classifier.predict_logits` (same tokenization, windows and aggregation) with a gathered batch cut
    into passes of similar lengths (`length_batches`); subclasses say how one padded pass becomes logits
    (`_forward`)."""

    def batches(self, windows: TokenizedDataset, batch_size: int | None = None) -> list[list[int]]:
        """Window indices in passes of similar lengths, at most `batch_size` (the run's eval batch) each."""
        return length_batches(windows.lengths, batch_size or self.info.eval_batch_size)

    def batch_logits(self, windows: TokenizedDataset, batch: list[int]) -> torch.Tensor:
        """The logits of one pass of windows."""
        inputs = self.collate([windows[i] for i in batch])  # what a DataLoader would do, without its per-call setup
        inputs.pop("doc", None)
        return self._forward(inputs)

    def _forward(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError


class TorchClassifier(_ServedLogits, Classifier):
    """A run folder's model on PyTorch (`Classifier.load`), tokenizing in memory."""

    @torch.inference_mode()
    def _forward(self, batch: dict) -> torch.Tensor:
        device = next(self.model.parameters()).device
        out = self.model(**{k: v.to(device) for k, v in batch.items()})
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return logits.float().cpu()


class OnnxClassifier(_ServedLogits, Classifier):
    """A `textxfer export-onnx` folder on ONNX Runtime: its `logits` output, calibrated and decided by
    the exported `textxfer.json` (the graph's own `probabilities` output is the same calibration, checked
    against PyTorch when exported; applying it here keeps long texts' windows aggregated before it)."""

    def __init__(self, session, tokenizer, info: RunInfo, folder: Path):
        self.session = session
        self.model = None
        self.run_dir = folder
        self.tokenizer = tokenizer
        self.info = info
        self.labels = info.labels
        self.multi_label = info.multi_label
        self.decision = info.decision
        self.calibration = info.calibration
        self.inputs = list(info.onnx.get("inputs") or [i.name for i in session.get_inputs()])
        # the graph computes position ids from the attention mask itself: feed only the standard inputs
        self.collate = PadCollator(tokenizer.pad_token_id, tokenizer.padding_side, position_ids=False)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None, info: RunInfo | None = None) -> "OnnxClassifier":
        """Load an export folder: `model.onnx`, its tokenizer and `textxfer.json` (CPU unless `device` is cuda
        and ONNX Runtime has CUDA)."""
        try:
            import onnxruntime
        except ImportError:
            raise TextxferError("Serving an ONNX export needs onnxruntime: `pip install 'textxfer[onnx]'` (or "
                                "`pip install onnxruntime`), or serve the run folder it came from with "
                                "`--backend torch`.") from None
        from transformers import AutoTokenizer

        folder = Path(run_dir)
        info = info or RunInfo.read(folder)
        if info.onnx is None:
            raise TextxferError(f"{folder} is a run folder, not an ONNX export: serve it with `--backend torch`, or "
                                f"export it first (`textxfer export-onnx {folder} OUT`) and serve OUT.")
        graph = folder / info.onnx.get("file", "model.onnx")
        if not graph.is_file():
            raise TextxferError(f"{folder} is an ONNX export without its graph {graph.name}: export the run again.")
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = onnxruntime.InferenceSession(str(graph), providers=providers)
        return cls(session, AutoTokenizer.from_pretrained(folder), info, folder)

    def _forward(self, batch: dict) -> torch.Tensor:
        feed = {name: batch[name].numpy().astype(np.int64) for name in self.inputs}
        return torch.from_numpy(self.session.run(["logits"], feed)[0]).float()


def load_backend(run_dir: str | Path, backend: str | None = None) -> tuple[Classifier, str]:
    """The classifier a server runs and the backend's name: an ONNX export folder on ONNX Runtime, any
    other run folder (a method's run, a merged model, an ensemble) on PyTorch; `backend` insists on one."""
    run_dir = Path(run_dir)
    info = RunInfo.read(run_dir, "`textxfer serve`")
    if backend not in (None, *BACKENDS):
        raise TextxferError(f"Unknown backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    backend = backend or ("onnx" if info.onnx is not None else "torch")
    if backend == "onnx":
        return OnnxClassifier.load(run_dir, info=info), backend
    if info.onnx is not None:
        raise TextxferError(f"{run_dir} is an ONNX export: serve it with `--backend onnx` (the default for such a "
                            f"folder), or serve the run folder it was exported from with `--backend torch`.")
    if info.is_ensemble:
        ensemble = load_classifier(run_dir)
        assert isinstance(ensemble, EnsembleClassifier)
        ensemble.members = [served(m) for m in ensemble.members]
        return ensemble, backend
    return TorchClassifier.load(run_dir, info=info), backend


def served(classifier: Classifier) -> TorchClassifier:
    """A loaded `Classifier` with in-memory tokenization (the same model, tokenizer and run info)."""
    return TorchClassifier(classifier.model, classifier.tokenizer, classifier.info, classifier.run_dir)
