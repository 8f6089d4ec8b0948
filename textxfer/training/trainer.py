"""`train(recipe)`: setup -> the method's fitting plan -> finalize.

Setup reads and checks the data, builds the tokenizer and the model the recipe's method asks for
(`textxfer.methods`), resolves what the model and data decide (the length the model accepts), and
tokenizes once; the plan (`textxfer.training.plans`) fits; finalize picks the decision rule on
validation and writes the run folder, scoring the test file with the saved model. One
`accelerate.Accelerator` runs it all, the same on CPU, one GPU or many.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed

from ..config import Recipe, head_solver
from ..config.resolve import with_max_length
from ..data.audit_checks import guard_leakage
from ..data.batching import PadCollator, TokenizedDataset, tokenize
from ..data.splits import Splits, load_splits
from ..errors import TextxferError
from ..evaluation import metrics
from ..evaluation.extra_metrics import load_extra_metrics
from ..fsutil import check_free_space
from ..log import get_logger, note
from ..methods import get_method
from ..models.build import accepts_position_ids, build_model, count_parameters, has_accelerator
from ..models.loading import build_tokenizer
from ..models.strategies import freeze_bottom
from ..runs.folder import model_bytes, run_output
from . import resume, tracking
from .context import Run
from .finalize import decision_rule, fit_run_calibration, run_metrics, validation_trust, write_run
from .heads import HEAD_L2_GRID
from .losses import make_loss
from .noisy_student import student_noise
from .plans import PLANS
from .self_training import unlabeled_set

log = get_logger()


def make_accelerator(recipe: Recipe) -> Accelerator:
    """The one Accelerator of a run; hardware comes from `accelerate launch`, precision from the recipe."""
    precision = recipe.train.mixed_precision
    if precision == "fp16" and not torch.cuda.is_available():
        raise TextxferError(
            "`train.mixed_precision=fp16` needs a CUDA GPU, and none is visible. Use `bf16` "
            "(supported on recent CPUs and GPUs) or `no`."
        )
    # Accelerate keeps its state in a process-wide singleton that refuses a second precision. A
    # Python user (or `textxfer compare`) may train several recipes in one process, so start each
    # run from a clean slate; the distributed part (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    # On a machine with no accelerator, say so: Accelerate then runs several launched processes
    # as CPU data parallelism (gloo) instead of treating each one as a lone single process.
    # Gradual unfreezing changes which parameters get gradients from epoch to epoch: DDP must expect that.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if recipe.train.gradual_unfreezing else []
    return Accelerator(mixed_precision=precision, cpu=not has_accelerator(), kwargs_handlers=handlers,
                       gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
                       **tracking.accelerator_options(recipe))  # train.report_to


def is_main_process() -> bool:
    """True in the process that writes files and prints results (always true without a launcher)."""
    return PartialState().is_main_process


def train(recipe: Recipe) -> dict:
    """Train, evaluate and save a classifier as the recipe says; returns the run's metrics.

    The output folder is checked before any work and locked for the whole run (by the main process,
    the only one that writes): see `textxfer.outputs.OutputFolder`."""
    started = time.perf_counter()
    load_extra_metrics(recipe.train.extra_metrics, recipe.data.multi_label)  # an unavailable metric fails now
    accelerator = make_accelerator(recipe)
    output = run_output(recipe)
    if not accelerator.is_main_process:
        return _train(recipe, accelerator, output, started)
    with output:
        resume.check_root(recipe.output_dir)
        with tracking.tracked(accelerator, recipe):
            return _train(recipe, accelerator, output, started)


def _train(recipe: Recipe, accelerator: Accelerator, output, started: float) -> dict:
    run = _setup(recipe, accelerator)
    setup_seconds = time.perf_counter() - started
    parameters = count_parameters(run.model)
    _say_what_runs(run, parameters)
    result = PLANS[run.method.fit](run)
    accelerator.wait_for_everyone()
    calibration = fit_run_calibration(run, result)
    decision = decision_rule(run, result, calibration)
    trust = validation_trust(run, result, decision, calibration)
    metrics_ = run_metrics(run, result, decision, parameters, setup_seconds, trust)
    # Under FSDP the weights are sharded across processes: gather them (a collective) before saving.
    state_dict = accelerator.get_state_dict(run.model) if accelerator.distributed_type == DistributedType.FSDP else None
    if accelerator.is_main_process:
        metrics_ = write_run(run, output, metrics_, decision, state_dict, calibration, trust)
        resume.remove_all(recipe.output_dir)  # the run folder is complete: nothing left to resume
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics_


def _setup(recipe: Recipe, accelerator: Accelerator) -> Run:
    """Data, tokenizer, model and tokenized splits; the recipe resolved for the model's length limit."""
    method = get_method(recipe.model.method)
    splits = load_splits(recipe.data, recipe.train.seed)  # every process reads: it is cheap and needs no sync
    splits = guard_leakage(splits, recipe.data, recipe.output_dir)  # data.leakage: warn, error or drop_from_train
    for message in splits.notes:
        note(log, message)
    tokenizer = build_tokenizer(recipe.model)
    noise = student_noise(recipe, tokenizer)  # refuses before any work when it cannot apply
    set_seed(recipe.train.seed)  # before the model is built: the new head's initialisation is seeded
    model = build_model(recipe.model, splits.labels.id2label, tokenizer.pad_token_id, splits.multi_label,
                        recipe.train.gradient_checkpointing)
    recipe = _fit_max_length(recipe, tokenizer, model.config)
    if accelerator.is_main_process:
        check_free_space(Path(recipe.output_dir).parent, _expected_run_bytes(recipe, model), f"the run folder "
                         f"{recipe.output_dir} and its checkpoints", fix=", or set `train.save_every=0` / "
                         f"`train.keep_checkpoints=1` for fewer checkpoints")
    if recipe.model.freeze_layers is not None:
        freeze_bottom(model, recipe.model.freeze_layers)
    d = recipe.data
    with accelerator.main_process_first():
        train_set, val_set = (TokenizedDataset(tokenize(split, tokenizer, d.max_length, d.long_text, d.stride, d.max_chunks))
                              for split in (splits.train, splits.validation))
        unlabeled = unlabeled_set(recipe, splits, tokenizer)
    loss_fn = make_loss(splits.multi_label, recipe.train.loss, _loss_weights(recipe, splits), recipe.train.focal_gamma)
    collate = PadCollator(tokenizer.pad_token_id, tokenizer.padding_side, accepts_position_ids(model))
    return Run(accelerator, recipe, method, splits, tokenizer, model, train_set, val_set, unlabeled, collate, loss_fn,
               noise)


