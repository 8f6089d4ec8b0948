"""`textxfer export-onnx RUN OUT --quantize int8`: ONNX Runtime dynamic quantization of the exported graph.

The weights of MatMul/Gemm nodes become int8 (activations are quantized on the fly, per batch), so the
file is about a quarter of the size and CPU inference is faster; accuracy usually moves by a fraction
of a point. Because it can move more on some models, the quantized graph is kept only after it has been
measured on the run's labeled test texts: its accuracy against the float model's (PyTorch fp32), and
refused, with both figures, when it loses more than `max_drop` points.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..data.io import read_table
from ..errors import TextxferError
from ..evaluation.calibration import calibrate
from ..evaluation.decisions import decide_by_rule, probabilities
from ..runs.info import RunInfo

QUANTIZATIONS = ("int8",)
DEFAULT_MAX_DROP = 1.0  # accuracy points


@dataclass
class QuantizedCheck:
    """The int8 graph against the float model on the same labeled texts."""

    texts: int
    float_accuracy: float
    int8_accuracy: float
    agreement: float  # share of texts with the same decision
    float_onnx_seconds: float
    int8_onnx_seconds: float
    float_megabytes: float
    int8_megabytes: float
    max_drop: float

    @property
    def drop(self) -> float:
        """Accuracy points lost (negative: gained)."""
        return 100 * (self.float_accuracy - self.int8_accuracy)

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def summary(self) -> str:
        speed = self.float_onnx_seconds / max(self.int8_onnx_seconds, 1e-9)
        return (f"int8 vs float on {self.texts} labeled texts: accuracy {self.int8_accuracy:.4f} vs "
                f"{self.float_accuracy:.4f} ({self.drop:+.2f} points lost; at most {self.max_drop:g} allowed), same "
                f"decision for {100 * self.agreement:.2f}%; ONNX Runtime {self.int8_onnx_seconds:.1f} s vs "
                f"{self.float_onnx_seconds:.1f} s ({speed:.2f}x), {self.int8_megabytes:.1f} MB vs "
                f"{self.float_megabytes:.1f} MB")


def check_quantize_options(quantize: str | None, check: bool, max_drop: float) -> None:
    """Refuse, before any work, a quantization textxfer does not know, or one that would go unmeasured."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise TextxferError(f"--quantize {quantize!r} is not known; use {', '.join(QUANTIZATIONS)} (ONNX Runtime "
                            f"dynamic quantization of the weights), or leave it out for a float32 graph.")
    if not check:
        raise TextxferError("--quantize int8 needs the check: the quantized graph is kept only after its accuracy has "
                            "been measured against the float model. Leave out --no-check (give labeled texts with "
                            "--check-file if the run's test file is not here).")
    if not 0 <= max_drop <= 100:
        raise TextxferError(f"--max-accuracy-drop is {max_drop:g}; give accuracy points between 0 and 100 (default "
                            f"{DEFAULT_MAX_DROP:g}).")


def quantize_int8(source: Path, target: Path) -> None:
    """Write `source`'s graph with int8 weights (ONNX Runtime's `quantize_dynamic`) to `target`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime's quantizer logs through the root logger (`logging.info`), which configures a root handler
    # when there is none: every textxfer line would then print twice. A placeholder handler prevents that.
    root, placeholder = logging.getLogger(), logging.NullHandler()
    root.addHandler(placeholder)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types; one paragraph for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TextxferError(f"ONNX Runtime could not quantize {source}: {first}. The float32 export works; leave out "
                            f"--quantize, or try another onnxruntime version.") from None
    finally:
        root.removeHandler(placeholder)


def check_file_labels(run_dir: Path, info: RunInfo, path: str, labels_count: int) -> np.ndarray:
    """The gold decisions of the check file: class ids, or for multi-label runs a multi-hot matrix."""
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) if (run_dir / "recipe.yaml").is_file() else {}
    data = (recipe or {}).get("data") or {}
    column, encoding = data.get("label_column", "label"), data.get("encoding", "utf-8")
    table = read_table(path, encoding, "check")
    if column not in table.column_names:
        raise TextxferError(f"--quantize int8 measures accuracy, but the check file {path} has no label column "
                            f"`{column}` (its columns: {', '.join(table.column_names)}). Give a labeled file with "
                            f"--check-file.")
    index = {label: i for i, label in enumerate(info.labels)}
    values = table[column]
    if info.multi_label:
        gold = np.zeros((len(values), labels_count), dtype=bool)
        for row, value in enumerate(values):
            items = value if isinstance(value, list) else [v for v in str(value or "").split(info.label_separator) if v.strip()]
            for item in items:
                if str(item).strip() in index:  # a label the run does not know: no column is set
                    gold[row, index[str(item).strip()]] = True
        return gold
    return np.array([index.get(str(v).strip(), -1) for v in values])


def compare_quantized(float_path: Path, int8_path: Path, torch_logits: np.ndarray, batches, gold: np.ndarray,
                      info: RunInfo, max_drop: float) -> QuantizedCheck:
    """Run the float and int8 graphs over the same batches; score both decisions against `gold`.
    `torch_logits` (input order) is the PyTorch fp32 reference the float accuracy is measured on."""
    import onnxruntime

    sessions = {name: onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for name, p in (("float", float_path), ("int8", int8_path))}
    seconds = {"float": 0.0, "int8": 0.0}
    int8_logits = np.zeros_like(torch_logits)
    for rows, batch in batches:
        for name, session in sessions.items():
            started = time.perf_counter()
            (logits,) = session.run(["logits"], batch)
            seconds[name] += time.perf_counter() - started
            if name == "int8":
                int8_logits[rows] = logits

    def decide(logits: np.ndarray) -> np.ndarray:
        import torch

        probs = probabilities(calibrate(torch.from_numpy(logits), info.calibration), info.multi_label)
        return decide_by_rule(probs, info.multi_label, info.decision, info.labels)

    reference, quantized = decide(torch_logits), decide(int8_logits)
    correct = (lambda d: (d == gold).all(1)) if info.multi_label else (lambda d: d == gold)
    same = (reference == quantized).all(1) if info.multi_label else reference == quantized
    return QuantizedCheck(texts=len(gold), float_accuracy=float(correct(reference).mean()),
                          int8_accuracy=float(correct(quantized).mean()), agreement=float(same.mean()),
                          float_onnx_seconds=seconds["float"], int8_onnx_seconds=seconds["int8"],
                          float_megabytes=float_path.stat().st_size / 2**20,
                          int8_megabytes=int8_path.stat().st_size / 2**20, max_drop=max_drop)
