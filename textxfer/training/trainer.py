"""The training loop: one `accelerate.Accelerator`, the same code on CPU, one GPU or many.

`train(recipe)` reads and checks the data, builds the model for the recipe's method, trains with
AdamW and a linear warmup/decay schedule, evaluates on validation every epoch (early stopping on
macro-F1, keeping the best weights), then writes the run folder and evaluates the saved model on
the test file. For `feature_extraction` the frozen backbone runs once over the data and only the
head trains, on the cached features.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import checkpoints
from ..evaluation import metrics as metrics_lib
from ..data.batching import (MODEL_INPUTS, PadCollator, TokenizedDataset, TokenNoise, balanced_weights, eval_loader, tokenize,
                       train_loader)
from ..config.schema import METHOD_DEFAULTS, MIN_STEPS, Recipe
from ..data.splits import Splits, load_splits, read_unlabeled
from ..evaluation.decisions import aggregate, probabilities, threshold_for_target, tune_label_thresholds
from ..errors import TextxferError
from .losses import make_loss
from ..models.build import PooledClassifier, accepts_position_ids, build_model, build_tokenizer, count_parameters
from ..fsutil import check_free_space
from ..runs.folder import model_bytes, run_output, write_run
from .self_training import pseudo_labels, with_pseudo_labels, without_known
from ..models.strategies import L2SP, GradualUnfreezing, freeze_bottom, layerwise_groups


@dataclass
class FitResult:
    """What the loop learned: best weights, per-epoch history and throughput."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -1.0
    samples: int = 0
    seconds: float = 0.0
    best_validation_logits: torch.Tensor | None = None  # per document, at the best epoch
    best_validation_labels: torch.Tensor | None = None
    timings: dict = field(default_factory=dict)  # named phases of the fit, seconds


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
    return Accelerator(mixed_precision=precision, cpu=not _has_accelerator(), kwargs_handlers=handlers,
                       gradient_accumulation_steps=recipe.train.gradient_accumulation_steps)


def _has_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or bool(xpu and xpu.is_available())


def train(recipe: Recipe) -> dict:
    """Train, evaluate and save a classifier as the recipe says; returns the run's metrics.

    The output folder is checked before any work and locked for the whole run (by the main process,
    the only one that writes): see `textxfer.fsutil.OutputFolder`."""
    started = time.perf_counter()
    accelerator = make_accelerator(recipe)
    output = run_output(recipe)
    if not accelerator.is_main_process:
        return _train(recipe, accelerator, output, started)
    with output:
        checkpoints.check_root(recipe.output_dir)
        return _train(recipe, accelerator, output, started)


def _train(recipe: Recipe, accelerator: Accelerator, output, started: float) -> dict:
    seed = recipe.train.seed
    splits = load_splits(recipe.data, seed)  # every process reads: it is cheap and needs no sync
    for note in splits.notes:
        accelerator.print(f"textxfer: note: {note}", file=sys.stderr)
    tokenizer = build_tokenizer(recipe.model)
    noise = _student_noise(recipe, tokenizer)  # refuses before any work when it cannot apply
    set_seed(seed)  # before the model is built: the new head's initialisation is seeded
    model = build_model(recipe.model, splits.labels.id2label, tokenizer.pad_token_id, splits.multi_label,
                        recipe.train.gradient_checkpointing)
    _fit_max_length(recipe, tokenizer, model.config, accelerator)
    run_bytes = _expected_run_bytes(recipe, model)
    if accelerator.is_main_process:
        check_free_space(Path(recipe.output_dir).parent, run_bytes, f"the run folder {recipe.output_dir} and its "
                         f"checkpoints", fix=", or set `train.save_every=0` / `train.keep_checkpoints=1` for fewer "
                         f"checkpoints")
    if recipe.model.freeze_layers is not None:
        freeze_bottom(model, recipe.model.freeze_layers)
    d = recipe.data
    with accelerator.main_process_first():
        train_set, val_set = (TokenizedDataset(tokenize(split, tokenizer, d.max_length, d.long_text, d.stride, d.max_chunks))
                              for split in (splits.train, splits.validation))
        unlabeled_set = _unlabeled_set(recipe, splits, tokenizer, accelerator)
    setup_seconds = time.perf_counter() - started
    trainable, total = count_parameters(model)
    windows = f" ({len(train_set)} windows)" if d.long_text == "chunks" else ""
    accelerator.print(
        f"textxfer: {recipe.model.method} on {recipe.model.name}: {len(splits.labels)} "
        f"{'labels (multi-label)' if splits.multi_label else 'classes'}, "
        f"{len(splits.train)} train{windows} / {len(splits.validation)} validation rows; "
        f"{trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f}%)"
    )
    t = recipe.train
    global_batch = t.batch_size * accelerator.num_processes * t.gradient_accumulation_steps
    if recipe.model.method == "feature_extraction" and head_solver(recipe) == "lbfgs":
        accelerator.print(f"textxfer: the head is fit by full-batch L-BFGS on the cached features, L2 strength chosen "
                          f"on validation from {', '.join(f'{v:g}' for v in HEAD_L2_GRID)} (train.head_solver; "
                          f"train.epochs and train.lr apply to `sgd` only)")
    else:
        accelerator.print(f"textxfer: effective batch {global_batch} = {t.batch_size} per step x "
                          f"{accelerator.num_processes} process(es) x {t.gradient_accumulation_steps} accumulation "
                          f"step(s); lr {t.lr:g} with {t.warmup_ratio:.0%} linear warmup, then linear decay over "
                          f"{t.epochs} epoch(s)")
    loss_fn = make_loss(splits.multi_label, recipe.train.loss, _loss_weights(recipe, splits), recipe.train.focal_gamma)
    collate = PadCollator(tokenizer.pad_token_id, tokenizer.padding_side, accepts_position_ids(model))
    if recipe.model.method == "feature_extraction":
        result = _fit_head(accelerator, model, train_set, val_set, collate, recipe, loss_fn, splits.multi_label,
                           unlabeled_set, noise)
    else:
        if recipe.model.method == "lp_ft":
            _linear_probe(accelerator, model, train_set, val_set, collate, recipe, loss_fn, splits.multi_label)
        result = _fine_tune(accelerator, model, train_set, val_set, collate, recipe, loss_fn, splits.multi_label)
    accelerator.wait_for_everyone()
    decision = _decision_rule(recipe, splits, result)
    run_metrics = {
        "validation": _best_validation(result, splits.multi_label),
        "decision": decision,
        "train": {
            "samples_per_second": result.samples / max(result.seconds, 1e-9),
            "wall_seconds": result.seconds,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            # a noisy student fine-tunes the backbone too
            "trainable_parameters": total if recipe.train.student_epochs else trainable,
            "total_parameters": total,
            "num_processes": accelerator.num_processes,
            "effective_batch_size": global_batch,
            # where the time went: loading and tokenizing, then the training loop (feature
            # extraction: computing the cached features, then fitting the head)
            "timings": {"setup_seconds": setup_seconds, **result.timings},
        },
        "history": result.history,
    }
    # Under FSDP the weights are sharded across processes: gather them (a collective) before saving.
    state_dict = accelerator.get_state_dict(model) if accelerator.distributed_type == DistributedType.FSDP else None
    if accelerator.is_main_process:
        run_metrics = write_run(recipe, output, accelerator.unwrap_model(model), tokenizer, splits, run_metrics,
                                decision, state_dict, expected_bytes=model_bytes(model))
        checkpoints.remove_all(recipe.output_dir)  # the run folder is complete: nothing left to resume
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_metrics


