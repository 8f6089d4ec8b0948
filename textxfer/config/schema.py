"""Recipes: YAML files with `data`, `model` and `train` sections plus `output_dir`.

`load_recipe(path, overrides)` reads a recipe, applies dotted `key=value` overrides
(`train.lr=3e-5`), checks every key and value, and fills method-dependent defaults, so the
resolved recipe written into the run folder says exactly what ran.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ..errors import TextxferError

METHODS = ("full", "feature_extraction", "scratch", "lora", "qlora", "lp_ft")


def _f(default: Any, help: str, choices: tuple | None = None):
    """A dataclass field with a one-line help text (and optional allowed values)."""
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    train: Optional[str] = _f(None, "training file: .csv, .tsv, .jsonl/.json or .parquet (required)")
    validation: Optional[str] = _f(None, "validation file; without it, a stratified split of `train`")
    test: Optional[str] = _f(None, "test file, evaluated once with the best weights")
    text_column: Union[str, list] = _f("text", "text column, or a list of columns joined into one text")
    label_column: str = _f("label", "label column (strings or integers)")
    max_length: int = _f(128, "truncate texts beyond this many tokens")
    validation_split: float = _f(0.1, "fraction of `train` held out when no validation file is given")
    encoding: str = _f("utf-8", "text encoding of the input files, e.g. utf-8, latin-1, cp1252")
    drop_invalid_rows: bool = _f(False, "drop rows with empty text or missing label (and say how many)")
    text_pair_column: Optional[str] = _f(None, "second text of a sentence pair (e.g. question for a clause, body for a subject)")
    multi_label: bool = _f(False, "each row carries a set of labels: a JSON list (JSONL) or a delimited string (CSV)")
    label_separator: str = _f("|", "separator of the labels in a multi-label CSV cell")
    long_text: str = _f("truncate", "texts longer than max_length: keep the start, keep head and tail, or split into "
                        "overlapping windows scored per document", ("truncate", "head_tail", "chunks"))
    stride: int = _f(32, "chunks: tokens shared by consecutive windows")
    chunk_aggregation: str = _f("mean", "chunks: how window logits combine into a document's", ("mean", "max"))
    max_chunks: Optional[int] = _f(None, "chunks: at most this many evenly spaced windows per document (null: all)")
    unlabeled: Optional[str] = _f(None, "unlabeled in-domain text (.txt one per line, or a table with the text column) "
                                  "for `textxfer adapt`, and for self-training (train.self_training_rounds)")
    positive_label: Optional[str] = _f(None, "binary tasks: the class of interest for precision-recall reports and "
                                       "target thresholds (default: the rarer class in train)")


@dataclass
class LoraSettings:
    r: int = _f(16, "rank of the LoRA update matrices")
    alpha: float = _f(32.0, "LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = _f(0.05, "dropout on the LoRA input")
    target_modules: Union[str, list] = _f("all-linear", "layers that get adapters: `all-linear` (every linear layer "
                                          "but the head) or a list of module names, e.g. [q_proj, v_proj]")
    use_dora: bool = _f(False, "DoRA: weight-decomposed LoRA (magnitude and direction trained separately)")
    compute_dtype: str = _f("bfloat16", "qlora: dtype the 4-bit weights are dequantized to for matmuls",
                            ("bfloat16", "float16", "float32"))
    double_quant: bool = _f(True, "qlora: also quantize the quantization constants (saves ~0.4 bit per weight)")


@dataclass
class ModelConfig:
    name: str = _f("minilm-l6", "embedded alias (minilm-l6), a local model folder, or a Hub id")
    method: str = _f("full", "transfer method", METHODS)
    pooling: str = _f("mean", "feature_extraction pooling of token states", ("mean", "cls"))
    pooler_init: str = _f("auto", "full/scratch BERT-style pooler: pretrained weights, or identity (auto: identity for "
                          "sentence-embedding checkpoints, whose pooler was never trained)", ("auto", "pretrained", "identity"))
    revision: Optional[str] = _f(None, "Hub revision (branch, tag or commit) when `name` is a Hub id")
    trust_remote_code: bool = _f(False, "allow custom model code from the Hub (off: only use it for models you trust)")
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "lora/qlora adapter settings"})
    freeze_layers: Optional[int] = _f(None, "full/lp_ft: freeze the embeddings and the bottom k transformer layers")


@dataclass
class TrainConfig:
    epochs: Optional[int] = _f(None, "passes over the training data (default depends on model.method)")
    min_steps: Optional[int] = _f(None, "train at least this many optimizer steps, adding epochs on small data sets "
                                  "(default: per method when train.epochs is left at its default, else 0)")
    lr: Optional[float] = _f(None, "peak learning rate (default depends on model.method)")
    batch_size: int = _f(32, "training examples per optimizer step and process, before accumulation")
    eval_batch_size: int = _f(64, "examples per evaluation/prediction batch")
    seed: int = _f(42, "random seed for splits, initialisation, shuffling and dropout")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and LayerNorm weights)")
    warmup_ratio: float = _f(0.1, "fraction of optimizer steps spent warming the LR up linearly")
    gradient_accumulation_steps: int = _f(1, "micro-batches accumulated per optimizer step")
    max_grad_norm: Optional[float] = _f(1.0, "gradient clipping norm (null: off)")
    mixed_precision: str = _f("no", "autocast precision", ("no", "bf16", "fp16"))
    early_stopping_patience: Optional[int] = _f(None, "stop after this many epochs without better validation macro-F1 (null: off)")
    class_weights: str = _f("none", "loss weights per class (multi-label: positive weight per label)", ("none", "balanced"))
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass: less memory, ~30% slower")
    layer_lr_decay: Optional[float] = _f(None, "discriminative LRs: each layer below the top gets the LR of the one "
                                         "above times this factor (e.g. 0.8); the head trains at train.lr")
    gradual_unfreezing: bool = _f(False, "ULMFiT: epoch 1 trains the head only, each later epoch unfreezes one more "
                                  "layer from the top")
    l2_sp: Optional[float] = _f(None, "L2-SP: penalize the squared distance from the pretrained weights (e.g. 0.01)")
    save_every: Optional[int] = _f(None, "fine-tuning checkpoints: every N optimizer steps (null: at each epoch end; 0: off)")
    keep_checkpoints: int = _f(2, "how many of the newest checkpoints to keep")
    resume: Optional[str] = _f(None, "continue an interrupted run: `auto` (newest checkpoint of output_dir) or a "
                               "checkpoint folder")
    sampler: str = _f("random", "training batches: every row once per epoch, or oversample rare classes",
                      ("random", "balanced"))
    loss: str = _f("cross_entropy", "cross-entropy (binary cross-entropy per label for multi-label) or focal loss",
                   ("cross_entropy", "focal"))
    head_solver: str = _f("auto", "feature_extraction: how the linear head is fit on the cached features: `lbfgs` "
                          "(full batch, L2 strength picked on validation; train.epochs/lr unused), `sgd` (AdamW "
                          "minibatches for train.epochs at train.lr), or `auto` (lbfgs unless train.sampler=balanced)",
                          ("auto", "lbfgs", "sgd"))
    self_training_rounds: int = _f(0, "feature_extraction with data.unlabeled: rounds of self-training; each round the "
                                   "head labels the unlabeled texts, the most confident per class join the training "
                                   "rows and the head is refit; the round with the best validation score is kept (0: off)")
    self_training_per_class: int = _f(100, "self-training: pseudo-labelled texts added per predicted class (the most "
                                      "confident ones)")
    student_epochs: int = _f(0, "self-training, noisy student: after the rounds, fine-tune the backbone and the head "
                             "together (dropout on) for this many epochs on the labeled rows plus the kept head's "
                             "pseudo-labels; kept only if it scores better on validation (0: off)")
    student_generations: int = _f(3, "noisy student: at most this many students, each taught by the previous one "
                                  "(its head self-trained again on its own features); stops at the first student no "
                                  "better on validation")
    student_lr: float = _f(2e-5, "self-training: learning rate of the noisy-student fine-tuning (backbone and head)")
    student_noise: float = _f(0.15, "noisy student: share of each student's input tokens replaced by the mask token "
                              "in training (input noise, as Noisy Student prescribes; validation and prediction see "
                              "clean text; 0: dropout is the only noise)")
    focal_gamma: float = _f(2.0, "focal loss: how strongly easy examples are down-weighted")
    tune_thresholds: bool = _f(True, "multi-label: pick each label's decision threshold for the best F1 on validation "
                               "(false: 0.5)")
    target_precision: Optional[float] = _f(None, "binary: pick the decision threshold that reaches this precision "
                                           "on validation with the most recall")
    target_recall: Optional[float] = _f(None, "binary: pick the decision threshold that reaches this recall "
                                        "on validation with the most precision")


@dataclass
class PushConfig:
    repo_id: Optional[str] = _f(None, "Hugging Face Hub repository to push the finished run to, as OWNER/NAME (required)")
    private: bool = _f(False, "create the repository as private (an existing repository keeps its visibility)")
    revision: str = _f("main", "branch to push to (created from main when it does not exist)")
    license: Optional[str] = _f(None, "license id for the model card, e.g. apache-2.0 (default: the embedded base "
                                "model's license, else `other`)")
    base_model: Optional[str] = _f(None, "Hub id of the base model when `model.name` is a local folder (adapters "
                                   "need it: they are loaded on top of it)")


@dataclass
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs/textxfer"
    # replace an existing finished run at output_dir (only one textxfer wrote, holding no other files)
    overwrite: bool = False
    push_to_hub: Optional[PushConfig] = None  # optional section: push the run to the Hub after training

    def to_dict(self) -> dict:
        """The recipe as plain YAML-ready data (without `push_to_hub` when it is not set)."""
        data = dataclasses.asdict(self)
        if data["push_to_hub"] is None:
            del data["push_to_hub"]
        return data


# Defaults that only make sense per method: a frozen backbone with cached features trains a
# linear head, which wants many cheap epochs and a high LR; fine-tuning wants few epochs and a
# low LR; a randomly initialised network wants a higher LR than fine-tuning.
METHOD_DEFAULTS = {
    "full": {"epochs": 5, "lr": 1e-4},
    "feature_extraction": {"epochs": 40, "lr": 3e-3},
    "scratch": {"epochs": 5, "lr": 3e-4},
    # Adapters train few weights from a small init: they want a higher LR than full fine-tuning.
    "lora": {"epochs": 3, "lr": 1e-3},
    "qlora": {"epochs": 3, "lr": 1e-3},
    # LP-FT: a linear probe on frozen features first (feature_extraction's 40 epochs at 3e-3, fixed),
    # then fine-tuning of everything from that head, at the fine-tuning defaults.
    "lp_ft": {"epochs": 5, "lr": 1e-4},
}

# With few labeled rows an epoch is a handful of steps, and the default epochs leave the model
# undertrained: the defaults also ask for a minimum number of optimizer steps. Measured on Banking77
# at 10 examples per class (770 rows): a feature-extraction head reached 80.3% test accuracy after its
# default 40 epochs (1,000 steps) and 85.2% after 5,000 steps. Large data sets are unaffected.
MIN_STEPS = {"feature_extraction": 5000, "full": 250, "lp_ft": 250, "scratch": 250, "lora": 250, "qlora": 250}

_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
_TOP_LEVEL = ("output_dir", "overwrite")  # keys outside the sections
# Sections that may be left out entirely (None), unlike data/model/train whose keys all have defaults.
_OPTIONAL_SECTIONS = {"push_to_hub": PushConfig}

# Hub repository ids: OWNER/NAME, letters, digits, `-`, `_` and `.`, no `--` or `..`, at most 96 characters
# per part, not starting or ending with `-` or `.` (huggingface_hub's validate_repo_id rules, owner required).
_REPO_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")


def repo_id_problem(repo_id) -> str | None:
    """Why `repo_id` is not a valid Hub model id of the form OWNER/NAME, or None when it is."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        return "it is empty"
    if repo_id.count("/") != 1:
        return "it must be OWNER/NAME: your user or organization name, a slash, and the model name"
    if "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        return "`--`, `..` and a trailing `.git` are not allowed"
    if not _REPO_ID.fullmatch(repo_id):
        return ("each part may only use letters, digits, `-`, `_` and `.`, may not start or end with `-` or `.`, "
                "and is at most 96 characters long")
    return None


