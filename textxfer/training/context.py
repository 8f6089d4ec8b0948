"""What every fitting plan works with: one `Run`, made by the trainer's setup."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import Recipe
from ..config.resolve import with_epochs_for_min_steps
from ..data.batching import PadCollator, TokenizedDataset, TokenNoise
from ..data.splits import Splits
from ..log import get_logger
from ..methods import Method
from .loop import steps_per_epoch

log = get_logger()


@dataclass
class Run:
    """The run being trained. `recipe` is the resolved recipe; a plan that finds more epochs are needed
    (`train.min_steps`) replaces it with `resolve_epochs`, never changes it: the one saved is what ran."""

    accelerator: object
    recipe: Recipe
    method: Method
    splits: Splits
    tokenizer: object
    model: object
    train_set: TokenizedDataset
    val_set: TokenizedDataset
    unlabeled_set: TokenizedDataset | None
    collate: PadCollator
    loss_fn: object
    noise: TokenNoise | None  # the noisy student's input noise

    @property
    def multi_label(self) -> bool:
        return self.splits.multi_label

    def resolve_epochs(self, recipe: Recipe, batches_per_epoch: int, label: str) -> Recipe:
        """`recipe` with the epochs that reach its `train.min_steps` (said when that adds epochs)."""
        resolved = with_epochs_for_min_steps(recipe, steps_per_epoch(batches_per_epoch, recipe))
        if resolved.train.epochs != recipe.train.epochs:
            log.info(f"note: {steps_per_epoch(batches_per_epoch, recipe)} optimizer steps per epoch; training "
                     f"{resolved.train.epochs} epochs instead of {recipe.train.epochs} to reach "
                     f"train.min_steps={recipe.train.min_steps}{'' if label == 'run' else f' ({label})'}")
        return resolved

    def with_train(self, **changes) -> Recipe:
        """The run's recipe with other train settings (a phase of the fit, never saved as the run's)."""
        return dataclasses.replace(self.recipe, train=dataclasses.replace(self.recipe.train, **changes))