def _expected_run_bytes(recipe: Recipe, model: nn.Module) -> int:
    """Disk the run will take at its peak: the saved model, and while training the newest checkpoints
    (weights, AdamW's two moments of the trainable ones, the best epoch's trainable weights)."""
    weights = model_bytes(model)
    t = recipe.train
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    fine_tunes = recipe.model.method != "feature_extraction" or t.student_epochs
    if t.save_every == 0 or not fine_tunes:
        return weights
    checkpoint = weights + 3 * (trainable if recipe.model.method != "feature_extraction" else weights)
    return weights + (t.keep_checkpoints + 1) * checkpoint  # a new one is complete before the oldest goes


def is_main_process() -> bool:
    """True in the process that writes files and prints results (always true without a launcher)."""
    return PartialState().is_main_process


def _fit_max_length(recipe: Recipe, tokenizer, model_config, accelerator: Accelerator) -> None:
    """Clamp `data.max_length` to what the tokenizer and the model's position embeddings allow."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(model_config, "max_position_embeddings", None)]
    limits = [limit for limit in limits if limit and limit < 1_000_000]
    if limits and recipe.data.max_length > min(limits):
        accelerator.print(f"textxfer: note: data.max_length={recipe.data.max_length} exceeds what {recipe.model.name} "
                          f"accepts; using {min(limits)}", file=sys.stderr)
        recipe.data.max_length = min(limits)


def _best_validation(result: FitResult, multi_label: bool) -> dict:
    best = result.history[result.best_epoch - 1]
    keys = ("micro_f1", "macro_f1", "subset_accuracy") if multi_label else ("accuracy", "macro_f1")
    return {**{k: best[f"validation_{k}"] for k in (*keys, "loss", "n")}, "epoch": result.best_epoch}


def _loss_weights(recipe: Recipe, splits: Splits) -> torch.Tensor | None:
    """`train.class_weights=balanced`: per-class weights, or per-label positive weights (multi-label)."""
    if recipe.train.class_weights != "balanced":
        return None
    labels = list(splits.train["label"])
    weights = (metrics_lib.positive_weights(labels) if splits.multi_label
               else metrics_lib.class_weights(labels, len(splits.labels)))
    return torch.tensor(weights, dtype=torch.float)


def _decision_rule(recipe: Recipe, splits: Splits, result: FitResult) -> dict:
    """How probabilities become labels, chosen on validation: per-label thresholds (multi-label) or,
    for a binary task with a precision/recall target, a threshold on the positive class."""
    t, labels = recipe.train, splits.labels.labels
    probs = probabilities(result.best_validation_logits, splits.multi_label)
    targets = result.best_validation_labels.numpy()
    if splits.multi_label:
        thresholds = tune_label_thresholds(probs, targets) if t.tune_thresholds else [0.5] * len(labels)
        return {"thresholds": dict(zip(labels, thresholds))}
    if splits.positive_label is None:
        return {}
    rule = {"positive_label": splits.positive_label}
    if t.target_precision is None and t.target_recall is None:
        return rule
    positive = labels.index(splits.positive_label)
    threshold, reached = threshold_for_target(probs[:, positive], targets == positive, t.target_precision, t.target_recall)
    target = (f"precision {t.target_precision}" if t.target_precision is not None else f"recall {t.target_recall}")
    if threshold is None:
        if is_main_process():
            print(f"textxfer: note: no decision threshold reaches {target} for `{splits.positive_label}` on the "
                  f"validation set; predictions keep the most probable class.", file=sys.stderr)
        return rule
    if is_main_process():
        print(f"textxfer: decision threshold {threshold:.4f} on P({splits.positive_label}) gives validation "
              f"precision {reached['precision']:.3f} and recall {reached['recall']:.3f} (target: {target})",
              file=sys.stderr)
    return {**rule, "threshold": threshold, "validation_at_threshold": reached}


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and normalisation weights (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _epochs_for_min_steps(recipe: Recipe, batches_per_epoch: int, accelerator: Accelerator) -> None:
    """Add epochs on small data sets so that training takes at least `train.min_steps` optimizer steps."""
    t = recipe.train
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / t.gradient_accumulation_steps))
    needed = math.ceil((t.min_steps or 0) / steps_per_epoch)
    if needed > t.epochs:
        accelerator.print(f"textxfer: note: {steps_per_epoch} optimizer steps per epoch; training {needed} epochs "
                          f"instead of {t.epochs} to reach train.min_steps={t.min_steps}")
        t.epochs = needed


def _optimizer_and_schedule(model: nn.Module, recipe: Recipe, batches_per_epoch: int):
    t = recipe.train
    groups = (layerwise_groups(model, t.lr, t.layer_lr_decay, t.weight_decay) if t.layer_lr_decay
              and not isinstance(model, nn.Linear) else _decay_groups(model, t.weight_decay))
    # The fused kernel updates all parameters in one pass: ~6x faster than the default per-tensor
    # loop on CPU (136 ms -> 21 ms per step for MiniLM-L6), and supported on CUDA too.
    optimizer = torch.optim.AdamW(groups, lr=t.lr, fused=True)
    steps = math.ceil(batches_per_epoch / t.gradient_accumulation_steps) * t.epochs
    return optimizer, linear_warmup_decay(optimizer, round(steps * t.warmup_ratio), steps)


def linear_warmup_decay(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' `get_linear_schedule_with_warmup`, written out: importing it pulls in
    transformers.trainer_utils, which imports peft and bitsandbytes (6-7 s of start-up on this CPU)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fit(accelerator: Accelerator, model: nn.Module, forward, loader: DataLoader, sampler,
         evaluate, recipe: Recipe, loss_fn, multi_label: bool, desc: str, before_epoch=None, penalty=None) -> FitResult:
    """The loop shared by every method: `forward(model, batch) -> logits`,
    `evaluate(model) -> (scores, document logits, document labels)` on validation.

    Fine-tuning checkpoints (`train.save_every`) and resumes (`train.resume`) exactly: model,
    optimizer, scheduler, RNG states and the position inside the epoch. SIGINT/SIGTERM save a
    checkpoint at the next step and stop with a message saying how to resume.
    """
    t = recipe.train
    _epochs_for_min_steps(recipe, len(loader), accelerator)
    optimizer, scheduler = _optimizer_and_schedule(model, recipe, len(loader))
    deepspeed = getattr(accelerator.state, "deepspeed_plugin", None)
    if deepspeed is not None:  # our loader batches through a batch sampler: DeepSpeed cannot infer the size
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = t.batch_size
    # The training batch sampler already gives every process the same number of batches and every
    # example once (see batching._divisible); Accelerate's even_batches would pad the last round with
    # repeated examples, so it is off for the training loader (evaluation loaders keep it).
    accelerator.even_batches = False
    try:
        model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    finally:
        accelerator.even_batches = True
    select = metrics_lib.selection_metric(multi_label)
    result, best_state, stale = FitResult(), None, 0
    checkpointing = desc != "head" and t.save_every != 0  # a linear head on cached features retrains in seconds
    root = checkpoints.checkpoint_root(recipe.output_dir)
    start_epoch, skip, step, resumed_loss = 1, 0, 0, (0.0, 0)
    resume_from = checkpoints.resolve_resume(t.resume, recipe.output_dir) if checkpointing else None
    if resume_from is not None:
        state, best_state, validation = checkpoints.load(accelerator, resume_from)
        start_epoch, skip, step = state["epoch"], state["batches_done"], state["step"]
        resumed_loss = (state["loss_sum"], state["loss_count"])
        result.history, result.best_epoch, result.best_score = state["history"], state["best_epoch"], state["best_score"]
        result.samples, result.seconds, stale = state["samples"], state["seconds"], state["stale"]
        if validation is not None:
            result.best_validation_logits, result.best_validation_labels = validation
        accelerator.print(f"textxfer: resuming from {resume_from} (epoch {start_epoch}, {skip} batches done)")
    elif t.resume == "auto" and checkpointing:
        accelerator.print(f"textxfer: note: no checkpoint in {root} to resume from; starting from the beginning")

    def save_checkpoint(epoch: int, batches_done: int, loss_sum: torch.Tensor, loss_count: int) -> Path:
        state = {"epoch": epoch, "batches_done": batches_done, "step": step, "loss_sum": loss_sum.item(),
                 "loss_count": loss_count, "history": result.history, "best_epoch": result.best_epoch,
                 "best_score": result.best_score, "samples": result.samples, "seconds": result.seconds,
                 "stale": stale}
        validation = (None if result.best_validation_logits is None
                      else (result.best_validation_logits, result.best_validation_labels))
        return checkpoints.save(accelerator, root, step, state, best_state, validation, t.keep_checkpoints)

    stop = _StopSignal(accelerator) if checkpointing else None
    try:
        for epoch in range(start_epoch, t.epochs + 1):
            if sampler is not None:
                sampler.start_epoch(epoch)
            if before_epoch is not None:
                before_epoch(epoch)
            model.train()
            started = time.perf_counter()
            loss_sum, loss_count = torch.tensor(resumed_loss[0], device=accelerator.device), resumed_loss[1]
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
            bar = tqdm(batches, desc=f"{desc} epoch {epoch}/{t.epochs}", leave=False, initial=skip,
                       total=len(loader), disable=not accelerator.is_local_main_process, dynamic_ncols=True)
            for done, batch in enumerate(bar, start=skip + 1):
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        logits = forward(model, batch)
                    loss = loss_fn(logits, batch["labels"])
                    if penalty is not None:
                        loss = loss + penalty()
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and t.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
                loss_count += 1
                result.samples += len(batch["labels"]) * accelerator.num_processes
                if not accelerator.sync_gradients or stop is None:
                    continue
                step += 1
                if stop.requested():
                    result.seconds += time.perf_counter() - started
                    path = save_checkpoint(epoch, done, loss_sum, loss_count)
                    raise TrainingInterrupted(stop.name, path, recipe.output_dir)
                if t.save_every and step % t.save_every == 0 and done < len(loader):
                    save_checkpoint(epoch, done, loss_sum, loss_count)
            skip, resumed_loss = 0, (0.0, 0)
            result.seconds += time.perf_counter() - started
            train_loss = accelerator.reduce(loss_sum / max(loss_count, 1), reduction="mean").item()
            scores, val_logits, val_labels = evaluate(model)
            entry = {"epoch": epoch, "train_loss": train_loss, **{f"validation_{k}": v for k, v in scores.items()}}
            result.history.append(entry)
            improved = scores[select] > result.best_score
            if improved:
                result.best_epoch, result.best_score, stale = epoch, scores[select], 0
                result.best_validation_logits, result.best_validation_labels = val_logits, val_labels
                best_state = _trainable_snapshot(accelerator.unwrap_model(model))
            else:
                stale += 1
            if accelerator.is_main_process and (desc != "head" or epoch == t.epochs or improved or epoch % 10 == 0):
                shown = " ".join(f"{k.replace('_', '-')} {scores[k]:.4f}" for k in scores if k not in ("loss", "n"))
                tqdm.write(f"epoch {epoch:>3}: train loss {train_loss:.4f} | validation loss {scores['loss']:.4f} "
                           f"{shown}{'  *best' if improved else ''}")
            if t.early_stopping_patience is not None and stale >= t.early_stopping_patience:
                accelerator.print(f"textxfer: early stopping: no better validation {select.replace('_', '-')} for "
                                  f"{stale} epoch(s); keeping epoch {result.best_epoch}")
                break
            if checkpointing and epoch < t.epochs:
                # The next epoch starts at batch 0: a checkpoint at the epoch boundary.
                save_checkpoint(epoch + 1, 0, torch.zeros(()), 0)
    finally:
        if stop is not None:
            stop.uninstall()
    _restore(accelerator.unwrap_model(model), best_state)
    return result


class TrainingInterrupted(TextxferError):
    """SIGINT/SIGTERM during training: a checkpoint was saved; the message says how to resume."""

    def __init__(self, signal_name: str, checkpoint: Path, output_dir: str):
        super().__init__(
            f"training stopped by {signal_name}; a checkpoint of the current step is in {checkpoint}. "
            f"Continue with the same command plus `train.resume=auto` (the run folder {output_dir} is not written "
            f"until training finishes)."
        )
        self.exit_code = 130 if signal_name == "SIGINT" else 143


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each optimizer step (all processes agree)."""

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.name: str | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.name = signal.Signals(signum).name

    def requested(self) -> bool:
        flag = self.name is not None
        if self.accelerator.num_processes > 1:  # one process may get the signal: stop together
            flag = bool(self.accelerator.reduce(torch.tensor(float(flag), device=self.accelerator.device),
                                                reduction="sum").item())
            if flag and self.name is None:  # another process was signalled
                self.name = "SIGTERM"
        return flag

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _trainable_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the weights that train (all of them, or just adapters and head): only they change."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _restore(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    for name, param in model.named_parameters():
        if name in snapshot:
            param.copy_(snapshot[name])


