"""Fitting a linear head on a frozen backbone's cached features (`feature_extraction`, and the
features of self-training's rounds).

The backbone runs once over the train, validation (and unlabeled) texts; the head then fits in
seconds: by full-batch L-BFGS (the loss is convex in the head's weights, so full batch reaches its
minimum in a few hundred cheap iterations where minibatch AdamW needs thousands of steps), once per L2
strength of `HEAD_L2_GRID`, keeping the one best on validation; or, with `train.head_solver=sgd`, by
AdamW minibatches through the shared loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.batching import balanced_weights
from ..evaluation import metrics
from ..log import bare, get_logger
from .context import Run
from .evaluate import backbone_features, validation_scores
from .loop import Loop, fit
from .results import FitResult, restore, trainable_snapshot

log = get_logger()
# L2 strengths tried for the L-BFGS head, strongest first (each fit starts from the previous one).
# Per training example: 1e-4 is about scikit-learn's LogisticRegression(C=10) on 1,000 rows.
HEAD_L2_GRID = (1e-4, 1e-5, 1e-6)


@dataclass
class CachedFeatures:
    """The frozen backbone's features of the train, validation and unlabeled texts, and a scorer of a
    head on the validation features."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    unlabeled_x: torch.Tensor | None
    evaluate: object  # head -> (scores, document logits, document labels) on validation

    @classmethod
    def compute(cls, run: Run, model) -> "CachedFeatures":
        accelerator, bs = run.accelerator, run.recipe.train.eval_batch_size
        train_x, train_y = backbone_features(accelerator, model, run.train_set, run.collate, bs, "train")
        val_x, val_y = backbone_features(accelerator, model, run.val_set, run.collate, bs, "validation")
        unlabeled_x = (backbone_features(accelerator, model, run.unlabeled_set, run.collate, bs, "unlabeled")[0]
                       if run.unlabeled_set is not None else None)
        val_docs = torch.tensor(run.val_set.columns["doc"])

        def evaluate(head):
            was_training = head.training
            head.eval()
            with torch.inference_mode():
                logits = head(val_x.to(accelerator.device)).cpu()
            head.train(was_training)
            return validation_scores(logits, val_y, val_docs, run.recipe, run.multi_label)

        return cls(train_x, train_y, val_x, val_y, unlabeled_x, evaluate)


class FeatureBatches(torch.utils.data.Dataset):
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


def feature_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, weights: list | None = None):
    """Shuffled (or, with class `weights`, oversampling) minibatches of cached features, seeded."""
    generator = torch.Generator().manual_seed(seed)
    if weights is not None:
        sampler = torch.utils.data.WeightedRandomSampler(weights, len(y), generator=generator)
        return DataLoader(FeatureBatches(x, y), batch_size=batch_size, sampler=sampler, collate_fn=_identity)
    return DataLoader(FeatureBatches(x, y), batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=_identity)


def head_loop(loader, evaluate, loss_fn, multi_label: bool) -> Loop:
    """The loop of a bare linear head on cached features (no checkpoints: it retrains in seconds)."""
    return Loop(forward=lambda head, batch: head(batch["features"]),
                loss=lambda logits, batch: loss_fn(logits, batch["labels"]), loader=loader, evaluate=evaluate,
                select=metrics.selection_metric(multi_label), checkpoints=False, label="head", report_every=10)


def fit_head_sgd(run: Run, head: nn.Linear, cached: CachedFeatures) -> FitResult:
    """Train the linear head with AdamW minibatches over the cached features for train.epochs (the run's
    recipe gets the epochs that reach train.min_steps)."""
    t = run.recipe.train
    weights = balanced_weights(run.train_set.columns["label"]) if t.sampler == "balanced" else None
    loader = feature_loader(cached.train_x, cached.train_y, t.batch_size, t.seed, weights)
    run.recipe = run.resolve_epochs(run.recipe, len(loader), "run")
    # A linear head's ops are tiny: on CPU, OpenMP threads cost more in synchronisation than they
    # give (and stall badly when another process shares the cores), so the head trains on one.
    threads = torch.get_num_threads()
    if run.accelerator.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        result = fit(run.accelerator, head, head_loop(loader, cached.evaluate, run.loss_fn, run.multi_label), run.recipe)
    finally:
        torch.set_num_threads(threads)
    result.samples = len(cached.train_x) * len(result.history)  # texts seen per epoch, as for fine-tuning
    return result


def fit_head_lbfgs(run: Run, head: nn.Linear, train_x: torch.Tensor, train_y: torch.Tensor, evaluate) -> FitResult:
    """Fit the linear head on all cached features at once with L-BFGS, once per L2 strength in
    HEAD_L2_GRID; keep the strength with the best validation score. Every process computes the same fit
    (the features are on all of them)."""
    select = metrics.selection_metric(run.multi_label)
    device = run.accelerator.device
    head.to(device)
    x, y = train_x.to(device).clone(), train_y.to(device).clone()  # made under inference_mode: autograd needs copies
    result, best = FitResult(), None
    for k, l2 in enumerate(HEAD_L2_GRID, 1):
        started = time.perf_counter()
        train_loss = _lbfgs(head, x, y, run.loss_fn, l2)
        result.seconds += time.perf_counter() - started
        result.samples += len(x)
        scores, val_logits, val_labels = evaluate(head)
        entry = {"epoch": k, "head_l2": l2, "train_loss": train_loss,
                 **{f"validation_{name}": v for name, v in scores.items()}}
        improved = result.record(entry, scores[select], val_logits, val_labels)  # ties keep the stronger L2
        if improved:
            best = trainable_snapshot(head)
        shown = " ".join(f"{name.replace('_', '-')} {scores[name]:.4f}" for name in scores if name not in ("loss", "n"))
        if run.accelerator.is_main_process:
            bare(log, f"head l2 {l2:g}: train loss {train_loss:.4f} | validation loss {scores['loss']:.4f} "
                      f"{shown}{'  *best' if improved else ''}")
    restore(head, best)
    return result


def fit_linear_head(head: nn.Linear, x: torch.Tensor, y: torch.Tensor, loss_fn, l2: float) -> float:
    """One full-batch L-BFGS fit of a linear head on features `x` at L2 strength `l2` (per example), from
    its current weights; returns the training loss. What `fit_head_lbfgs` runs for each strength."""
    return _lbfgs(head, x, y, loss_fn, l2)


def _lbfgs(head: nn.Linear, x: torch.Tensor, y: torch.Tensor, loss_fn, l2: float) -> float:
    """One L-BFGS fit of the head at L2 strength `l2`, from where it is; returns the training loss."""
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
        return loss_fn(head(x), y).item()
