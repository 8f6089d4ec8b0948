"""Fine-tuning through the shared loop: length-bucketed batches with dynamic padding, validation each
epoch, and the layer-wise strategies (gradual unfreezing, L2-SP) the recipe asks for."""
from __future__ import annotations

from ..config import Recipe
from ..data.batching import TokenizedDataset, TokenNoise, balanced_weights, eval_loader, train_loader
from ..evaluation import metrics
from ..log import get_logger
from ..models.strategies import L2SP, GradualUnfreezing
from .context import Run
from .evaluate import forward_logits, predict_logits, validation_scores
from .loop import Loop, fit
from .results import FitResult

log = get_logger()


def fine_tune(run: Run, model, train_set: TokenizedDataset, recipe: Recipe, noise: TokenNoise | None = None,
              main: bool = True) -> FitResult:
    """Fine-tune `model` on `train_set` as `recipe` says. With `main` (the run's own fit, not a noisy
    student's), the run's recipe gets the epochs that reach `train.min_steps`."""
    accelerator, t = run.accelerator, recipe.train
    weights = balanced_weights(train_set.columns["label"]) if t.sampler == "balanced" else None
    loader, sampler = train_loader(train_set, t.batch_size, t.seed, run.collate, weights,
                                   num_shards=accelerator.num_processes, noise=noise)
    recipe = run.resolve_epochs(recipe, len(loader), "run" if main else "the student")
    if main:
        run.recipe = recipe
    val_loader, _ = eval_loader(run.val_set, t.eval_batch_size, run.collate)
    val_loader = accelerator.prepare(val_loader)

    def evaluate(m):
        return validation_scores(*predict_logits(accelerator, m, val_loader, forward_logits), recipe, run.multi_label)

    penalty = L2SP(model, t.l2_sp) if t.l2_sp else None

    def loss(logits, batch):
        value = run.loss_fn(logits, batch["labels"])
        return value + penalty() if penalty is not None else value

    loop = Loop(forward=forward_logits, loss=loss, loader=loader, evaluate=evaluate, sampler=sampler,
                select=metrics.selection_metric(run.multi_label), before_epoch=_unfreezing(model) if t.gradual_unfreezing
                else None)
    return fit(accelerator, model, loop, recipe)


def _unfreezing(model):
    """ULMFiT's gradual unfreezing, one more layer from the top each epoch (said at each epoch)."""
    schedule = GradualUnfreezing(model)

    def before_epoch(epoch: int) -> None:
        lowest = schedule.start_epoch(epoch)
        log.info(f"gradual unfreezing: epoch {epoch} trains depth {lowest} and up (0 = embeddings, "
                 f"{schedule.num_layers + 1} = head)")
    return before_epoch