def _validation_scores(logits: torch.Tensor, labels: torch.Tensor, docs: torch.Tensor, recipe: Recipe,
                       multi_label: bool):
    """Scores per document (windows aggregated), at the default decision rule; plus the document logits."""
    logits, labels = aggregate(logits, labels, docs, recipe.data.chunk_aggregation)
    loss = make_loss(multi_label)(logits, labels).item()
    predicted = (logits > 0).int().numpy() if multi_label else logits.argmax(-1).numpy()
    return {**metrics_lib.summary(labels.numpy(), predicted, multi_label), "loss": loss}, logits, labels


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS or k == "position_ids"}


def _logits(output) -> torch.Tensor:
    """A transformers model returns an output object; a PooledClassifier returns the logits tensor."""
    return output if isinstance(output, torch.Tensor) else output.logits


def _fine_tune(accelerator, model, train_set, val_set, collate, recipe, loss_fn, multi_label,
               noise: TokenNoise | None = None) -> FitResult:
    weights = balanced_weights(train_set.columns["label"]) if recipe.train.sampler == "balanced" else None
    loader, sampler = train_loader(train_set, recipe.train.batch_size, recipe.train.seed, collate, weights,
                                   num_shards=accelerator.num_processes, noise=noise)
    val_loader, _ = eval_loader(val_set, recipe.train.eval_batch_size, collate)
    val_loader = accelerator.prepare(val_loader)

    def forward(m, batch):
        return _logits(m(**_model_inputs(batch)))

    def evaluate(m):
        return _validation_scores(*_predict(accelerator, m, val_loader, forward), recipe, multi_label)

    t = recipe.train
    before_epoch = None
    if t.gradual_unfreezing:
        schedule = GradualUnfreezing(model)

        def before_epoch(epoch):
            lowest = schedule.start_epoch(epoch)
            accelerator.print(f"textxfer: gradual unfreezing: epoch {epoch} trains depth {lowest} and up "
                              f"(0 = embeddings, {schedule.num_layers + 1} = head)")
    penalty = L2SP(model, t.l2_sp) if t.l2_sp else None
    return _fit(accelerator, model, forward, loader, sampler, evaluate, recipe, loss_fn, multi_label, "fine-tune",
                before_epoch, penalty)


