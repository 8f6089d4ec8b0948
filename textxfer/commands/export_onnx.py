"""ONNX export of a full (or merged) run, checked against PyTorch with ONNX Runtime.

    textxfer export-onnx runs/tickets out/onnx

The output folder holds `model.onnx` (inputs `input_ids`, `attention_mask` and, for BERT-style models,
`token_type_ids`, all int64 of shape batch x sequence; outputs `logits`, batch x labels, and `probabilities`,
the run's calibration applied in the graph: the scores `textxfer predict` writes), the labelled
`config.json` (the label map: `id2label`), the tokenizer files, the run's `textxfer.json` (labels, max
length, decision thresholds) and `onnx_check.json` with the result of the check.

Export goes through `torch.onnx.export(dynamo=True)` (torch.export + onnxscript), with dynamic batch and
sequence axes. optimum's exporter is not used: optimum-onnx pins transformers < 4.58, and textxfer needs 5.x.
The TorchScript exporter (`dynamo=False`) is not used either: on transformers 5 BERT it traced a graph
that gave wrong logits for other sequence lengths. Models whose forward takes `position_ids` get them
computed inside the graph from the attention mask (positions counted over real tokens, as textxfer's
prediction does), so left- and right-padded batches give the same logits and callers feed the standard
inputs only.

The check tokenizes the run's test file (or `check_file`), runs every text through PyTorch and ONNX
Runtime in the same length-sorted, padded batches, and compares the logits: argmax agreement and the
largest absolute difference.
"""
from __future__ import annotations

import inspect
import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..errors import TextxferError
from ..data.splits import read_texts
from ..evaluation.calibration import calibrate
from ..fsutil import write_json
from ..outputs import OutputFolder
from ..models.build import accepts_position_ids
from ..models.quiet import quiet_loading
from ..log import get_logger
from ..runs.info import RunInfo
from .onnx_quantize import DEFAULT_MAX_DROP, check_file_labels, check_quantize_options, compare_quantized, quantize_int8

log = get_logger()
ONNX_FILE = "model.onnx"
CHECK_FILE = "onnx_check.json"
# Logits of fp32 models differ between PyTorch and ONNX Runtime by float rounding only (fused kernels,
# another summation order): well below this. A larger difference means the graph is wrong.
MAX_ABS_DIFF = 1e-3


@dataclass
class OnnxCheck:
    """How ONNX Runtime compares with PyTorch on the same inputs."""

    texts: int
    source: str
    argmax_agreement: float
    mismatches: int
    max_abs_diff: float
    max_abs_prob_diff: float
    pytorch_seconds: float
    onnxruntime_seconds: float
    export_seconds: float
    onnxruntime_version: str
    torch_version: str

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.max_abs_diff <= MAX_ABS_DIFF and self.max_abs_prob_diff <= MAX_ABS_DIFF

    def summary(self) -> str:
        return (f"ONNX Runtime vs PyTorch on {self.texts} texts ({self.source}): same predicted label for "
                f"{self.texts - self.mismatches}/{self.texts} ({100 * self.argmax_agreement:.2f}%), max abs logit "
                f"difference {self.max_abs_diff:.2e}, max abs calibrated-probability difference {self.max_abs_prob_diff:.2e}; PyTorch {self.pytorch_seconds:.1f} s, ONNX Runtime "
                f"{self.onnxruntime_seconds:.1f} s, export {self.export_seconds:.1f} s")


class _Scores(nn.Module):
    """The classifier as a graph from the standard tokenizer outputs to raw `logits` and calibrated
    `probabilities` (the run's calibration applied in the graph, then softmax, or a sigmoid per label
    for multi-label runs: what `textxfer predict` reports as scores).

    `position_ids`, where the model takes them, are derived from the attention mask inside the graph.
    """

    def __init__(self, model: nn.Module, with_positions: bool, calibration: dict | None = None,
                 multi_label: bool = False):
        super().__init__()
        self.model = model
        self.with_positions = with_positions
        self.calibration = calibration
        self.multi_label = multi_label

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.with_positions:
            kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(**kwargs).logits
        calibrated = calibrate(logits.float(), self.calibration)
        probs = torch.sigmoid(calibrated) if self.multi_label else torch.softmax(calibrated, dim=-1)
        return logits, probs


