"""Training losses: (binary) cross-entropy and focal loss, with optional class weights."""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F


def make_loss(multi_label: bool, kind: str = "cross_entropy", weights: torch.Tensor | None = None,
              gamma: float = 2.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`loss(logits, labels)` for the task.

    Single-label: cross-entropy over classes, `weights` per class. Multi-label: binary
    cross-entropy per label on multi-hot targets, `weights` as each label's positive weight.
    `kind="focal"` scales each term by (1 - p_t)^gamma so easy, well-classified examples count less
    (Lin et al. 2017); with gamma=0 it is the plain loss.
    """
    if multi_label:
        def loss(logits, labels):
            logits = logits.float()
            pos_weight = None if weights is None else weights.to(logits.device)
            terms = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight, reduction="none")
            if kind == "focal":
                p = torch.sigmoid(logits)
                p_t = p * labels + (1 - p) * (1 - labels)
                terms = terms * (1 - p_t).pow(gamma)
            return terms.mean()
        return loss

    def loss(logits, labels):
        logits = logits.float()
        weight = None if weights is None else weights.to(logits.device)
        if kind != "focal":
            return F.cross_entropy(logits, labels, weight=weight)
        log_p = F.log_softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
        terms = -(1 - log_p.exp()).pow(gamma) * log_p
        if weight is not None:
            alpha = weight[labels]
            return (alpha * terms).sum() / alpha.sum()
        return terms.mean()
    return loss