def _linear_probe(accelerator, model, train_set, val_set, collate, recipe, loss_fn, multi_label) -> FitResult:
    """LP-FT, first phase: fit the classification head alone on frozen, cached inputs of that head
    (feature_extraction's 40 epochs at lr 3e-3), so fine-tuning starts from a good head instead of a
    random one that would distort the pretrained features (Kumar et al. 2022)."""
    head = getattr(model, "classifier", None) or getattr(model, "score", None)
    if not isinstance(head, nn.Linear):
        raise TextxferError(f"`model.method=lp_ft` needs a model whose classification head is one linear layer "
                            f"(`classifier` or `score`); {type(model).__name__} has none. Use `full`.")
    bs = recipe.train.eval_batch_size
    train_x, train_y, _ = _head_inputs(accelerator, model, head, train_set, collate, bs)
    val_x, val_y, val_docs = _head_inputs(accelerator, model, head, val_set, collate, bs)
    probe = dataclasses.replace(recipe, train=dataclasses.replace(
        recipe.train, epochs=METHOD_DEFAULTS["feature_extraction"]["epochs"], lr=METHOD_DEFAULTS["feature_extraction"]["lr"],
        min_steps=MIN_STEPS["feature_extraction"], layer_lr_decay=None, early_stopping_patience=None))
    generator = torch.Generator().manual_seed(recipe.train.seed)
    loader = DataLoader(_FeatureBatches(train_x, train_y), batch_size=recipe.train.batch_size, shuffle=True,
                        generator=generator, collate_fn=_identity)

    def evaluate(h):
        with torch.inference_mode():
            logits = h(val_x.to(accelerator.device)).cpu()
        return _validation_scores(logits, val_y, val_docs, recipe, multi_label)

    result = _fit(accelerator, head, lambda h, b: h(b["features"]), loader, None, evaluate, probe, loss_fn,
                  multi_label, "head")
    best = result.history[result.best_epoch - 1]
    accelerator.print(f"textxfer: linear probe (LP-FT phase 1): validation loss {best['validation_loss']:.4f}; "
                      f"fine-tuning everything from this head")
    return result