@contextmanager
def _quiet_exporter():
    """The exporter warns about things that are not the user's to fix (torchvision ops, axis names)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _require_runtime():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise TextxferError(f"ONNX export needs the packages onnx, onnxscript and onnxruntime ({exc.name} is missing). "
                            f"Install them with `pip install 'textxfer[onnx]'` (or `pip install onnx onnxscript onnxruntime`).") from None


def _load_run(run_dir: Path):
    info = RunInfo.read(run_dir, "`textxfer export-onnx`")
    if info.is_ensemble:
        raise TextxferError(f"{run_dir} is an ensemble of {len(info.members)} runs, not one model. Export its "
                            f"members one by one (copied in {run_dir / 'members'}); the ensemble averages their "
                            f"probabilities with its `{info.combine}` rule.")
    method = info.method_spec
    if method.onnx:
        raise TextxferError(f"{run_dir} is a `{method.name}` run, which cannot be exported as it is: {method.onnx} "
                            f"(e.g. `textxfer merge {run_dir} {run_dir}-merged && textxfer export-onnx {run_dir}-merged "
                            f"OUT`)." if method.adapters else
                            f"{run_dir} is a `{method.name}` run, which cannot be exported as it is: {method.onnx}.")
    with quiet_loading():
        model = AutoModelForSequenceClassification.from_pretrained(run_dir, use_safetensors=True, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(run_dir), info


def _input_names(model: nn.Module, tokenizer) -> list[str]:
    accepted = inspect.signature(model.forward).parameters
    produced = tokenizer("a")
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in accepted and "token_type_ids" in produced:
        names.append("token_type_ids")
    return names


def _batches(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int, names: list[str], batch_size: int):
    """Length-sorted, padded int64 batches (numpy) of the texts; yields (row indices, batch)."""
    kwargs = {"truncation": "only_first" if pairs is not None else True, "max_length": max_length}
    encoded = tokenizer(texts, pairs, **kwargs) if pairs is not None else tokenizer(texts, **kwargs)
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        padded = tokenizer.pad({n: [encoded[n][i] for i in rows] for n in names}, return_tensors="np")
        yield rows, {n: padded[n].astype(np.int64) for n in names}


def check_onnx(model: nn.Module, session, tokenizer, names: list[str], texts: list[str], pairs: list[str] | None,
               max_length: int, source: str, export_seconds: float = 0.0, batch_size: int = 64,
               info: RunInfo | None = None, reference: np.ndarray | None = None) -> OnnxCheck:
    """Run `texts` through PyTorch and ONNX Runtime in the same batches; compare the logits, and the
    graph's calibrated probabilities with textxfer's own (`calibrate` then softmax/sigmoid, as
    `Classifier.predict_proba` computes them from the PyTorch logits). `reference`, if given (texts x
    labels), receives PyTorch's logits in input order."""
    import onnxruntime  # optional dependency: the `onnx` extra

    from ..evaluation.decisions import probabilities

    wrapped = _Scores(model, accepts_position_ids(model)).eval()
    calibration, multi_label = (info.calibration, info.multi_label) if info is not None else (None, False)
    torch_logits, ort_logits, ort_probs, order = [], [], [], []
    torch_seconds = ort_seconds = 0.0
    for rows, batch in _batches(tokenizer, texts, pairs, max_length, names, batch_size):
        order.extend(rows)
        started = time.perf_counter()
        with torch.inference_mode():
            torch_logits.append(wrapped(**{n: torch.from_numpy(v) for n, v in batch.items()})[0].float().numpy())
        torch_seconds += time.perf_counter() - started
        started = time.perf_counter()
        logits, probs = session.run(["logits", "probabilities"], batch)
        ort_seconds += time.perf_counter() - started
        ort_logits.append(logits)
        ort_probs.append(probs)
    a, b = np.concatenate(torch_logits), np.concatenate(ort_logits)
    expected = probabilities(calibrate(torch.from_numpy(a), calibration), multi_label)
    prob_diff = float(np.abs(expected - np.concatenate(ort_probs)).max()) if len(texts) else 0.0
    mismatches = int((a.argmax(-1) != b.argmax(-1)).sum())
    if reference is not None and len(texts):
        reference[np.asarray(order)] = a  # PyTorch's logits in input order, for the int8 comparison
    return OnnxCheck(texts=len(texts), source=source, argmax_agreement=1 - mismatches / max(len(texts), 1),
                     mismatches=mismatches, max_abs_diff=float(np.abs(a - b).max()) if len(texts) else 0.0,
                     max_abs_prob_diff=prob_diff,
                     pytorch_seconds=torch_seconds, onnxruntime_seconds=ort_seconds, export_seconds=export_seconds,
                     onnxruntime_version=onnxruntime.__version__, torch_version=torch.__version__)