def _nested_class(f: dataclasses.Field):
    """The dataclass of a nested section field (model.lora), else None."""
    return LoraSettings if f.name == "lora" else None


def valid_keys() -> list[str]:
    """Every dotted key a recipe accepts."""
    keys = list(_TOP_LEVEL)
    for section, cls in {**_SECTIONS, **_OPTIONAL_SECTIONS}.items():
        for f in dataclasses.fields(cls):
            nested = _nested_class(f)
            if nested:
                keys += [f"{section}.{f.name}.{g.name}" for g in dataclasses.fields(nested)]
            else:
                keys.append(f"{section}.{f.name}")
    return keys


def _unknown_key_error(key: str, where: str) -> TextxferError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    if not close:  # try the last component alone: `lr` -> `train.lr`
        tails = {k.split(".")[-1]: k for k in valid_keys()}
        hit = difflib.get_close_matches(key.split(".")[-1], list(tails), n=1, cutoff=0.6)
        close = [tails[hit[0]]] if hit else []
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return TextxferError(
        f"Unknown recipe key `{key}` in {where}.{hint} Valid keys are: {', '.join(valid_keys())}."
    )


def _coerce(value: Any, annotation: Any, key: str, choices: tuple | None, where: str) -> Any:
    """Check `value` against a field's type; accept ints for floats and numeric strings."""
    allowed = _types_of(annotation)
    if value is None:
        if type(None) in allowed:
            return None
        raise TextxferError(f"Recipe key `{key}` in {where} cannot be empty; give a value of type {_type_names(allowed)}.")
    if bool in allowed and isinstance(value, bool):
        pass
    elif float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    elif float in allowed and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    elif str in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise TextxferError(f"Recipe key `{key}` in {where} must be a finite number, got {value}. Fix the value in "
                            f"the recipe or override it, e.g. `{key}=...`.")
    if not any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed):
        raise TextxferError(
            f"Recipe key `{key}` in {where} must be {_type_names(allowed)}, got {value!r}. "
            f"Fix the value in the recipe or override it, e.g. `{key}=...`."
        )
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise TextxferError(f"Recipe key `{key}` in {where} must be a list of names, got {value!r}.")
    if choices and value not in choices:
        raise TextxferError(
            f"Recipe key `{key}` in {where} is {value!r}, which is not one of: {', '.join(map(str, choices))}."
        )
    return value