@torch.inference_mode()
def _head_inputs(accelerator, model, head, dataset, collate, batch_size):
    """What the classification head receives, per example (eval mode: no dropout), in input order."""
    captured = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float()))
    was_training = model.training
    model.eval()
    model.to(accelerator.device)
    try:
        loader, order = eval_loader(dataset, batch_size, collate)
        labels = []
        for batch in tqdm(loader, desc="head inputs", leave=False, disable=not accelerator.is_local_main_process):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                model(**_model_inputs(batch))
            labels.append(batch["labels"].cpu())
    finally:
        hook.remove()
        model.train(was_training)
    features = torch.cat([c.cpu() for c in captured])
    if features.ndim != 2:
        raise TextxferError("`model.method=lp_ft` supports classifiers whose head reads one vector per text "
                            "(BERT-style encoders); this model's head reads every token. Use `full` or `lora`.")
    restore = torch.empty(len(order), dtype=torch.long)
    restore[torch.tensor(order)] = torch.arange(len(order))
    return features[restore], torch.cat(labels)[restore], torch.tensor(dataset.columns["doc"])


@torch.inference_mode()
def _predict(accelerator, model, loader, forward) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels and document ids over exactly the loader's examples, gathered from every process."""
    was_training = model.training
    model.eval()
    all_logits, all_labels, all_docs = [], [], []
    for batch in loader:
        with accelerator.autocast():
            logits = forward(model, batch)
        logits, labels, docs = accelerator.gather_for_metrics((logits.float(), batch["labels"], batch["doc"]))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        all_docs.append(docs.cpu())
    model.train(was_training)
    return torch.cat(all_logits), torch.cat(all_labels), torch.cat(all_docs)


