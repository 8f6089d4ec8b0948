"""Noisy student (`train.student_epochs`, Xie et al. 2020), after self-training's rounds: the kept head
teaches a student that fine-tunes the backbone and that head on the labeled rows plus the teacher's most
confident pseudo-labels, with dropout on and `train.student_noise` of its input tokens masked. A student
better on validation teaches the next generation (its head self-trained again on its own features); the
first student no better ends it, and the best model on validation is kept (see `self_training`)."""
from __future__ import annotations

from ..data.batching import TokenNoise
from ..errors import TextxferError
from ..evaluation import metrics
from ..log import get_logger
from ..models.build import count_parameters
from ..models.pooled import PooledClassifier
from .context import Run
from .fine_tune import fine_tune
from .heads import CachedFeatures
from .results import FitResult, all_weights, restore
from .self_training import self_train, teacher_picks, unit, with_pseudo_labels

log = get_logger()


def student_noise(recipe, tokenizer) -> TokenNoise | None:
    """The noisy students' input noise (`train.student_noise` of the tokens masked), or None without students;
    refused before any work when the tokenizer has no mask token."""
    t = recipe.train
    if not (t.self_training_rounds and t.student_epochs and t.student_noise):
        return None
    if tokenizer.mask_token_id is None:
        raise TextxferError(f"`train.student_noise={t.student_noise:g}` replaces a share of each noisy student's input "
                            f"tokens with the tokenizer's mask token, and the tokenizer of `model.name={recipe.model.name}` "
                            f"has none (decoder tokenizers usually don't). Set `train.student_noise=0` to train the "
                            f"students with dropout as their only noise.")
    return TokenNoise(t.student_noise, tokenizer.mask_token_id, tuple(tokenizer.all_special_ids))


def noisy_student(run: Run, result: FitResult, cached: CachedFeatures) -> FitResult:
    """Up to `train.student_generations` students after the self-trained teacher in `result`; returns
    the combined history with the best model on validation kept (the first teacher if no student wins)."""
    model, t = run.model, run.recipe.train
    select = metrics.selection_metric(run.multi_label).replace("_", "-")
    for entry in result.history:
        entry["student_generation"] = 0
    best = all_weights(model)
    for generation in range(1, t.student_generations + 1):
        if generation > 1:  # the last student teaches: its features, its head self-trained again on them
            log.info(f"noisy student generation {generation}: student {generation - 1} teaches; its head is "
                     f"self-trained again on its own features")
            cached = CachedFeatures.compute(run, model)
            teacher = self_train(run, model.head, cached)
            for entry in teacher.history:
                entry["student_generation"] = generation - 1
            if result.absorb(teacher):
                best = all_weights(model)
        student = _train_student(run, model, cached, generation)
        if result.absorb(student):
            best = all_weights(model)
            log.info(f"noisy student {generation} is the best so far: validation {select} {student.best_score:.4f}")
            continue
        log.info(f"noisy student {generation} is no better than the best so far on validation ({select} "
                 f"{student.best_score:.4f} vs {result.best_score:.4f}); stopping there")
        break
    restore(model, best)
    log.info(f"the run keeps {_kept(result.history[result.best_epoch - 1])} (validation {select} "
             f"{result.best_score:.4f})")
    return result


def _kept(best: dict) -> str:
    if "student_epoch" in best:
        return f"student {best['student_generation']} (epoch {best['student_epoch']})"
    if best["student_generation"]:
        return f"student {best['student_generation']} with its head self-trained on its own features"
    return f"the first teacher (self-training round {best['self_training_round']})"


def _train_student(run: Run, model: PooledClassifier, cached: CachedFeatures, generation: int) -> FitResult:
    """One noisy student: fine-tune the backbone and the current (teacher's) head on the labeled rows
    plus the teacher's pseudo-labels for `train.student_epochs` at `train.student_lr`, as full
    fine-tuning does (dropout on, length-bucketed batches, warmup and decay, checkpoints), with
    the run's noise masking its input tokens. Leaves the model at the student's best epoch."""
    t = run.recipe.train
    rows, labels, _ = teacher_picks(run, model.head, cached.unlabeled_x)
    students = with_pseudo_labels(run.train_set, run.unlabeled_set, rows, labels)
    model.backbone.requires_grad_(True)
    noise = run.noise
    log.info(f"noisy student {generation}/{t.student_generations}: fine-tuning all {count_parameters(model)[0]:,} "
             f"parameters for {t.student_epochs} epoch(s) at lr {t.student_lr:g}, dropout on, "
             f"{f'{noise.probability:.0%} of input tokens masked' if noise else 'no input masking'}, on "
             f"{len(run.train_set)} labeled + {len(rows)} pseudo-labelled {unit(run.recipe)} (the teacher's most "
             f"confident, up to {t.self_training_per_class} per class)")
    # The student trains like full fine-tuning; feature extraction's head-fit settings (many epochs
    # at a high rate, min_steps) are for a linear head alone. Checkpoints (and resuming) cover the
    # first student only: a later generation's checkpoint would be read back into the first one's loop.
    recipe = run.with_train(epochs=t.student_epochs, lr=t.student_lr, min_steps=0,
                            **({} if generation == 1 else {"save_every": 0, "resume": None}))
    student = fine_tune(run, model, students, recipe, noise, main=False)
    model.backbone.requires_grad_(False)
    model.eval()
    for entry in student.history:
        entry.update(student_generation=generation, student_epoch=entry["epoch"], pseudo_labeled=len(rows))
    return student