_NAMES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "None": type(None)}


def _types_of(annotation: Any) -> tuple:
    if isinstance(annotation, str):  # `from __future__ import annotations`
        annotation = eval(annotation, {"Optional": Optional, "Union": Union, **_NAMES})  # noqa: S307
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return tuple(t for a in typing.get_args(annotation) for t in _types_of(a))
    return (annotation,)


def _type_names(allowed: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in allowed)


def _build(cls, values: dict, section: str, where: str):
    if not isinstance(values, dict):
        raise TextxferError(f"Section `{section}` in {where} must be a mapping of keys to values, got {values!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key_error(f"{section}.{key}", where)
        f = fields[key]
        nested = _nested_class(f)
        if nested:
            kwargs[key] = _build(nested, value or {}, f"{section}.{key}", where)
        else:
            kwargs[key] = _coerce(value, f.type, f"{section}.{key}", f.metadata.get("choices"), where)
    return cls(**kwargs)


def parse_overrides(overrides: list[str] | None) -> dict:
    """Turn `["train.lr=3e-5", "data.text_column=[subject,body]"]` into a nested dict."""
    nested: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise TextxferError(
                f"Override `{item}` is not of the form key=value (for example `train.lr=3e-5` or `model.method=full`)."
            )
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in valid_keys():
            raise _unknown_key_error(key, "the command-line overrides")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, set)):
            value = raw
        if key in _TOP_LEVEL:
            nested[key] = value
        else:
            *parents, name = key.split(".")
            target = nested
            for part in parents:
                target = target.setdefault(part, {})
            target[name] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recipe_from_dict(raw: dict, where: str = "the recipe") -> Recipe:
    """Validate a nested dict into a `Recipe` and fill method-dependent defaults."""
    if not isinstance(raw, dict):
        raise TextxferError(f"{where} must be a YAML mapping with sections data, model, train and output_dir.")
    for key in raw:
        if key not in (*_SECTIONS, *_OPTIONAL_SECTIONS, *_TOP_LEVEL):
            raise _unknown_key_error(str(key), where)
    sections = {name: _build(cls, raw.get(name) or {}, name, where) for name, cls in _SECTIONS.items()}
    sections.update({name: _build(cls, raw[name], name, where) for name, cls in _OPTIONAL_SECTIONS.items()
                     if raw.get(name) is not None})
    output_dir = raw.get("output_dir", Recipe.output_dir)
    if not isinstance(output_dir, str) or not output_dir.strip():
        raise TextxferError(f"`output_dir` in {where} must be a folder path, got {output_dir!r}.")
    overwrite = raw.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise TextxferError(f"`overwrite` in {where} must be true or false, got {overwrite!r}.")
    recipe = Recipe(**sections, output_dir=output_dir, overwrite=overwrite)
    _check(recipe, where)
    if recipe.train.epochs is None and recipe.train.min_steps is None:
        recipe.train.min_steps = MIN_STEPS[recipe.model.method]
    for key, value in METHOD_DEFAULTS[recipe.model.method].items():
        if getattr(recipe.train, key) is None:
            setattr(recipe.train, key, value)
    return recipe


