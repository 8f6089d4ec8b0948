"""Label errors: confident learning by hand (thresholds, confident joint, ranking), out-of-fold
probabilities from the L-BFGS head, and `textxfer audit --label-errors` finding planted flips."""
import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, SAMPLES, write, write_recipe
from textxfer.analysis.label_errors import confident_learning, out_of_fold_probabilities


def test_confident_learning_on_a_small_matrix_worked_by_hand():
    probs = np.array([[0.9, 0.1, 0.0],   # 0: clean a
                      [0.7, 0.3, 0.0],   # 1: clean a
                      [0.1, 0.8, 0.1],   # 2: clean b
                      [0.0, 0.6, 0.4],   # 3: clean b
                      [0.85, 0.15, 0.0],  # 4: labelled b, confidently a
                      [0.1, 0.2, 0.7],   # 5: clean c
                      [0.4, 0.3, 0.3]])  # 6: labelled c, below every class's threshold
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    issues = confident_learning(probs, labels)
    # thresholds: mean self-confidence per given class
    assert issues.thresholds == pytest.approx([0.8, (0.8 + 0.6 + 0.15) / 3, (0.7 + 0.3) / 2])
    # row 4: p(a)=0.85 >= 0.8 -> a; rows 1 and 6 reach no threshold, so they count nowhere
    assert issues.confident_joint.tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 1]]
    assert issues.rows.tolist() == [4] and issues.suggested.tolist() == [0]
    assert issues.given_probability.tolist() == [0.15] and issues.suggested_probability.tolist() == [0.85]


def test_issues_are_ranked_by_the_probability_of_their_given_label():
    probs = np.array([[0.9, 0.1], [0.95, 0.05], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.97, 0.03], [0.9, 0.1]])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])  # rows 5 and 6 are labelled 1 but look like 0
    issues = confident_learning(probs, labels)
    assert issues.rows.tolist() == [5, 6]
    assert issues.estimated_error_rate > 0


def test_out_of_fold_head_and_confident_learning_find_planted_flips():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 32)) * 2
    truth = np.repeat(np.arange(6), 100)
    x = torch.tensor(centres[truth] + rng.normal(size=(600, 32)), dtype=torch.float32)
    x = torch.nn.functional.normalize(x, dim=1)
    given = truth.copy()
    flipped = rng.choice(600, 30, replace=False)
    for i in flipped:
        given[i] = rng.choice([c for c in range(6) if c != truth[i]])
    oof = out_of_fold_probabilities(x, given, 6, folds=5, seed=0)
    assert oof.probabilities.shape == (600, 6) and np.allclose(oof.probabilities.sum(1), 1, atol=1e-5)
    assert oof.accuracy > 0.85
    issues = confident_learning(oof.probabilities, given)
    found = set(issues.rows.tolist())
    hits = found & set(flipped.tolist())
    assert len(hits) / len(found) >= 0.8 and len(hits) / len(flipped) >= 0.8
    assert all(issues.suggested[k] == truth[i] for k, i in enumerate(issues.rows) if i in hits)


def _flipped_copy(folder: Path, source: Path, count: int, seed: int) -> tuple[Path, set[int]]:
    """`source` with `count` labels changed to another label at random; returns the file and the flipped rows."""
    with source.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = sorted({r["label"] for r in rows})
    rng = random.Random(seed)
    flipped = set(rng.sample(range(len(rows)), count))
    for i in flipped:
        rows[i]["label"] = rng.choice([l for l in labels if l != rows[i]["label"]])
    path = folder / "train.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path, {i + 1 for i in flipped}


def test_audit_label_errors_writes_the_ranked_list(tmp_path, tiny_bert, cli):
    recipe = ROOT / "recipes" / "tickets_minilm.yaml"
    code, out, err = cli("audit", recipe, f"model.name={tiny_bert}", "--label-errors", "--folds", "3",
                         "--no-near-duplicates", "--output", tmp_path / "audit")
    assert code == 0, err
    with (tmp_path / "audit" / "label_errors.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames[:8] == ["rank", "file", "row", "split", "text", "given_label", "suggested_label",
                                     "confidence"]
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["given_label"] != r["suggested_label"] for r in rows)
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())["label_errors"]
    assert report["rows_checked"] == 1859 and report["folds"] == 3 and report["flagged"] == len(rows)
    assert "likely label errors" in out


def test_label_errors_refuse_multi_label_data(tmp_path, tiny_bert, cli):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_multilabel_train.csv"), "label_column": "labels",
                                          "multi_label": True}, model={"name": tiny_bert})
    code, _, err = cli("audit", recipe, "--label-errors", "--output", tmp_path / "audit")
    assert code == 2 and "single-label" in err and "data.multi_label" in err


@pytest.mark.slow
def test_audit_finds_planted_label_flips_in_the_tickets_with_minilm(tmp_path, cli):
    """The real embedded model: 40 of the 1,459 ticket labels (2.7%) flipped at random are found with
    high precision and recall."""
    train, flipped = _flipped_copy(tmp_path, SAMPLES / "tickets_train.csv", 40, seed=0)
    recipe = write_recipe(tmp_path, data={"train": str(train), "max_length": 64}, model={"name": "minilm-l6"})
    code, _, err = cli("audit", recipe, "--label-errors", "--no-near-duplicates", "--output", tmp_path / "audit")
    assert code == 0, err
    with (tmp_path / "audit" / "label_errors.csv").open(encoding="utf-8", newline="") as fh:
        flagged = {int(r["row"]) for r in csv.DictReader(fh)}
    hits = flagged & flipped
    assert len(hits) / len(flipped) >= 0.8 and len(hits) / len(flagged) >= 0.7
