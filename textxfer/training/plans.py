"""How each method fits, by the plan its registry entry names (`Method.fit`):

- `fine_tune`: the shared loop over every trainable weight (full, scratch, lora, qlora, bitfit, ...);
- `probe_then_fine_tune`: LP-FT, a linear probe of the head first, then `fine_tune`;
- `cached_head`: the frozen backbone's features once, a linear head on them (L-BFGS or SGD), with
  self-training rounds and noisy students when the recipe asks for them.
"""
from __future__ import annotations

import time

from ..config import head_solver
from ..log import get_logger
from .context import Run
from .fine_tune import fine_tune
from .heads import CachedFeatures, fit_head_lbfgs, fit_head_sgd
from .noisy_student import noisy_student
from .probe import linear_probe
from .results import FitResult
from .self_training import self_train

log = get_logger()


def plan_fine_tune(run: Run) -> FitResult:
    return fine_tune(run, run.model, run.train_set, run.recipe)


def plan_probe_then_fine_tune(run: Run) -> FitResult:
    linear_probe(run)
    return fine_tune(run, run.model, run.train_set, run.recipe)


def plan_cached_head(run: Run) -> FitResult:
    started = time.perf_counter()
    model = run.model
    cached = CachedFeatures.compute(run, model)
    feature_seconds = time.perf_counter() - started
    n_texts = len(cached.train_x) + len(cached.val_x) + (len(cached.unlabeled_x) if run.unlabeled_set else 0)
    log.info(f"cached backbone features of {n_texts} texts in {feature_seconds:.1f}s")
    students = run.unlabeled_set is not None and run.recipe.train.student_epochs
    if run.unlabeled_set is not None:
        result = self_train(run, model.head, cached)
        head_seconds = result.seconds
        if students:
            result = noisy_student(run, result, cached)
    elif head_solver(run.recipe) == "lbfgs":
        result = fit_head_lbfgs(run, model.head, cached.train_x, cached.train_y, cached.evaluate)
    else:
        result = fit_head_sgd(run, model.head, cached)
    result.timings = {"features_seconds": feature_seconds, "head_fit_seconds": result.seconds}
    if students:
        result.timings.update(head_fit_seconds=head_seconds, student_seconds=result.seconds - head_seconds)
    result.seconds += feature_seconds
    return result


PLANS = {"fine_tune": plan_fine_tune, "probe_then_fine_tune": plan_probe_then_fine_tune, "cached_head": plan_cached_head}