def _check(recipe: Recipe, where: str) -> None:
    d, t = recipe.data, recipe.train
    if not d.train:
        raise TextxferError(
            f"{where} has no training file: set `data.train` to a CSV, TSV, JSONL or parquet file "
            f"(in the recipe, or on the command line as `data.train=path/to/train.csv`)."
        )
    positive = {"data.max_length": d.max_length, "train.batch_size": t.batch_size,
                "train.eval_batch_size": t.eval_batch_size,
                "train.gradient_accumulation_steps": t.gradient_accumulation_steps}
    if t.epochs is not None:
        positive["train.epochs"] = t.epochs
    for key, value in positive.items():
        if value < 1:
            raise TextxferError(f"`{key}` in {where} must be at least 1, got {value}.")
    if not 0 < d.validation_split < 1:
        raise TextxferError(f"`data.validation_split` in {where} must be between 0 and 1, got {d.validation_split}.")
    if t.lr is not None and t.lr <= 0:
        raise TextxferError(f"`train.lr` in {where} must be positive, got {t.lr}.")
    if t.weight_decay < 0:
        raise TextxferError(f"`train.weight_decay` in {where} must be 0 or more, got {t.weight_decay}.")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        raise TextxferError(f"`train.max_grad_norm` in {where} must be positive (or null for no clipping), got "
                            f"{t.max_grad_norm}.")
    if t.min_steps is not None and t.min_steps < 0:
        raise TextxferError(f"`train.min_steps` in {where} must be 0 or more, got {t.min_steps}.")
    if t.early_stopping_patience is not None and t.early_stopping_patience < 1:
        raise TextxferError(f"`train.early_stopping_patience` in {where} must be at least 1 epoch (or null: off), got "
                            f"{t.early_stopping_patience}.")
    if not 0 <= t.seed < 2**32:
        raise TextxferError(f"`train.seed` in {where} must be between 0 and 4294967295, got {t.seed}.")
    if not 0 <= t.warmup_ratio < 1:
        raise TextxferError(f"`train.warmup_ratio` in {where} must be in [0, 1), got {t.warmup_ratio}.")
    if isinstance(d.text_column, list) and not d.text_column:
        raise TextxferError(f"`data.text_column` in {where} is an empty list; name at least one column.")
    if d.long_text == "chunks" and not 0 <= d.stride < d.max_length // 2:
        raise TextxferError(f"`data.stride` in {where} is {d.stride}: windows of data.max_length={d.max_length} tokens "
                            f"need a stride (overlap) from 0 to {d.max_length // 2 - 1}.")
    if d.max_chunks is not None and d.max_chunks < 1:
        raise TextxferError(f"`data.max_chunks` in {where} must be at least 1 (or null for all windows), got {d.max_chunks}.")
    if not d.label_separator:
        raise TextxferError(f"`data.label_separator` in {where} cannot be empty; the default is `|`.")
    if t.focal_gamma < 0:
        raise TextxferError(f"`train.focal_gamma` in {where} must be zero or positive, got {t.focal_gamma}.")
    for key, value in (("train.target_precision", t.target_precision), ("train.target_recall", t.target_recall)):
        if value is not None and not 0 < value < 1:
            raise TextxferError(f"`{key}` in {where} must be between 0 and 1, got {value}.")
        if value is not None and d.multi_label:
            raise TextxferError(f"`{key}` in {where} applies to binary tasks; multi-label runs tune one threshold "
                                f"per label instead (train.tune_thresholds).")
    if t.save_every is not None and t.save_every < 0:
        raise TextxferError(f"`train.save_every` in {where} must be 0 (off), a positive step count, or null (each epoch).")
    if t.keep_checkpoints < 1:
        raise TextxferError(f"`train.keep_checkpoints` in {where} must be at least 1, got {t.keep_checkpoints}.")
    _check_strategies(recipe, where)
    _check_push(recipe, where)
    lora = recipe.model.lora
    if lora.r < 1 or lora.alpha <= 0 or not 0 <= lora.dropout < 1:
        raise TextxferError(f"`model.lora` in {where} needs r >= 1, alpha > 0 and 0 <= dropout < 1; got r={lora.r}, "
                            f"alpha={lora.alpha}, dropout={lora.dropout}.")
    if t.target_precision is not None and t.target_recall is not None:
        raise TextxferError(f"{where} sets both `train.target_precision` and `train.target_recall`; a single threshold "
                            f"can aim at one of them. Keep one.")