@torch.inference_mode()
def _features(accelerator, model: PooledClassifier, dataset: TokenizedDataset, collate, batch_size, desc):
    """Backbone features and labels (None for unlabeled data) of every example, computed once, in input
    order, on every process."""
    loader, order = eval_loader(dataset, batch_size, collate)
    loader = accelerator.prepare(loader)
    model.backbone.to(accelerator.device)
    chunks, labels = [], []
    for batch in tqdm(loader, desc=f"features {desc}", leave=False, disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            feats = model.features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        if "labels" in batch:
            feats, batch_labels = accelerator.gather_for_metrics((feats.float(), batch["labels"]))
            labels.append(batch_labels.cpu())
        else:  # unlabeled texts
            feats = accelerator.gather_for_metrics(feats.float())
        chunks.append(feats.cpu())
    features = torch.cat(chunks)
    restore = torch.empty(len(order), dtype=torch.long)
    restore[torch.tensor(order)] = torch.arange(len(order))
    return features[restore], (torch.cat(labels)[restore] if labels else None)


class _FeatureBatches(torch.utils.data.Dataset):
    """Cached features; `__getitems__` lets the DataLoader fetch a whole batch with one index op."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.as_tensor(indices)
        return {"features": self.features[index], "labels": self.labels[index]}


def _identity(batch):
    return batch


def _fit_head(accelerator, model: PooledClassifier, train_set, val_set, collate, recipe, loss_fn, multi_label,
              unlabeled_set=None, noise: TokenNoise | None = None) -> FitResult:
    started = time.perf_counter()
    cached = _CachedFeatures.compute(accelerator, model, train_set, val_set, unlabeled_set, collate, recipe, multi_label)
    feature_seconds = time.perf_counter() - started
    n_texts = len(cached.train_x) + len(cached.val_x) + (len(cached.unlabeled_x) if unlabeled_set else 0)
    accelerator.print(f"textxfer: cached backbone features of {n_texts} texts in {feature_seconds:.1f}s")
    if unlabeled_set is not None:
        result = _self_train(accelerator, model.head, cached, recipe, multi_label, loss_fn)
        head_seconds = result.seconds
        if recipe.train.student_epochs:
            result = _noisy_student(accelerator, model, result, train_set, unlabeled_set, val_set, collate, recipe,
                                    loss_fn, multi_label, cached, noise)
    elif head_solver(recipe) == "lbfgs":
        result = _fit_head_lbfgs(accelerator, model.head, cached.train_x, cached.train_y, cached.evaluate, loss_fn,
                                 multi_label)
    else:
        result = _fit_head_sgd(accelerator, model.head, cached.train_x, cached.train_y, train_set, cached.evaluate,
                               recipe, loss_fn, multi_label)
    result.timings = {"features_seconds": feature_seconds, "head_fit_seconds": result.seconds}
    if unlabeled_set is not None and recipe.train.student_epochs:
        result.timings.update(head_fit_seconds=head_seconds, student_seconds=result.seconds - head_seconds)
    result.seconds += feature_seconds
    return result


@dataclass
class _CachedFeatures:
    """The frozen backbone's features of the train, validation and unlabeled texts, and a scorer of a
    head on the validation features."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    unlabeled_x: torch.Tensor | None
    evaluate: object  # head -> (scores, document logits, document labels) on validation

    @classmethod
    def compute(cls, accelerator, model: PooledClassifier, train_set, val_set, unlabeled_set, collate, recipe,
                multi_label) -> "_CachedFeatures":
        bs = recipe.train.eval_batch_size
        train_x, train_y = _features(accelerator, model, train_set, collate, bs, "train")
        val_x, val_y = _features(accelerator, model, val_set, collate, bs, "validation")
        unlabeled_x = (_features(accelerator, model, unlabeled_set, collate, bs, "unlabeled")[0]
                       if unlabeled_set is not None else None)
        val_docs = torch.tensor(val_set.columns["doc"])

        def evaluate(head):
            was_training = head.training
            head.eval()
            with torch.inference_mode():
                logits = head(val_x.to(accelerator.device)).cpu()
            head.train(was_training)
            return _validation_scores(logits, val_y, val_docs, recipe, multi_label)

        return cls(train_x, train_y, val_x, val_y, unlabeled_x, evaluate)


def _fit_head_sgd(accelerator, head: nn.Linear, train_x, train_y, train_set, evaluate, recipe, loss_fn,
                  multi_label) -> FitResult:
    """Train the linear head with AdamW minibatches over the cached features for train.epochs."""
    generator = torch.Generator().manual_seed(recipe.train.seed)
    if recipe.train.sampler == "balanced":
        sampler = torch.utils.data.WeightedRandomSampler(balanced_weights(train_set.columns["label"]), len(train_y),
                                                         generator=generator)
        loader = DataLoader(_FeatureBatches(train_x, train_y), batch_size=recipe.train.batch_size, sampler=sampler,
                            collate_fn=_identity)
    else:
        loader = DataLoader(_FeatureBatches(train_x, train_y), batch_size=recipe.train.batch_size, shuffle=True,
                            generator=generator, collate_fn=_identity)

    def forward(h, batch):
        return h(batch["features"])

    # A linear head's ops are tiny: on CPU, OpenMP threads cost more in synchronisation than they
    # give (and stall badly when another process shares the cores), so the head trains on one.
    threads = torch.get_num_threads()
    if accelerator.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        result = _fit(accelerator, head, forward, loader, None, evaluate, recipe, loss_fn, multi_label, "head")
    finally:
        torch.set_num_threads(threads)
    result.samples = len(train_x) * len(result.history)  # texts seen per epoch, as for fine-tuning
    return result


def head_solver(recipe: Recipe) -> str:
    """`lbfgs` or `sgd`: how a feature-extraction head is fit (see `train.head_solver`)."""
    solver = recipe.train.head_solver
    if solver == "auto":
        return "sgd" if recipe.train.sampler == "balanced" else "lbfgs"
    return solver


# L2 strengths tried for the L-BFGS head, strongest first (each fit starts from the previous one).
# Per training example: 1e-4 is about scikit-learn's LogisticRegression(C=10) on 1,000 rows.
HEAD_L2_GRID = (1e-4, 1e-5, 1e-6)


def _fit_head_lbfgs(accelerator, head: nn.Linear, train_x, train_y, evaluate, loss_fn, multi_label) -> FitResult:
    """Fit the linear head on all cached features at once with L-BFGS (the loss is convex in the
    head's weights: full batch reaches its minimum in a few hundred cheap iterations, where minibatch
    AdamW needs thousands of steps), once per L2 strength in HEAD_L2_GRID; keep the strength with the
    best validation score. Every process computes the same fit (the features are on all of them)."""
    select = metrics_lib.selection_metric(multi_label)
    device = accelerator.device
    head.to(device)
    x, y = train_x.to(device).clone(), train_y.to(device).clone()  # made under inference_mode: autograd needs copies
    result, best_state = FitResult(), None
    for k, l2 in enumerate(HEAD_L2_GRID, 1):
        started = time.perf_counter()
        # tolerances: 1e-6/1e-10 took 50% more loss evaluations (each a pass over all features) for
        # the same validation accuracy to within one text in 1,003 on Banking77.
        optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=500, history_size=20,
                                      tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum()
            loss.backward()
            return loss

        head.train()
        optimizer.step(closure)
        with torch.no_grad():
            train_loss = loss_fn(head(x), y).item()
        result.seconds += time.perf_counter() - started
        result.samples += len(x)
        scores, val_logits, val_labels = evaluate(head)
        result.history.append({"epoch": k, "head_l2": l2, "train_loss": train_loss,
                               **{f"validation_{name}": v for name, v in scores.items()}})
        improved = scores[select] > result.best_score  # ties keep the stronger regularisation
        if improved:
            result.best_epoch, result.best_score = k, scores[select]
            result.best_validation_logits, result.best_validation_labels = val_logits, val_labels
            best_state = _trainable_snapshot(head)
        shown = " ".join(f"{name.replace('_', '-')} {scores[name]:.4f}" for name in scores if name not in ("loss", "n"))
        accelerator.print(f"head l2 {l2:g}: train loss {train_loss:.4f} | validation loss {scores['loss']:.4f} "
                          f"{shown}{'  *best' if improved else ''}")
    _restore(head, best_state)
    return result


def _unlabeled_set(recipe: Recipe, splits: Splits, tokenizer, accelerator: Accelerator) -> TokenizedDataset | None:
    """The tokenized unlabeled texts for self-training (None when it is off), without the labeled splits' texts."""
    if not recipe.train.self_training_rounds:
        return None
    d = recipe.data
    texts = read_unlabeled(d.unlabeled, d.text_column, d.encoding)
    known = {text for split in (splits.train, splits.validation, splits.test) if split is not None for text in split["text"]}
    texts, dropped = without_known(texts, known)
    if dropped:
        accelerator.print(f"textxfer: note: self-training leaves out {dropped} of the {len(texts) + dropped} texts in "
                          f"{d.unlabeled}: repeats, or texts of the train/validation/test rows", file=sys.stderr)
    if not texts:
        raise TextxferError(f"Every text in {d.unlabeled} is a repeat or one of the labeled train/validation/test "
                            f"texts, so self-training has nothing to pseudo-label. Point `data.unlabeled` at other "
                            f"in-domain texts, or set `train.self_training_rounds=0`.")
    return TokenizedDataset(tokenize(datasets.Dataset.from_dict({"text": texts}), tokenizer, d.max_length, d.long_text,
                                     d.stride, d.max_chunks))


def _self_train(accelerator, head: nn.Linear, cached: _CachedFeatures, recipe: Recipe, multi_label: bool,
                loss_fn) -> FitResult:
    """Round 0 fits the head on the labeled rows; each later round adds the pseudo-labels of the
    current head (see textxfer.self_training) and refits. Keeps the round best on validation."""
    t = recipe.train
    train_x, train_y, unlabeled_x = cached.train_x, cached.train_y, cached.unlabeled_x

    def fit(x, y):
        return _fit_head_lbfgs(accelerator, head, x, y, cached.evaluate, loss_fn, multi_label)

    result = fit(train_x, train_y)
    for entry in result.history:
        entry.update(self_training_round=0, pseudo_labeled=0)
    best_state = _trainable_snapshot(head)
    for round_ in range(1, t.self_training_rounds + 1):
        rows, labels, confidence = _teacher_picks(accelerator, head, unlabeled_x, t.self_training_per_class)
        accelerator.print(f"textxfer: self-training round {round_}/{t.self_training_rounds}: {len(rows)} of "
                          f"{len(unlabeled_x)} unlabeled {_unit(recipe)} pseudo-labelled (up to {t.self_training_per_class} "
                          f"per class; mean confidence {confidence:.3f})")
        fitted = fit(torch.cat([train_x, unlabeled_x[rows]]), torch.cat([train_y, labels]))
        for entry in fitted.history:
            entry.update(self_training_round=round_, pseudo_labeled=len(rows))
        if _absorb(result, fitted):  # ties keep the earlier round (fewer pseudo-labels)
            best_state = _trainable_snapshot(head)
    _restore(head, best_state)
    kept = result.history[result.best_epoch - 1]["self_training_round"]
    accelerator.print(f"textxfer: self-training keeps round {kept} (best validation "
                      f"{metrics_lib.selection_metric(multi_label).replace('_', '-')} {result.best_score:.4f})")
    return result


def _teacher_picks(accelerator, head: nn.Linear, unlabeled_x: torch.Tensor, per_class: int):
    """The head's pseudo-labels (see textxfer.self_training.pseudo_labels) and their mean confidence."""
    with torch.no_grad():
        logits = head(unlabeled_x.to(accelerator.device)).cpu()
    rows, labels = pseudo_labels(logits, per_class)
    confidence = logits[rows].softmax(-1).max(-1).values.mean().item() if len(rows) else float("nan")
    return rows, labels, confidence


def _unit(recipe: Recipe) -> str:
    """What an unlabeled example is: with `long_text: chunks` each window is pseudo-labelled on its own."""
    return "windows" if recipe.data.long_text == "chunks" else "texts"


def _absorb(result: FitResult, later: FitResult) -> bool:
    """Append a later fit's epochs (renumbered) and time to `result`; take its best epoch and validation
    outputs when strictly better. Returns whether it was better."""
    offset = len(result.history)
    for entry in later.history:
        entry["epoch"] += offset
    result.history += later.history
    result.seconds += later.seconds
    result.samples += later.samples
    if later.best_score <= result.best_score:
        return False
    result.best_epoch, result.best_score = later.best_epoch + offset, later.best_score
    result.best_validation_logits, result.best_validation_labels = later.best_validation_logits, later.best_validation_labels
    return True


def _noisy_student(accelerator, model: PooledClassifier, result: FitResult, train_set, unlabeled_set, val_set,
                   collate, recipe: Recipe, loss_fn, multi_label: bool, cached: _CachedFeatures,
                   noise: TokenNoise | None) -> FitResult:
    """Noisy student (see textxfer.self_training), for `train.student_generations` generations. Each
    student fine-tunes the backbone and its teacher's head on the labeled rows plus the teacher's
    pseudo-labels; a kept student then teaches the next generation, after its head is self-trained
    again on its own features. Stops at the first student no better on validation than the best model
    so far; keeps that best model (the first teacher if no student beats it)."""
    t = recipe.train
    select = metrics_lib.selection_metric(multi_label).replace("_", "-")
    for entry in result.history:
        entry["student_generation"] = 0
    best_state = _all_weights(model)
    for generation in range(1, t.student_generations + 1):
        if generation > 1:  # the last student teaches: its features, its head self-trained again on them
            accelerator.print(f"textxfer: noisy student generation {generation}: student {generation - 1} teaches; "
                              f"its head is self-trained again on its own features")
            cached = _CachedFeatures.compute(accelerator, model, train_set, val_set, unlabeled_set, collate, recipe,
                                             multi_label)
            teacher = _self_train(accelerator, model.head, cached, recipe, multi_label, loss_fn)
            for entry in teacher.history:
                entry["student_generation"] = generation - 1
            if _absorb(result, teacher):
                best_state = _all_weights(model)
        student = _train_student(accelerator, model, cached.unlabeled_x, train_set, unlabeled_set, val_set, collate,
                                 recipe, loss_fn, multi_label, generation, noise)
        if _absorb(result, student):
            best_state = _all_weights(model)
            accelerator.print(f"textxfer: noisy student {generation} is the best so far: validation {select} "
                              f"{student.best_score:.4f}")
            continue
        accelerator.print(f"textxfer: noisy student {generation} is no better than the best so far on validation "
                          f"({select} {student.best_score:.4f} vs {result.best_score:.4f}); stopping there")
        break
    _restore(model, best_state)
    best = result.history[result.best_epoch - 1]
    if "student_epoch" in best:
        kept = f"student {best['student_generation']} (epoch {best['student_epoch']})"
    elif best["student_generation"]:
        kept = f"student {best['student_generation']} with its head self-trained on its own features"
    else:
        kept = f"the first teacher (self-training round {best['self_training_round']})"
    accelerator.print(f"textxfer: the run keeps {kept} (validation {select} {result.best_score:.4f})")
    return result


def _student_noise(recipe: Recipe, tokenizer) -> TokenNoise | None:
    """The noisy students' input noise (`train.student_noise` of the tokens masked), or None without students."""
    t = recipe.train
    if not (t.self_training_rounds and t.student_epochs and t.student_noise):
        return None
    if tokenizer.mask_token_id is None:
        raise TextxferError(f"`train.student_noise={t.student_noise:g}` replaces a share of each noisy student's input "
                            f"tokens with the tokenizer's mask token, and the tokenizer of `model.name={recipe.model.name}` "
                            f"has none (decoder tokenizers usually don't). Set `train.student_noise=0` to train the "
                            f"students with dropout as their only noise.")
    return TokenNoise(t.student_noise, tokenizer.mask_token_id, tuple(tokenizer.all_special_ids))


def _noise_words(noise: TokenNoise | None) -> str:
    """How the student's inputs are noised, for the log."""
    return f"{noise.probability:.0%} of input tokens masked" if noise else "no input masking"


def _all_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of every parameter (the student trains the backbone too)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}