def _check_texts(run_dir: Path, info: RunInfo, check_file: str | None):
    """Texts of the run's test file (or `check_file`): (texts, pairs, where they came from)."""
    path = check_file
    if path is None and (run_dir / "recipe.yaml").is_file():
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}
        path = (recipe.get("data") or {}).get("test")
        encoding = (recipe.get("data") or {}).get("encoding", "utf-8")
    else:
        encoding = "utf-8"
    if not path or not Path(path).is_file():
        where = (f"the check file {path} does not exist" if check_file else
                 f"its test file {path} does not exist here" if path else "its recipe has no test file")
        raise TextxferError(f"Cannot check the ONNX model of {run_dir} against PyTorch: {where}. Pass texts to check "
                            f"with `--check-file FILE` (a CSV/TSV/JSONL with the run's text column "
                            f"`{info.text_column}`), or skip the check with `--no-check`.")
    texts, pairs, _ = read_texts(path, info.text_column, encoding, info.text_pair_column)
    return texts, pairs, str(path)


def export_onnx(run_dir: str | Path, output_dir: str | Path, check: bool = True, check_file: str | None = None,
                opset: int | None = None, overwrite: bool = False, quantize: str | None = None,
                max_accuracy_drop: float = DEFAULT_MAX_DROP) -> tuple[Path, OnnxCheck | None]:
    """Export a full or merged run to `output_dir/model.onnx` with its config, tokenizer and labels; with
    `check`, compare ONNX Runtime with PyTorch on the test set and fail when they disagree. With
    `quantize="int8"`, `model.onnx` holds int8 weights, kept only if its accuracy on the labeled check
    texts is at most `max_accuracy_drop` points below the float model's (see `onnx_quantize`)."""
    _require_runtime()
    check_quantize_options(quantize, check, max_accuracy_drop)
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    target = OutputFolder(output_dir, overwrite=overwrite, inputs=[run_dir, check_file], setting="OUTPUT_DIR",
                          kind="ONNX export", overwrite_hint="--overwrite")
    with target:
        return _export(run_dir, target, check, check_file, opset, quantize, max_accuracy_drop)