def _check_push(recipe: Recipe, where: str) -> None:
    """`push_to_hub` problems are reported before training, not after it."""
    push = recipe.push_to_hub
    if push is None:
        return
    problem = repo_id_problem(push.repo_id)
    if push.repo_id is None:
        raise TextxferError(f"`push_to_hub` in {where} has no `repo_id`: set it to OWNER/NAME, e.g. "
                            f"`push_to_hub: {{repo_id: acme/ticket-router}}`, or remove the section to skip the push.")
    if problem:
        raise TextxferError(f"`push_to_hub.repo_id` in {where} is {push.repo_id!r}, which is not a valid Hugging Face "
                            f"Hub model id: {problem}. Example: `acme/ticket-router`.")
    if not push.revision.strip() or push.revision != push.revision.strip():
        raise TextxferError(f"`push_to_hub.revision` in {where} must be a branch name such as `main`, got {push.revision!r}.")
    if push.base_model is not None and repo_id_problem(push.base_model):
        raise TextxferError(f"`push_to_hub.base_model` in {where} is {push.base_model!r}, which is not a Hub model id "
                            f"(OWNER/NAME, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct`): "
                            f"{repo_id_problem(push.base_model)}.")
    if recipe.model.method == "feature_extraction":
        raise TextxferError(f"`push_to_hub` in {where} cannot push a `model.method=feature_extraction` run: its mean-"
                            f"pooled linear head has no stock Hugging Face model class, so the Hub copy would not load "
                            f"with transformers. Use `model.method=full` or `lp_ft` (or lora), or remove `push_to_hub`.")