def _fit_max_length(recipe: Recipe, tokenizer, model_config) -> Recipe:
    """The recipe with `data.max_length` clamped to what the tokenizer and the model's position embeddings allow."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(model_config, "max_position_embeddings", None)]
    limits = [limit for limit in limits if limit and limit < 1_000_000]
    if limits and recipe.data.max_length > min(limits):
        note(log, f"data.max_length={recipe.data.max_length} exceeds what {recipe.model.name} accepts; using "
                  f"{min(limits)}")
    return with_max_length(recipe, min(limits) if limits else None)


def _say_what_runs(run: Run, parameters: tuple[int, int]) -> None:
    recipe, splits, accelerator = run.recipe, run.splits, run.accelerator
    trainable, total = parameters
    windows = f" ({len(run.train_set)} windows)" if recipe.data.long_text == "chunks" else ""
    log.info(f"{recipe.model.method} on {recipe.model.name}: {len(splits.labels)} "
             f"{'labels (multi-label)' if splits.multi_label else 'classes'}, {len(splits.train)} train{windows} / "
             f"{len(splits.validation)} validation rows; {trainable:,} of {total:,} parameters train "
             f"({100 * trainable / total:.2f}%)")
    t = recipe.train
    if run.method.caches_features and head_solver(recipe) == "lbfgs":
        log.info(f"the head is fit by full-batch L-BFGS on the cached features, L2 strength chosen on validation "
                 f"from {', '.join(f'{v:g}' for v in HEAD_L2_GRID)} (train.head_solver; train.epochs and train.lr "
                 f"apply to `sgd` only)")
        return
    global_batch = t.batch_size * accelerator.num_processes * t.gradient_accumulation_steps
    log.info(f"effective batch {global_batch} = {t.batch_size} per step x {accelerator.num_processes} process(es) x "
             f"{t.gradient_accumulation_steps} accumulation step(s); lr {t.lr:g} with {t.warmup_ratio:.0%} linear "
             f"warmup, then linear decay over {t.epochs} epoch(s)")


def _loss_weights(recipe: Recipe, splits: Splits) -> torch.Tensor | None:
    """`train.class_weights=balanced`: per-class weights, or per-label positive weights (multi-label)."""
    if recipe.train.class_weights != "balanced":
        return None
    labels = list(splits.train["label"])
    weights = (metrics.positive_weights(labels) if splits.multi_label
               else metrics.class_weights(labels, len(splits.labels)))
    return torch.tensor(weights, dtype=torch.float)


def _expected_run_bytes(recipe: Recipe, model) -> int:
    """Disk the run will take at its peak: the saved model, and while training the newest checkpoints
    (weights, AdamW's two moments of the trainable ones, the best epoch's trainable weights)."""
    weights = model_bytes(model)
    t = recipe.train
    caches = get_method(recipe.model.method).caches_features
    if t.save_every == 0 or (caches and not t.student_epochs):  # a head on cached features: no checkpoints
        return weights
    trainable = weights if caches else sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    checkpoint = weights + 3 * trainable
    return weights + (t.keep_checkpoints + 1) * checkpoint  # a new one is complete before the oldest goes