def _train_student(accelerator, model: PooledClassifier, unlabeled_x, train_set, unlabeled_set, val_set, collate,
                   recipe: Recipe, loss_fn, multi_label: bool, generation: int, noise: TokenNoise | None) -> FitResult:
    """One noisy student: fine-tune the backbone and the current (teacher's) head on the labeled rows
    plus the teacher's pseudo-labels for `train.student_epochs` at `train.student_lr`, as full
    fine-tuning does (dropout on, length-bucketed batches, warmup and decay, checkpoints), with
    `noise` masking its input tokens. Leaves the model at the student's best epoch."""
    t = recipe.train
    rows, labels, _ = _teacher_picks(accelerator, model.head, unlabeled_x, t.self_training_per_class)
    students = with_pseudo_labels(train_set, unlabeled_set, rows, labels)
    model.backbone.requires_grad_(True)
    accelerator.print(f"textxfer: noisy student {generation}/{t.student_generations}: fine-tuning all "
                      f"{count_parameters(model)[0]:,} parameters for {t.student_epochs} epoch(s) at lr "
                      f"{t.student_lr:g}, dropout on, {_noise_words(noise)}, on {len(train_set)} labeled + "
                      f"{len(rows)} pseudo-labelled "
                      f"{_unit(recipe)} (the teacher's most confident, up to {t.self_training_per_class} per class)")
    # The student trains like full fine-tuning; feature extraction's head-fit settings (many epochs
    # at a high rate, min_steps) are for a linear head alone.
    # Checkpoints (and resuming) cover the first student only: a later generation's checkpoint would be
    # read back into the first one's loop on resume.
    student_recipe = dataclasses.replace(recipe, train=dataclasses.replace(
        t, epochs=t.student_epochs, lr=t.student_lr, min_steps=0,
        **({} if generation == 1 else {"save_every": 0, "resume": None})))
    student = _fine_tune(accelerator, model, students, val_set, collate, student_recipe, loss_fn, multi_label, noise)
    model.backbone.requires_grad_(False)
    model.eval()
    for entry in student.history:
        entry.update(student_generation=generation, student_epoch=entry["epoch"], pseudo_labeled=len(rows))
    return student