def _check_strategies(recipe: Recipe, where: str) -> None:
    """Layer-wise strategies apply to methods that train the pretrained layers; say so instead of ignoring them."""
    m, t = recipe.model, recipe.train
    layerwise = {"model.freeze_layers": m.freeze_layers is not None, "train.layer_lr_decay": t.layer_lr_decay is not None,
                 "train.gradual_unfreezing": t.gradual_unfreezing, "train.l2_sp": t.l2_sp is not None}
    used = [key for key, on in layerwise.items() if on]
    reasons = {"feature_extraction": "its backbone is frozen and only a linear head trains",
               "lora": "only low-rank adapters train, not the pretrained layers themselves",
               "qlora": "only low-rank adapters train, not the pretrained (4-bit) layers themselves",
               "scratch": "there are no pretrained weights to protect or to transfer"}
    if used and m.method in reasons:
        raise TextxferError(f"{', '.join(f'`{k}`' for k in used)} in {where} cannot apply to `model.method={m.method}`: "
                            f"{reasons[m.method]}. Use `model.method=full` or `lp_ft`, or remove the key.")
    if m.freeze_layers is not None and m.freeze_layers < 0:
        raise TextxferError(f"`model.freeze_layers` in {where} must be 0 or more, got {m.freeze_layers}.")
    if t.layer_lr_decay is not None and not 0 < t.layer_lr_decay <= 1:
        raise TextxferError(f"`train.layer_lr_decay` in {where} must be in (0, 1], got {t.layer_lr_decay}.")
    if t.l2_sp is not None and t.l2_sp < 0:
        raise TextxferError(f"`train.l2_sp` in {where} must be 0 or more, got {t.l2_sp}.")
    if t.gradual_unfreezing and m.freeze_layers is not None:
        raise TextxferError(f"{where} sets both `train.gradual_unfreezing` and `model.freeze_layers`; gradual "
                            f"unfreezing decides per epoch which layers train. Keep one.")
    _check_self_training(recipe, where)
    if t.head_solver == "lbfgs" and t.sampler == "balanced":
        raise TextxferError(f"{where} sets `train.head_solver=lbfgs` with `train.sampler=balanced`: the L-BFGS head "
                            f"fits all rows at once, so there are no batches to rebalance. Use `train.class_weights="
                            f"balanced` with it, or `train.head_solver=sgd` (or `auto`) to keep the balanced sampler.")


