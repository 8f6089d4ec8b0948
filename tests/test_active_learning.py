"""Active learning: the strategies on hand-made probabilities and embeddings, `textxfer select` end to end
on a tiny run (labeled texts and repeats left out, the columns, the ranking), and a tiny
`compare --active-learning` simulation (labels grow by the batch, reports written, reruns identical)."""
import csv
import json

import numpy as np
import pytest

from conftest import SAMPLES, copy_run, write, write_recipe
from textxfer.analysis.active_learning import (Retrain, margins, parse_retrain, parse_strategies, per_class_start,
                                               rank, uncertainty)
from textxfer.errors import TextxferError

PROBS = np.array([[0.50, 0.45, 0.05],   # margin 0.05
                  [0.90, 0.05, 0.05],   # confident
                  [0.34, 0.33, 0.33],   # margin 0.01, highest entropy
                  [0.40, 0.20, 0.40],   # margin 0.00 (a tie at the top)
                  [0.60, 0.10, 0.30]])  # margin 0.30


def test_margin_picks_the_smallest_gaps_first():
    assert np.allclose(margins(PROBS), [0.05, 0.85, 0.01, 0.0, 0.30])
    assert rank(PROBS, "margin", 3).tolist() == [3, 2, 0]
    assert rank(PROBS, "margin", 99).tolist() == [3, 2, 0, 4, 1], "n past the pool: every row, ranked"


def test_least_confidence_and_entropy():
    assert np.allclose(uncertainty(PROBS, "least_confidence"), 1 - PROBS.max(1))
    assert rank(PROBS, "least_confidence", 2).tolist() == [2, 3]  # max p 0.34, then 0.40
    entropy = -(PROBS * np.log(PROBS)).sum(1)
    assert np.allclose(uncertainty(PROBS, "entropy"), entropy)
    assert rank(PROBS, "entropy", 5).tolist() == np.argsort(-entropy, kind="stable").tolist()
    assert rank(PROBS, "entropy", 1).tolist() == [2]  # nearly uniform: the most uncertain
    assert rank(PROBS, "entropy", 5)[-1] == 1  # the confident row last


def test_ties_keep_the_earlier_row_and_random_is_seeded():
    flat = np.full((6, 2), 0.5)
    assert rank(flat, "margin", 6).tolist() == list(range(6))
    first = rank(PROBS, "random", 5, seed=7)
    assert sorted(first.tolist()) == list(range(5)) and first.tolist() == rank(PROBS, "random", 5, seed=7).tolist()
    assert any(rank(PROBS, "random", 5, seed=s).tolist() != first.tolist() for s in range(8, 12))


def test_margin_kmeans_spreads_a_batch_over_the_clusters():
    # two tight groups of near-duplicates, all uncertain; group A a little more so than group B; far
    # apart in embedding space. Plain margin fills the batch from group A alone.
    rng = np.random.default_rng(0)
    a, b, sure = np.eye(8)[0], np.eye(8)[1], np.eye(8)[2]
    embeddings = np.vstack([a + 0.01 * rng.standard_normal((10, 8)), b + 0.01 * rng.standard_normal((10, 8)),
                            sure + 0.01 * rng.standard_normal((10, 8))])
    gaps = np.concatenate([np.linspace(0.01, 0.02, 10), np.linspace(0.03, 0.04, 10), np.full(10, 0.9)])
    probs = np.stack([(1 + gaps) / 2, (1 - gaps) / 2], axis=1)
    by_margin = rank(probs, "margin", 2)
    assert all(row < 10 for row in by_margin), "margin alone: both picks from group A"
    spread = rank(probs, "margin_kmeans", 2, seed=0, embeddings=embeddings)
    assert {int(row) // 10 for row in spread} == {0, 1}, "one pick from each group"
    assert spread.tolist() == [0, 10], "each group's most uncertain, ranked by margin"
    assert spread.tolist() == rank(probs, "margin_kmeans", 2, seed=0, embeddings=embeddings).tolist()
    assert len(set(rank(probs, "margin_kmeans", 5, seed=1, embeddings=embeddings).tolist())) == 5
    with pytest.raises(TextxferError, match="embedding"):
        rank(probs, "margin_kmeans", 2)


def test_parsing_and_bad_input():
    assert parse_strategies(None) == ["random", "margin", "margin_kmeans"]
    assert parse_strategies("entropy, margin,entropy") == ["entropy", "margin"]
    with pytest.raises(TextxferError, match="Unknown active-learning strategy 'magic'"):
        parse_strategies("margin,magic")
    with pytest.raises(TextxferError, match="positive integer"):
        rank(PROBS, "margin", 0)
    assert [r.kind for r in parse_retrain("feature_extraction,self_training,full")] == ["head", "self_training", "run"]
    assert parse_retrain("full")[0] == Retrain("run", "full", "full")
    with pytest.raises(TextxferError, match="--retrain"):
        parse_retrain("feature_extraction,magic")
    labels = [i % 4 for i in range(40)]
    start = per_class_start(labels, 2, seed=3)
    assert sorted(labels[i] for i in start) == [0, 0, 1, 1, 2, 2, 3, 3] and start == per_class_start(labels, 2, 3)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _pool(tmp_path):
    """A pool of 30 new texts, plus 7 already labeled (train and test texts, case and spaces changed, and
    a --labeled file's) and 2 repeats."""
    small = {r["text"] for r in _rows(SAMPLES / "tickets_small.csv")}
    test = [r["text"] for r in _rows(SAMPLES / "tickets_test.csv")]
    fresh = list(dict.fromkeys(r["text"] for r in _rows(SAMPLES / "tickets_train.csv")
                               if r["text"] not in small and r["text"] not in set(test)))[:32]
    new, extra_labeled = fresh[:30], fresh[30:32]
    known = [f"  {t.upper()} " for t in sorted(small)[:3]] + test[:2] + extra_labeled
    texts = new[:10] + known + [new[3].upper(), new[5]] + new[10:]
    lines = [["id", "text", "source"]] + [[str(i), t, "pool"] for i, t in enumerate(texts)]
    pool = tmp_path / "pool.csv"
    with pool.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(lines)
    labeled = tmp_path / "labeled.csv"
    with labeled.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["text", "label"]] + [[t, "x"] for t in extra_labeled])
    return pool, labeled, new


