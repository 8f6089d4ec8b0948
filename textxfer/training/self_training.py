"""Self-training (pseudo-labelling) of a feature-extraction head on unlabeled in-domain text.

Each round, the current head predicts the unlabeled texts; for every predicted class, the
`per_class` texts it is most confident about join the labeled rows with that class as their label,
and the head is refit on the union (starting from the current head). Taking the same number per
class keeps the pseudo-labels from piling onto the classes the head already favours. The backbone
is frozen, so each unlabeled text goes through it once and every round costs one head fit. Which
round to keep (0 = labeled rows only) is decided on the validation rows, which never take part.

Noisy student (`train.student_epochs`, Xie et al. 2020): the kept head is the teacher. Its
pseudo-labels (chosen the same way) and the labeled rows then fine-tune the backbone and the head
together, starting from the teacher's head, with noise on the student only: dropout, and
`train.student_noise` (15%) of its input tokens replaced by the mask token, drawn afresh per batch
and epoch (Xie et al. found the student's noise essential: without it, a student learns to copy its
teacher). A student that scores better on validation teaches the next generation
(`train.student_generations`): its head is self-trained again on its own, now fine-tuned, features,
and that head's pseudo-labels train the next student. The first student no better on validation
ends it; the best model on validation is kept.

On Banking77 with 10 labeled examples per class and the other 8,230 pool texts unlabeled, MiniLM-L6
feature extraction went from 85.0 ± 0.2 to 86.4 ± 0.8% test accuracy (3 seeds, 3 rounds of 100
per class; `textxfer compare ... --strategies feature_extraction,self_training`, docs/results.md).
"""
from __future__ import annotations

import datasets
import torch
from torch import nn

from ..config import Recipe
from ..data.batching import TokenizedDataset, tokenize
from ..data.splits import Splits, read_unlabeled
from ..errors import TextxferError
from ..evaluation import metrics
from ..log import get_logger, note
from .context import Run
from .heads import CachedFeatures, fit_head_lbfgs
from .results import FitResult, restore, trainable_snapshot

log = get_logger()


def pseudo_labels(logits: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (sorted) and predicted classes of the `per_class` most confident rows predicted as each
    class. Ties in confidence go to the earlier row, so the pick is deterministic."""
    confidence, predicted = logits.float().softmax(-1).max(-1)
    picked = []
    for label in predicted.unique().tolist():
        rows = (predicted == label).nonzero().squeeze(1)
        order = torch.sort(confidence[rows], descending=True, stable=True).indices
        picked.append(rows[order[:per_class]])
    rows = torch.sort(torch.cat(picked)).values if picked else torch.empty(0, dtype=torch.long)
    return rows, predicted[rows]


def without_known(texts: list[str], known: set[str]) -> tuple[list[str], int]:
    """`texts` minus exact repeats and minus texts of the labeled splits, in order; and how many went.

    A validation or test text among the unlabeled ones would be trained on with its predicted label,
    which would flatter the scores that choose the round and report the result.
    """
    kept, seen = [], set()
    for text in texts:
        if text not in known and text not in seen:
            kept.append(text)
            seen.add(text)
    return kept, len(texts) - len(kept)


def with_pseudo_labels(labeled: TokenizedDataset, unlabeled: TokenizedDataset, rows: torch.Tensor,
                       labels: torch.Tensor) -> TokenizedDataset:
    """The labeled examples followed by the unlabeled `rows` with their pseudo-`labels` (the student's
    training set). Unlabeled documents get ids after the labeled ones, so no two documents share one."""
    picked, first_doc = rows.tolist(), max(labeled.columns["doc"], default=-1) + 1
    columns = {}
    for name, values in labeled.columns.items():
        if name == "label":
            added = labels.tolist()
        elif name == "doc":
            added = [first_doc + unlabeled.columns["doc"][i] for i in picked]
        else:
            added = [unlabeled.columns[name][i] for i in picked]
        columns[name] = list(values) + added
    return TokenizedDataset(columns)


def unlabeled_set(recipe: Recipe, splits: Splits, tokenizer) -> TokenizedDataset | None:
    """The tokenized unlabeled texts for self-training (None when it is off), without the labeled splits' texts."""
    if not recipe.train.self_training_rounds:
        return None
    d = recipe.data
    texts = read_unlabeled(d.unlabeled, d.text_column, d.encoding)
    known = {text for split in (splits.train, splits.validation, splits.test) if split is not None for text in split["text"]}
    texts, dropped = without_known(texts, known)
    if dropped:
        note(log, f"self-training leaves out {dropped} of the {len(texts) + dropped} texts in {d.unlabeled}: repeats, "
                  f"or texts of the train/validation/test rows")
    if not texts:
        raise TextxferError(f"Every text in {d.unlabeled} is a repeat or one of the labeled train/validation/test "
                            f"texts, so self-training has nothing to pseudo-label. Point `data.unlabeled` at other "
                            f"in-domain texts, or set `train.self_training_rounds=0`.")
    return TokenizedDataset(tokenize(datasets.Dataset.from_dict({"text": texts}), tokenizer, d.max_length, d.long_text,
                                     d.stride, d.max_chunks))


def self_train(run: Run, head: nn.Linear, cached: CachedFeatures) -> FitResult:
    """Round 0 fits the head on the labeled rows; each later round adds the pseudo-labels of the
    current head and refits. Keeps the round best on validation."""
    t = run.recipe.train
    train_x, train_y, unlabeled_x = cached.train_x, cached.train_y, cached.unlabeled_x
    result = fit_head_lbfgs(run, head, train_x, train_y, cached.evaluate)
    for entry in result.history:
        entry.update(self_training_round=0, pseudo_labeled=0)
    best = trainable_snapshot(head)
    for round_ in range(1, t.self_training_rounds + 1):
        rows, labels, confidence = teacher_picks(run, head, unlabeled_x)
        log.info(f"self-training round {round_}/{t.self_training_rounds}: {len(rows)} of {len(unlabeled_x)} "
                 f"unlabeled {unit(run.recipe)} pseudo-labelled (up to {t.self_training_per_class} per class; mean "
                 f"confidence {confidence:.3f})")
        fitted = fit_head_lbfgs(run, head, torch.cat([train_x, unlabeled_x[rows]]), torch.cat([train_y, labels]),
                                cached.evaluate)
        for entry in fitted.history:
            entry.update(self_training_round=round_, pseudo_labeled=len(rows))
        if result.absorb(fitted):  # ties keep the earlier round (fewer pseudo-labels)
            best = trainable_snapshot(head)
    restore(head, best)
    kept = result.history[result.best_epoch - 1]["self_training_round"]
    log.info(f"self-training keeps round {kept} (best validation "
             f"{metrics.selection_metric(run.multi_label).replace('_', '-')} {result.best_score:.4f})")
    return result


def teacher_picks(run: Run, head: nn.Linear, unlabeled_x: torch.Tensor):
    """The head's pseudo-labels (see `pseudo_labels`) and their mean confidence."""
    with torch.no_grad():
        logits = head(unlabeled_x.to(run.accelerator.device)).cpu()
    rows, labels = pseudo_labels(logits, run.recipe.train.self_training_per_class)
    confidence = logits[rows].softmax(-1).max(-1).values.mean().item() if len(rows) else float("nan")
    return rows, labels, confidence


def unit(recipe: Recipe) -> str:
    """What an unlabeled example is: with `long_text: chunks` each window is pseudo-labelled on its own."""
    return "windows" if recipe.data.long_text == "chunks" else "texts"
