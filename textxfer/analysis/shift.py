"""Two-sample tests of domain shift on frozen features, and the change in predicted labels.

- Classifier two-sample test (Lopez-Paz and Oquab 2017): a logistic regression learns to tell old
  texts from new ones; its cross-validated ROC AUC is 0.5 when it cannot (no shift) and 1.0 when every
  new text is recognisable.
- MMD (Gretton et al. 2012) with an RBF kernel whose width is the median pairwise distance, and a
  permutation p-value: how often randomly relabelled texts differ as much as old and new do.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MMD_TEXTS = 2000  # per side: the kernel matrix of both sides is (2 x 2,000)^2 float64, 128 MiB
PERMUTATIONS = 500


@dataclass
class TwoSampleAUC:
    auc: float
    scores: np.ndarray  # out-of-fold P(new) of every text, old ones first


def classifier_two_sample_auc(old: np.ndarray, new: np.ndarray, folds: int = 5, seed: int = 0) -> TwoSampleAUC:
    """Cross-validated ROC AUC of a logistic regression telling `new` rows from `old` ones."""
    x = np.concatenate([old, new])
    y = np.concatenate([np.zeros(len(old), dtype=int), np.ones(len(new), dtype=int)])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return TwoSampleAUC(float(roc_auc_score(y, scores)), scores)


@dataclass
class MMDTest:
    mmd2: float  # unbiased estimate of the squared MMD
    p_value: float
    bandwidth: float
    permutations: int


@torch.inference_mode()
def mmd_permutation_test(old: np.ndarray, new: np.ndarray, permutations: int = PERMUTATIONS,
                         seed: int = 0) -> MMDTest:
    """Unbiased squared MMD of two samples with an RBF kernel (median heuristic) and its permutation
    p-value; all permutations at once through one kernel-matrix product."""
    z = torch.as_tensor(np.concatenate([old, new]), dtype=torch.float64)
    n, total = len(old), len(z)
    squared = torch.cdist(z, z).pow(2)
    off_diagonal = squared[~torch.eye(total, dtype=torch.bool)]
    bandwidth = float(off_diagonal.median().sqrt()) or 1.0
    kernel = torch.exp(-squared / (2 * bandwidth ** 2))
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand((total, permutations), generator=generator, dtype=torch.float64).argsort(dim=0) < n
    assignments = torch.cat([torch.arange(total)[:, None] < n, draws], dim=1).double()  # column 0: the real split
    stats = _mmd2(kernel, assignments, n, total - n)
    observed, permuted = float(stats[0]), stats[1:]
    p_value = (1 + int((permuted >= observed).sum())) / (1 + permutations)
    return MMDTest(observed, p_value, bandwidth, permutations)


def _mmd2(kernel: torch.Tensor, a: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Unbiased squared MMD for each column of `a` (1: first sample, 0: second); the kernel's diagonal is 1."""
    ones = torch.ones(len(kernel), 1, dtype=kernel.dtype)
    ka, k1 = kernel @ a, kernel @ ones
    xx = (a * ka).sum(0)  # a'Ka
    x_all = (a * k1).sum(0)  # a'K1
    everything = float(ones.T @ k1)
    xy = x_all - xx
    yy = everything - 2 * x_all + xx
    return (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2 * xy / (n * m)


def label_shift(train_labels: list, predicted: list, labels: list[str]) -> dict:
    """Share of each label among the training rows and among the new texts' predictions (a multi-label row
    counts for each of its labels), the change in percentage points, and the total variation distance."""
    def shares(rows) -> dict[str, float]:
        counts = Counter(label for row in rows for label in (row if isinstance(row, list) else [row]))
        total = max(sum(counts.values()), 1)
        return {label: counts.get(label, 0) / total for label in labels}

    before, after = shares(train_labels), shares(predicted)
    change = {label: after[label] - before[label] for label in labels}
    return {"train_share": before, "predicted_share": after, "change": change,
            "total_variation": 0.5 * sum(abs(v) for v in change.values()),
            "grew": sorted((l for l in labels if change[l] > 0), key=lambda l: -change[l]),
            "shrank": sorted((l for l in labels if change[l] < 0), key=lambda l: change[l])}


def verdict(auc: float, p_value: float) -> str:
    """none / slight / moderate / strong, from the two-sample AUC and the MMD p-value."""
    if auc >= 0.8:
        return "strong"
    if auc >= 0.65:
        return "moderate"
    if auc >= 0.55 or p_value < 0.05:
        return "slight"
    return "none"