def test_select_leaves_out_labeled_texts_and_repeats_and_ranks_by_margin(tmp_path, cli, tiny_fe_run):
    from textxfer.inference import load_classifier

    pool, labeled, new = _pool(tmp_path)
    out = tmp_path / "to_label.csv"
    code, stdout, err = cli("select", tiny_fe_run, pool, "-n", "10", "--strategy", "margin", "-o", out,
                            "--labeled", labeled)
    assert code == 0, err
    assert "wrote the 10 texts to label next (margin)" in stdout
    assert "of the 39 pool texts: 7 already labeled, 2 repeats" in stdout
    rows = _rows(out)
    assert list(rows[0]) == ["id", "text", "source", "rank", "suggested_label", "score"]
    assert [r["rank"] for r in rows] == [str(k) for k in range(1, 11)]
    assert all(r["text"] in new for r in rows) and len({r["text"] for r in rows}) == 10
    classifier = load_classifier(tiny_fe_run)
    probs = classifier.predict_proba(new)
    expected = [new[i] for i in np.argsort(margins(probs), kind="stable")[:10]]
    assert [r["text"] for r in rows] == expected, "smallest margin first"
    by_text = dict(zip(new, probs))
    for r in rows:
        p = by_text[r["text"]]
        assert r["suggested_label"] == classifier.labels[int(p.argmax())]
        assert abs(float(r["score"]) - p.max()) < 1e-5
    # the diversity-aware strategy and a JSONL output
    code, _, err = cli("select", tiny_fe_run, pool, "-n", "5", "--strategy", "margin_kmeans", "-o",
                       tmp_path / "spread.jsonl", "--labeled", labeled)
    assert code == 0, err
    spread = [json.loads(line) for line in (tmp_path / "spread.jsonl").read_text().splitlines()]
    assert len(spread) == 5 and len({r["text"] for r in spread}) == 5 and all(r["text"] in new for r in spread)
    gaps = [margins(by_text[r["text"]][None])[0] for r in spread]
    assert gaps == sorted(gaps) and isinstance(spread[0]["score"], float)


def test_select_clusters_a_fine_tuned_run_on_its_base_model_features(tmp_path, cli, tiny_full_run):
    pool, labeled, new = _pool(tmp_path)
    code, stdout, err = cli("select", tiny_full_run, pool, "-n", "4", "--strategy", "margin_kmeans", "-o",
                            tmp_path / "picked.tsv", "--labeled", labeled, "--seed", "3")
    assert code == 0, err
    with open(tmp_path / "picked.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"] and all(r["text"] in new for r in rows)