def _export(run_dir: Path, target: OutputFolder, check: bool, check_file: str | None,
            opset: int | None, quantize: str | None = None,
            max_drop: float = DEFAULT_MAX_DROP) -> tuple[Path, OnnxCheck | None]:
    import onnxruntime  # optional dependency: the `onnx` extra

    output_dir = target.path
    model, tokenizer, info = _load_run(run_dir)
    texts = pairs = source = None
    if check:  # find the texts before the (slow) export: a missing file fails fast
        texts, pairs, source = _check_texts(run_dir, info, check_file)
        gold = check_file_labels(run_dir, info, source, len(info.labels)) if quantize else None
    names = _input_names(model, tokenizer)
    wrapped = _Scores(model, accepts_position_ids(model), info.calibration, info.multi_label).eval()
    firsts = ["an example text to trace the graph", "and another, longer example text to trace it with"]
    seconds = ["a pair text", "the second pair text"] if info.text_pair_column else None
    example = tokenizer(firsts, seconds, padding=True, return_tensors="pt")
    example = {n: example[n].to(torch.int64) for n in names}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with target.staging() as staging:
        big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8 * 2**30  # ONNX protobuf limit: 2 GB
        started = time.perf_counter()
        try:
            with _quiet_exporter():
                torch.onnx.export(wrapped, (), str(staging / ONNX_FILE), kwargs=example, input_names=names,
                                  output_names=["logits", "probabilities"], dynamo=True, external_data=big, opset_version=opset,
                                  dynamic_shapes={n: {0: batch, 1: sequence} for n in names}, verbose=False)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; one paragraph for the user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TextxferError(f"torch.onnx.export could not export the {type(model).__name__} of {run_dir}: {first}. "
                                f"The PyTorch model itself still works (`textxfer predict`); try another torch version, "
                                f"or an opset with `--opset`.") from None
        export_seconds = time.perf_counter() - started
        model.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        positions = "computed in the graph from attention_mask" if accepts_position_ids(model) else None
        info.replace(onnx={"file": ONNX_FILE, "inputs": names, "output": "logits",
                           "outputs": {"logits": "raw scores, batch x labels",
                                       "probabilities": "calibrated probabilities (the run's calibration applied), "
                                                        "as `textxfer predict` reports them"},
                           "position_ids": positions}).write(staging)
        result = None
        if check:
            session = onnxruntime.InferenceSession(str(staging / ONNX_FILE), providers=["CPUExecutionProvider"])
            reference = np.zeros((len(texts), len(info.labels)), dtype=np.float32) if quantize else None
            result = check_onnx(model, session, tokenizer, names, texts, pairs, info.max_length, source,
                                export_seconds, info=info, reference=reference)
            written = {**asdict(result), "passed": result.passed, "max_abs_diff_allowed": MAX_ABS_DIFF}
            if quantize and result.passed:
                written["int8"] = _quantize(staging, run_dir, output_dir, tokenizer, names, texts, pairs, info,
                                            reference, gold, max_drop)
            write_json(staging / CHECK_FILE, written)
            if not result.passed:
                failed = output_dir.with_name(f"{output_dir.name}.failed-{time.strftime('%Y%m%d-%H%M%S')}")
                staging.rename(failed)  # a new name: never a folder of the user's
                raise TextxferError(f"The ONNX export of {run_dir} does not match PyTorch: {result.summary()}. The export is "
                                    f"kept in {failed} for inspection, not in {output_dir}; report it with the torch and "
                                    f"onnxruntime versions ({result.torch_version}, {result.onnxruntime_version}).")
    return output_dir, result


def _quantize(staging: Path, run_dir: Path, output_dir: Path, tokenizer, names, texts, pairs, info: RunInfo,
              reference: np.ndarray, gold: np.ndarray, max_drop: float) -> dict:
    """Replace the checked float graph in `staging` by its int8 version, if that keeps the accuracy."""
    float_path, int8_path = staging / "model.float32.onnx", staging / ONNX_FILE
    (staging / ONNX_FILE).rename(float_path)
    quantize_int8(float_path, int8_path)
    batches = list(_batches(tokenizer, texts, pairs, info.max_length, names, 64))
    result = compare_quantized(float_path, int8_path, reference, batches, gold, info, max_drop)
    log.info(result.summary())
    if not result.passed:
        raise TextxferError(f"The int8 graph of {run_dir} loses too much accuracy: {result.summary()}. Nothing was "
                            f"written to {output_dir}. Export float32 (leave out --quantize), or allow a larger loss "
                            f"with --max-accuracy-drop POINTS.")
    float_path.unlink()
    written = RunInfo.read(staging)
    written.replace(onnx={**written.onnx, "quantization": "int8 weights (ONNX Runtime dynamic quantization)"}).write(staging)
    return {**asdict(result), "drop_points": result.drop, "passed": True}
