"""Scores that mean what they say: calibration fitted on validation logits, and how to measure it.

Fine-tuned transformers are over-confident (Guo et al. 2017, "On Calibration of Modern Neural
Networks"): a softmax of 0.95 is right less than 95% of the time. Temperature scaling divides the
logits by one number T fitted on validation by minimizing the negative log-likelihood; it never
changes the most probable class. Multi-label runs calibrate each label's sigmoid on its own: one
temperature per label, or Platt scaling (a scale and a bias per label, the scale kept positive so a
label's ranking never flips), whichever predicts held-out validation rows better.

A calibration is a small dict saved in the run's `textxfer.json` and applied by `calibrate` wherever
probabilities leave the product:

    {"method": "temperature", "temperature": 1.83}                       # single-label
    {"method": "platt" | "temperature", "scale": [...], "bias": [...]}   # multi-label, per label
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15
# Temperatures outside this range mean the validation set is degenerate (all right or all wrong): clamp.
_LOG_T_RANGE = (float(np.log(0.05)), float(np.log(20.0)))
_CV_FOLDS = 5


def calibrate(logits: torch.Tensor, calibration: dict | None) -> torch.Tensor:
    """Logits with a run's calibration applied (unchanged when it has none)."""
    if not calibration:
        return logits
    logits = logits.float()
    if "temperature" in calibration and "scale" not in calibration:
        return logits / float(calibration["temperature"])
    scale = torch.tensor(calibration["scale"], dtype=logits.dtype)
    bias = torch.tensor(calibration["bias"], dtype=logits.dtype)
    return logits * scale + bias


def fit_calibration(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> dict:
    """The calibration of a run, fitted on its validation logits and labels (class ids, or multi-hot)."""
    logits = logits.detach().float()
    if not multi_label:
        return {"method": "temperature", "temperature": fit_temperature(logits, labels.long())}
    targets = labels.float()
    held_out = {how: _cross_validated_nll(logits, targets, how) for how in ("temperature", "platt")}
    chosen = min(held_out, key=lambda how: (held_out[how], how != "temperature"))  # ties: the simpler one
    scale, bias = _fit_per_label(logits, targets, with_bias=chosen == "platt")
    return {"method": chosen, "scale": scale.tolist(), "bias": bias.tolist(),
            "held_out_nll": {how: round(v, 6) for how, v in held_out.items()}}


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimizing the cross-entropy of softmax(logits / T) (L-BFGS on log T)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.clamp(*_LOG_T_RANGE).exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(*_LOG_T_RANGE).exp())


def _fit_per_label(logits: torch.Tensor, targets: torch.Tensor, with_bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-label sigmoid calibration: scale (= 1 / temperature) and, for Platt scaling, a bias.

    A label with only positives or only negatives among these rows keeps its raw logits: there is
    nothing to fit it on, and a fitted bias would run off to infinity."""
    n_labels = logits.shape[1]
    informative = ((targets > 0.5).any(0) & (targets < 0.5).any(0))
    log_scale = torch.zeros(n_labels, requires_grad=True)
    bias = torch.zeros(n_labels, requires_grad=with_bias)
    params = [log_scale, bias] if with_bias else [log_scale]
    optimizer = torch.optim.LBFGS(params, lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    mask = informative.float()

    def closure():
        optimizer.zero_grad()
        z = logits * log_scale.clamp(-_LOG_T_RANGE[1], -_LOG_T_RANGE[0]).exp() + bias
        loss = (F.binary_cross_entropy_with_logits(z, targets, reduction="none") * mask).sum() / max(len(logits), 1)
        loss.backward()
        return loss

    if informative.any():
        optimizer.step(closure)
    scale = log_scale.detach().clamp(-_LOG_T_RANGE[1], -_LOG_T_RANGE[0]).exp()
    scale = torch.where(informative, scale, torch.ones_like(scale))
    fitted_bias = torch.where(informative, bias.detach(), torch.zeros_like(scale))
    return scale.numpy().astype(float), fitted_bias.numpy().astype(float)


def _cross_validated_nll(logits: torch.Tensor, targets: torch.Tensor, how: str) -> float:
    """Mean per-label binary NLL on held-out folds of the validation rows, for choosing between
    per-label temperature and Platt scaling (Platt always fits the rows it is fitted on at least as
    well, so the choice must be made on rows it did not see)."""
    n = len(logits)
    folds = np.array_split(np.random.default_rng(0).permutation(n), min(_CV_FOLDS, max(n, 1)))
    total = 0.0
    for fold in folds:
        if not len(fold):
            continue
        train = np.setdiff1d(np.arange(n), fold)
        scale, bias = _fit_per_label(logits[train], targets[train], with_bias=how == "platt")
        z = logits[fold] * torch.from_numpy(scale).float() + torch.from_numpy(bias).float()
        total += float(F.binary_cross_entropy_with_logits(z, targets[fold], reduction="sum"))
    return total / max(n * logits.shape[1], 1)


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, multi_label: bool, bins: int = ECE_BINS) -> dict:
    """ECE (equal-width bins), Brier score and NLL of probabilities against the true labels.

    Single-label: ECE of the top-class confidence against accuracy; Brier summed over classes and
    averaged over texts. Multi-label: every (text, label) probability counts as one binary forecast."""
    probs = np.asarray(probs, dtype=np.float64)
    eps = 1e-12
    if multi_label:
        targets = np.asarray(labels, dtype=np.float64)
        flat_p, flat_y = probs.ravel(), targets.ravel()
        return {"ece": expected_calibration_error(flat_p, flat_y, bins),
                "brier": float(np.mean((flat_p - flat_y) ** 2)),
                "nll": float(-np.mean(flat_y * np.log(flat_p + eps) + (1 - flat_y) * np.log(1 - flat_p + eps))),
                "n": int(len(probs))}
    labels = np.asarray(labels, dtype=int)
    one_hot = np.eye(probs.shape[1])[labels]
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(float)
    return {"ece": expected_calibration_error(confidence, correct, bins),
            "brier": float(np.mean(((probs - one_hot) ** 2).sum(1))),
            "nll": float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + eps))),
            "n": int(len(labels))}


def expected_calibration_error(confidence: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |mean outcome - mean confidence|, weighted by bin size.

    `outcome` is 1 for a right top-class prediction (or, for a binary forecast, a positive label)."""
    table = reliability_table(confidence, outcome, bins)
    n = max(sum(row["count"] for row in table), 1)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table if row["count"]) / n)


def reliability_table(confidence: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin of [0, 1]: its edges, the number of forecasts, their mean confidence and the
    share that came true (accuracy). The last bin includes 1.0."""
    confidence, outcome = np.asarray(confidence, dtype=np.float64), np.asarray(outcome, dtype=np.float64)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                     "confidence": float(confidence[inside].mean()) if count else 0.0,
                     "accuracy": float(outcome[inside].mean()) if count else 0.0})
    return rows


def per_label_calibration(probs: np.ndarray, targets: np.ndarray, labels: list[str], bins: int = ECE_BINS) -> dict:
    """Multi-label: ECE and Brier of each label's probability on its own."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    return {label: {"ece": expected_calibration_error(probs[:, j], targets[:, j], bins),
                    "brier": float(np.mean((probs[:, j] - targets[:, j]) ** 2)),
                    "positives": int(targets[:, j].sum())}
            for j, label in enumerate(labels)}