@pytest.mark.parametrize("make_args, words", [
    (lambda tmp, run, pool: [run, pool, "-n", "5", "--strategy", "magic"], ["'magic'", "margin_kmeans"]),
    (lambda tmp, run, pool: [run, pool, "-n", "0"], ["-n", "positive integer"]),
    (lambda tmp, run, pool: [run, write(tmp, "other.csv", "body\nhello there\n"), "-n", "5"], ["other.csv", "`text`"]),
    (lambda tmp, run, pool: [tmp / "multi", pool, "-n", "5"], ["multi-label"]),
])
def test_select_bad_input_is_one_paragraph_and_exit_2(tmp_path, cli, tiny_fe_run, make_args, words):
    multi = copy_run(tiny_fe_run, tmp_path, "multi")
    info = json.loads((multi / "textxfer.json").read_text())
    (multi / "textxfer.json").write_text(json.dumps({**info, "multi_label": True}))
    pool, _, _ = _pool(tmp_path)
    code, _, err = cli("select", *make_args(tmp_path, tiny_fe_run, pool), "-o", tmp_path / "out.csv")
    assert code == 2, err
    assert err.startswith("textxfer: error: ") and err.strip().count("\n") == 0
    for word in words:
        assert word in err
    assert not (tmp_path / "out.csv").exists()


def _simulate(cli, folder, tiny_bert, *extra):
    recipe = write_recipe(folder, data={"train": str(SAMPLES / "tickets_small.csv"),
                                        "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                          model={"name": tiny_bert}, train={"seed": 1}, output_dir=str(folder / "cmp"))
    code, out, err = cli("compare", recipe, "--active-learning", "--start-per-class", "1", "--batch", "4",
                         "--rounds", "2", "--seeds", "2", *extra)
    assert code == 0, err
    return json.loads((folder / "cmp" / "active_learning" / "active_learning.json").read_text()), out


def test_the_simulation_adds_a_batch_per_round_writes_reports_and_reruns_identically(tmp_path, cli, tiny_bert):
    first, out = _simulate(cli, tmp_path / "a", tiny_bert, "--retrain", "feature_extraction,self_training")
    series = first["series"]
    assert len(series) == 2 * 3 * 2  # retrain choices x strategies x seeds
    assert {(s["retrain"], s["strategy"]) for s in series} == {(r, s) for r in ("feature_extraction", "self_training")
                                                               for s in ("random", "margin", "margin_kmeans")}
    for s in series:
        assert [p["labels"] for p in s["points"]] == [10, 14, 18], "1 per class (10 classes), then +4 a round"
        assert all(0 <= p["test_accuracy"] <= 1 for p in s["points"])
    folder = tmp_path / "a" / "cmp" / "active_learning"
    table = (folder / "active_learning.md").read_text()
    assert "## retrain: `feature_extraction`" in table and "## retrain: `self_training`" in table
    assert "| 2 | 18 |" in table and "gain over random" in table
    assert (folder / "active_learning.png").stat().st_size > 1000
    # a rerun into another folder with the same seeds gives the same numbers
    again, _ = _simulate(cli, tmp_path / "b", tiny_bert, "--retrain", "feature_extraction,self_training")
    strip = lambda rs: [(r["retrain"], r["strategy"], r["seed"], [(p["labels"], p["test_accuracy"]) for p in r["points"]])
                        for r in rs]  # noqa: E731
    assert strip(again["series"]) == strip(series)
    # the same folder again: every series is done, nothing is retrained
    _, out = _simulate(cli, tmp_path / "a", tiny_bert, "--retrain", "feature_extraction,self_training")
    assert "round 0" not in out


def test_a_method_retrain_runs_the_train_path_each_round(tmp_path, cli, tiny_bert):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"),
                                          "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                          model={"name": tiny_bert}, train={"seed": 1, "epochs": 1, "lr": 5e-3, "min_steps": 0},
                          output_dir=str(tmp_path / "cmp"))
    code, _, err = cli("compare", recipe, "--active-learning", "--strategies", "margin", "--start-per-class", "1",
                       "--batch", "5", "--rounds", "1", "--seeds", "1", "--retrain", "full", "train.epochs=1",
                       "train.lr=5e-3")
    assert code == 0, err
    folder = tmp_path / "cmp" / "active_learning"
    series = json.loads((folder / "active_learning.json").read_text())["series"]
    assert [p["labels"] for p in series[0]["points"]] == [10, 15]
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["full-margin-seed0-round1"], "earlier rounds removed"


@pytest.mark.parametrize("extra, words", [
    (["--strategies", "margin,magic"], ["'magic'"]),
    (["--retrain", "magic"], ["--retrain", "'magic'"]),
    (["--rounds", "0"], ["--rounds", "positive"]),
    (["--start-per-class", "50"], ["--start-per-class"]),
])
def test_simulation_bad_input_is_one_paragraph_and_exit_2(tmp_path, cli, tiny_bert, extra, words):
    recipe = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"),
                                          "test": str(SAMPLES / "tickets_test.csv")},
                          model={"name": tiny_bert}, output_dir=str(tmp_path / "cmp"))
    code, _, err = cli("compare", recipe, "--active-learning", *extra)
    assert code == 2, err
    assert err.startswith("textxfer: error: ") and err.strip().count("\n") == 0
    for word in words:
        assert word in err