def _check_self_training(recipe: Recipe, where: str) -> None:
    """Self-training refits the cached-feature head on pseudo-labels: say where that cannot apply."""
    d, m, t = recipe.data, recipe.model, recipe.train
    if t.self_training_rounds < 0 or t.self_training_per_class < 1:
        raise TextxferError(f"`train.self_training_rounds` in {where} must be 0 (off) or more and "
                            f"`train.self_training_per_class` at least 1; got {t.self_training_rounds} and "
                            f"{t.self_training_per_class}.")
    if t.student_epochs < 0 or t.student_lr <= 0 or t.student_generations < 1:
        raise TextxferError(f"`train.student_epochs` in {where} must be 0 (off) or more, `train.student_lr` above 0 "
                            f"and `train.student_generations` at least 1; got {t.student_epochs}, {t.student_lr} and "
                            f"{t.student_generations}.")
    if not 0 <= t.student_noise < 1:
        raise TextxferError(f"`train.student_noise` in {where} is the share of a noisy student's input tokens that are "
                            f"masked: it must be at least 0 (no masking) and below 1; got {t.student_noise}.")
    if not t.self_training_rounds:
        if t.student_epochs:
            raise TextxferError(f"`train.student_epochs` in {where} fine-tunes a student on self-training's "
                                f"pseudo-labels, and self-training is off. Set `train.self_training_rounds` (e.g. 3) "
                                f"with `data.unlabeled=FILE`, or set `train.student_epochs=0`.")
        return
    problem = None
    if m.method != "feature_extraction":
        problem = (f"it refits the linear head on cached frozen features, and `model.method={m.method}` trains the "
                   f"backbone. Use `model.method=feature_extraction`")
    elif not d.unlabeled:
        problem = "it needs unlabeled texts to pseudo-label. Set `data.unlabeled=FILE` (.txt one per line, or a table)"
    elif d.multi_label:
        problem = "it picks one most probable class per text, and this recipe is multi-label. Set the rounds to 0"
    elif d.text_pair_column:
        problem = "the unlabeled file holds single texts, and this recipe reads text pairs. Set the rounds to 0"
    elif t.head_solver == "sgd" or (t.head_solver == "auto" and t.sampler == "balanced"):
        problem = ("it refits the head with the L-BFGS solver. Set `train.head_solver=lbfgs` (with "
                   "`train.class_weights=balanced` instead of the balanced sampler)")
    if problem:
        raise TextxferError(f"`train.self_training_rounds` in {where} cannot apply: {problem}.")


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (or start from defaults when `path` is None) and apply `key=value` overrides.

    Relative data paths are kept as written: they resolve against the working directory, like
    every command-line tool. Raises `TextxferError` with a clear message on any problem.
    """
    raw: dict = {}
    where = "the recipe"
    if path is not None:
        path = Path(path)
        where = f"recipe {path}"
        if not path.is_file():
            raise TextxferError(f"Recipe file {path} does not exist. Check the path (recipes live in `recipes/`).")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise TextxferError(f"Recipe {path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}.") from None
        except UnicodeDecodeError:
            raise TextxferError(f"Recipe {path} is not UTF-8 text; save it as UTF-8.") from None
    merged = _merge(raw, parse_overrides(overrides)) if overrides else raw
    return recipe_from_dict(merged, where)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe as YAML."""
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
