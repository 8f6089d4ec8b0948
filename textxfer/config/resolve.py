"""A resolved recipe says exactly what runs: each function returns a NEW recipe, none changes one.

- `resolve(recipe)` (when a recipe is read): the method's default epochs, learning rate and minimum
  steps where the recipe leaves them unset, and the head solver `auto` stands for. A feature-extraction
  head fit by L-BFGS has no epochs, learning rate or steps, so its recipe records none.
- `with_max_length(recipe, limit)` and `with_epochs_for_min_steps(recipe, steps_per_epoch)` (when the
  model and the data are known): the length the model accepts, and the epochs that reach
  `train.min_steps`. The trainer saves the last of these as the run's `recipe.yaml`.
"""
from __future__ import annotations

import dataclasses
import math

from ..methods import get_method
from .schema import Recipe


def _replace_train(recipe: Recipe, **changes) -> Recipe:
    return dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **changes))


def head_solver(recipe: Recipe) -> str:
    """`lbfgs` or `sgd`: the solver `train.head_solver` stands for (`auto`: lbfgs unless the sampler is balanced)."""
    solver = recipe.train.head_solver
    if solver == "auto":
        return "sgd" if recipe.train.sampler == "balanced" else "lbfgs"
    return solver


def resolve(recipe: Recipe) -> Recipe:
    """The recipe with the method's defaults filled in and `head_solver` made explicit (see module notes)."""
    method = get_method(recipe.model.method)
    t = recipe.train
    changes: dict = {}
    if method.caches_features:
        changes["head_solver"] = head_solver(recipe)
    defaults = method.defaults(changes.get("head_solver", t.head_solver))
    if defaults["epochs"] is None:  # nothing is counted in epochs or steps
        return _replace_train(recipe, **changes, epochs=None, lr=None, min_steps=None)
    if t.min_steps is None:
        changes["min_steps"] = defaults["min_steps"] if t.epochs is None else 0
    changes.update({key: defaults[key] for key in ("epochs", "lr") if getattr(t, key) is None})
    return _replace_train(recipe, **changes)


def with_max_length(recipe: Recipe, limit: int | None) -> Recipe:
    """The recipe with `data.max_length` clamped to what the tokenizer and model accept."""
    if limit is None or recipe.data.max_length <= limit:
        return recipe
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, max_length=limit))


def epochs_for_min_steps(recipe: Recipe, steps_per_epoch: int) -> int:
    """The epochs that reach `train.min_steps` optimizer steps (at least `train.epochs`)."""
    t = recipe.train
    return max(t.epochs, math.ceil((t.min_steps or 0) / max(1, steps_per_epoch)))


def with_epochs_for_min_steps(recipe: Recipe, steps_per_epoch: int) -> Recipe:
    """The recipe with as many epochs as reach `train.min_steps`."""
    epochs = epochs_for_min_steps(recipe, steps_per_epoch)
    return recipe if epochs == recipe.train.epochs else _replace_train(recipe, epochs=epochs)
