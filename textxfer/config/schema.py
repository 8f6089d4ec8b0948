"""The recipe's sections as dataclasses: every key with its default, a one-line help, and its allowed
values or range beside it (checked by `textxfer.config.load` on every value read).

A recipe is YAML with the sections `data`, `model`, `train`, the optional `push_to_hub`, and the
top-level keys `output_dir` and `overwrite`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..methods import method_names

# The trackers `accelerate.Accelerator(log_with=...)` knows (accelerate.utils.LoggerType, less `all`);
# written out so reading a recipe does not import accelerate (and torch). A test keeps them in step.
TRACKERS = ("tensorboard", "mlflow", "wandb", "aim", "trackio", "comet_ml", "clearml", "dvclive", "swanlab")


def _f(default: Any, help: str, choices: tuple | None = None, at_least=None, above=None, below=None,
       at_most=None):
    """A dataclass field with a one-line help text, and optionally its allowed values or its range
    (`at_least`/`above` and `at_most`/`below`; checked with every value read, see config.load)."""
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    bounds = {k: v for k, v in (("at_least", at_least), ("above", above), ("below", below), ("at_most", at_most))
              if v is not None}
    if bounds:
        meta["range"] = bounds
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    train: Optional[str] = _f(None, "training file: .csv, .tsv, .jsonl/.json or .parquet (required, unless data.dataset)")
    validation: Optional[str] = _f(None, "validation file; without it, a stratified split of `train`")
    test: Optional[str] = _f(None, "test file, evaluated once with the best weights")
    dataset: Optional[str] = _f(None, "instead of train/validation/test files: a Hub dataset id (OWNER/NAME), a "
                                "`save_to_disk` folder, or a folder of data files (parquet, csv, jsonl)")
    dataset_config: Optional[str] = _f(None, "data.dataset: the configuration (subset) to load, where it has several")
    dataset_revision: Optional[str] = _f(None, "data.dataset on the Hub: branch, tag or commit (default: main)")
    dataset_train_split: str = _f("train", "data.dataset: the split to train on")
    dataset_validation_split: Optional[str] = _f("validation", "data.dataset: the validation split, used where the "
                                                 "dataset has it (else, or null: a data.validation_split share of train)")
    dataset_test_split: Optional[str] = _f("test", "data.dataset: the test split, used where the dataset has it "
                                           "(null: no test)")
    text_column: Union[str, list] = _f("text", "text column, or a list of columns joined into one text")
    label_column: str = _f("label", "label column (strings or integers)")
    max_length: int = _f(128, "truncate texts beyond this many tokens", at_least=1)
    validation_split: float = _f(0.1, "fraction of `train` held out when no validation file is given", above=0, below=1)
    encoding: str = _f("utf-8", "text encoding of the input files, e.g. utf-8, latin-1, cp1252")
    drop_invalid_rows: bool = _f(False, "drop rows with empty text or missing label (and say how many)")
    text_pair_column: Optional[str] = _f(None, "second text of a sentence pair (e.g. question for a clause, body for a subject)")
    multi_label: bool = _f(False, "each row carries a set of labels: a JSON list (JSONL) or a delimited string (CSV)")
    label_separator: str = _f("|", "separator of the labels in a multi-label CSV cell")
    long_text: str = _f("truncate", "texts longer than max_length: keep the start, keep head and tail, or split into "
                        "overlapping windows scored per document", ("truncate", "head_tail", "chunks"))
    stride: int = _f(32, "chunks: tokens shared by consecutive windows", at_least=0)
    chunk_aggregation: str = _f("mean", "chunks: how window logits combine into a document's", ("mean", "max"))
    max_chunks: Optional[int] = _f(None, "chunks: at most this many evenly spaced windows per document (null: all)",
                                  at_least=1)
    unlabeled: Optional[str] = _f(None, "unlabeled in-domain text (.txt one per line, or a table with the text column) "
                                  "for `textxfer adapt`, and for self-training (train.self_training_rounds)")
    positive_label: Optional[str] = _f(None, "binary tasks: the class of interest for precision-recall reports and "
                                       "target thresholds (default: the rarer class in train)")
    leakage: str = _f("warn", "validation/test rows whose text (normalised) is also in train: warn with the counts, "
                      "refuse to train, or drop the train copies", ("warn", "error", "drop_from_train"))
    group_column: Optional[str] = _f(None, "column naming each row's group (channel, language, tier): metrics per group "
                                     "on validation and test, the worst group named (every labeled file needs it)")


@dataclass(frozen=True)
class LoraSettings:
    r: int = _f(16, "rank of the LoRA update matrices", at_least=1)
    alpha: float = _f(32.0, "LoRA scaling numerator (the update is scaled by alpha / r)", above=0)
    dropout: float = _f(0.05, "dropout on the LoRA input", at_least=0, below=1)
    target_modules: Union[str, list] = _f("all-linear", "layers that get adapters: `all-linear` (every linear layer "
                                          "but the head) or a list of module names, e.g. [q_proj, v_proj]")
    use_dora: bool = _f(False, "DoRA: weight-decomposed LoRA (magnitude and direction trained separately)")
    compute_dtype: str = _f("bfloat16", "qlora: dtype the 4-bit weights are dequantized to for matmuls",
                            ("bfloat16", "float16", "float32"))
    double_quant: bool = _f(True, "qlora: also quantize the quantization constants (saves ~0.4 bit per weight)")


@dataclass(frozen=True)
class ModelConfig:
    name: str = _f("minilm-l6", "embedded alias (minilm-l6), a local model folder, or a Hub id")
    method: str = _f("full", "transfer method", method_names())
    pooling: str = _f("mean", "feature_extraction pooling of token states", ("mean", "cls"))
    pooler_init: str = _f("auto", "full/scratch BERT-style pooler: pretrained weights, or identity (auto: identity for "
                          "sentence-embedding checkpoints, whose pooler was never trained)", ("auto", "pretrained", "identity"))
    revision: Optional[str] = _f(None, "Hub revision (branch, tag or commit) when `name` is a Hub id")
    trust_remote_code: bool = _f(False, "allow custom model code from the Hub (off: only use it for models you trust)")
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "lora/qlora adapter settings"})
    freeze_layers: Optional[int] = _f(None, "full/lp_ft: freeze the embeddings and the bottom k transformer layers")



@dataclass(frozen=True)
class TrainConfig:
    epochs: Optional[int] = _f(None, "passes over the training data (default depends on model.method)", at_least=1)
    min_steps: Optional[int] = _f(None, "train at least this many optimizer steps, adding epochs on small data sets "
                                  "(default: per method when train.epochs is left at its default, else 0)", at_least=0)
    lr: Optional[float] = _f(None, "peak learning rate (default depends on model.method)", above=0)
    batch_size: int = _f(32, "training examples per optimizer step and process, before accumulation", at_least=1)
    eval_batch_size: int = _f(64, "examples per evaluation/prediction batch", at_least=1)
    seed: int = _f(42, "random seed for splits, initialisation, shuffling and dropout", at_least=0, at_most=2**32 - 1)
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and LayerNorm weights)", at_least=0)
    warmup_ratio: float = _f(0.1, "fraction of optimizer steps spent warming the LR up linearly", at_least=0, below=1)
    gradient_accumulation_steps: int = _f(1, "micro-batches accumulated per optimizer step", at_least=1)
    max_grad_norm: Optional[float] = _f(1.0, "gradient clipping norm (null: off)", above=0)
    mixed_precision: str = _f("no", "autocast precision", ("no", "bf16", "fp16"))
    early_stopping_patience: Optional[int] = _f(None, "stop after this many epochs without better validation macro-F1 "
                                                "(null: off)", at_least=1)
    class_weights: str = _f("none", "loss weights per class (multi-label: positive weight per label)", ("none", "balanced"))
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass: less memory, ~30% slower")
    layer_lr_decay: Optional[float] = _f(None, "discriminative LRs: each layer below the top gets the LR of the one "
                                         "above times this factor (e.g. 0.8); the head trains at train.lr", above=0,
                                         at_most=1)
    gradual_unfreezing: bool = _f(False, "ULMFiT: epoch 1 trains the head only, each later epoch unfreezes one more "
                                  "layer from the top")
    l2_sp: Optional[float] = _f(None, "L2-SP: penalize the squared distance from the pretrained weights (e.g. 0.01)",
                                at_least=0)
    save_every: Optional[int] = _f(None, "fine-tuning checkpoints: every N optimizer steps (null: at each epoch end; "
                                   "0: off)", at_least=0)
    keep_checkpoints: int = _f(2, "how many of the newest checkpoints to keep", at_least=1)
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
                                   "rows and the head is refit; the round with the best validation score is kept (0: off)",
                                   at_least=0)
    self_training_per_class: int = _f(100, "self-training: pseudo-labelled texts added per predicted class (the most "
                                      "confident ones)", at_least=1)
    student_epochs: int = _f(0, "self-training, noisy student: after the rounds, fine-tune the backbone and the head "
                             "together (dropout on) for this many epochs on the labeled rows plus the kept head's "
                             "pseudo-labels; kept only if it scores better on validation (0: off)", at_least=0)
    student_generations: int = _f(3, "noisy student: at most this many students, each taught by the previous one "
                                  "(its head self-trained again on its own features); stops at the first student no "
                                  "better on validation", at_least=1)
    student_lr: float = _f(2e-5, "self-training: learning rate of the noisy-student fine-tuning (backbone and head)",
                           above=0)
    student_noise: float = _f(0.15, "noisy student: share of each student's input tokens replaced by the mask token "
                              "in training (input noise, as Noisy Student prescribes; validation and prediction see "
                              "clean text; 0: dropout is the only noise)", at_least=0, below=1)
    focal_gamma: float = _f(2.0, "focal loss: how strongly easy examples are down-weighted", at_least=0)
    tune_thresholds: bool = _f(True, "multi-label: pick each label's decision threshold for the best F1 on validation "
                               "(false: 0.5)")
    target_precision: Optional[float] = _f(None, "binary: pick the decision threshold that reaches this precision "
                                           "on validation with the most recall", above=0, below=1)
    target_recall: Optional[float] = _f(None, "binary: pick the decision threshold that reaches this recall "
                                        "on validation with the most precision", above=0, below=1)
    report_to: list = _f([], "experiment trackers, through Accelerate: tensorboard, mlflow, wandb, ... (empty: none; "
                         "offline by default, see textxfer.training.tracking)", TRACKERS)
    extra_metrics: list = _f([], "`evaluate` metrics (a Hub metric name or a local metric folder/script) computed on "
                             "the validation and test predictions besides the built-in ones (needs the `metrics` extra)")
    calibration: str = _f("temperature", "fit a temperature on the validation logits after training so scores mean "
                          "what they say (multi-label: per label, temperature or Platt scaling, the better on "
                          "held-out validation rows; never changes the most probable class), or keep raw scores",
                          ("temperature", "none"))
    min_confidence: Optional[float] = _f(None, "single-label: the run's default abstention threshold; a text whose "
                                         "calibrated top score is below it gets no predicted_label (its best guess "
                                         "stays in suggested_label); `predict --min-confidence` overrides it",
                                         at_least=0, at_most=1)


@dataclass(frozen=True)
class PushConfig:
    repo_id: Optional[str] = _f(None, "Hugging Face Hub repository to push the finished run to, as OWNER/NAME (required)")
    private: bool = _f(False, "create the repository as private (an existing repository keeps its visibility)")
    revision: str = _f("main", "branch to push to (created from main when it does not exist)")
    license: Optional[str] = _f(None, "license id for the model card, e.g. apache-2.0 (default: the embedded base "
                                "model's license, else `other`)")
    base_model: Optional[str] = _f(None, "Hub id of the base model when `model.name` is a local folder (adapters "
                                   "need it: they are loaded on top of it)")


@dataclass(frozen=True)
class Recipe:
    """A whole recipe. Frozen: a resolved recipe is replaced (`dataclasses.replace`), never changed, so
    the `recipe.yaml` a run saves is exactly what ran."""

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


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
OPTIONAL_SECTIONS = {"push_to_hub": PushConfig}  # may be left out entirely (None)
TOP_LEVEL = {"output_dir": "the run folder", "overwrite": "replace a finished textxfer run at output_dir"}
NESTED = {("model", "lora"): LoraSettings}


def valid_keys() -> list[str]:
    """Every dotted key a recipe accepts."""
    keys = list(TOP_LEVEL)
    for section, cls in {**SECTIONS, **OPTIONAL_SECTIONS}.items():
        for f in dataclasses.fields(cls):
            nested = NESTED.get((section, f.name))
            keys += [f"{section}.{f.name}.{g.name}" for g in dataclasses.fields(nested)] if nested else [f"{section}.{f.name}"]
    return keys
