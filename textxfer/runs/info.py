"""`textxfer.json`, the typed description of a run folder: what prediction needs (labels, text settings,
the decision rule) and what the folder is (a run of a method, a merged model, an ensemble, an ONNX
export). One writer (`RunInfo.write`), one reader (`RunInfo.read`) with one set of defaults; a folder
that is not a run, or one written by a newer textxfer, gets one clear error wherever it is read."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .._version import __version__
from ..config import DataConfig, Recipe
from ..errors import TextxferError
from ..fsutil import write_json
from ..methods import Method, get_method

RUN_INFO = "textxfer.json"
FORMAT_VERSION = 1  # folders of textxfer versions before the field existed read as version 1
_DATA = DataConfig()  # the recipe's defaults are the reader's defaults


@dataclass(frozen=True)
class RunInfo:
    labels: list[str]
    method: str  # a method of the registry, or "ensemble"
    base_model: str | None = None
    multi_label: bool = False
    label_separator: str = _DATA.label_separator
    text_column: str | list = _DATA.text_column
    text_pair_column: str | None = None
    max_length: int = _DATA.max_length
    long_text: str = _DATA.long_text
    stride: int = _DATA.stride
    chunk_aggregation: str = _DATA.chunk_aggregation
    max_chunks: int | None = None
    eval_batch_size: int = 64
    decision: dict = field(default_factory=dict)  # the rule chosen on validation: thresholds, positive label
    calibration: dict | None = None  # fitted on validation logits (evaluation.calibration); None: raw probabilities
    dataset: dict | None = None  # `data.dataset` runs: the dataset id, its kind, config, the revision read, splits
    lora: dict | None = None  # adapter runs: the LoRA settings (a 4-bit base is rebuilt from them)
    merged_from: str | None = None  # a `textxfer merge` folder: the adapter run, and its method
    adapter_method: str | None = None
    onnx: dict | None = None  # an ONNX export: the graph's file, inputs and output
    combine: str | None = None  # an ensemble: its averaging rule and its member folders
    members: list | None = None
    format_version: int = FORMAT_VERSION
    textxfer_version: str = __version__

    @classmethod
    def for_run(cls, recipe: Recipe, labels: list[str], multi_label: bool, decision: dict) -> "RunInfo":
        """The info of a run trained from `recipe` (its resolved text settings)."""
        d = recipe.data
        method = get_method(recipe.model.method)
        return cls(labels=labels, method=method.name, base_model=recipe.model.name, multi_label=multi_label,
                   label_separator=d.label_separator, text_column=d.text_column, text_pair_column=d.text_pair_column,
                   max_length=d.max_length, long_text=d.long_text, stride=d.stride,
                   chunk_aggregation=d.chunk_aggregation, max_chunks=d.max_chunks,
                   eval_batch_size=recipe.train.eval_batch_size, decision=decision,
                   lora=dataclasses.asdict(recipe.model.lora) if method.adapters else None)

    @property
    def is_ensemble(self) -> bool:
        return self.members is not None

    @property
    def method_spec(self) -> Method:
        """The registry's method (an ensemble has none: ask `is_ensemble` first)."""
        return get_method(self.method)

    @property
    def trained_method(self) -> str:
        """The method that trained the weights (a merged folder's adapter method)."""
        return self.adapter_method or self.method

    def replace(self, **changes) -> "RunInfo":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The JSON fields; fields of other kinds of folder left out when unset."""
        data = dataclasses.asdict(self)
        optional = ("calibration", "dataset", "lora", "merged_from", "adapter_method", "onnx", "combine", "members")
        return {k: v for k, v in data.items() if not (k in optional and v is None)}

    def write(self, folder: str | Path) -> None:
        write_json(Path(folder) / RUN_INFO, self.to_dict())

    @classmethod
    def read(cls, folder: str | Path, purpose: str = "") -> "RunInfo":
        """The info of a run folder; one clear error for a folder that is not a finished textxfer run, a
        broken `textxfer.json`, or one written by a newer textxfer. `purpose` says what the folder was
        given for (`textxfer push`, an ensemble member), for the message."""
        folder = Path(folder)
        path = folder / RUN_INFO
        if not path.is_file():
            raise not_a_run(folder, purpose)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TextxferError(f"{path} is not readable JSON ({exc}); the run folder {folder} is damaged. Train the "
                                f"run again, or restore the file.") from None
        if not isinstance(data, dict) or "labels" not in data or "method" not in data:
            raise TextxferError(f"{path} does not describe a textxfer run (no `labels` or `method`); the run folder "
                                f"{folder} is damaged or not textxfer's.")
        version = data.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise TextxferError(f"{folder} was written by textxfer {data.get('textxfer_version', '(unknown)')} in run "
                                f"format {version}, newer than this textxfer ({__version__}, format {FORMAT_VERSION}) "
                                f"reads. Upgrade textxfer (`pip install -U textxfer`) to use it.")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def not_a_run(folder: Path, purpose: str = "") -> TextxferError:
    """The one error for a folder that is not a finished textxfer run."""
    incomplete = folder.with_name(folder.name + ".incomplete").exists()
    hint = " (a run that was interrupted is left in a `.incomplete` folder)" if incomplete else ""
    what = f" {purpose}" if purpose else ""
    return TextxferError(f"{folder} is not a textxfer run folder: it has no {RUN_INFO}{hint}. Point{what} at the "
                         f"`output_dir` of a finished run (or a folder written by `textxfer merge` or `ensemble`).")
