"""`textxfer explain` and `Classifier.explain`: token attributions by layer integrated gradients.

The main check: a tiny model trained on texts where one word (the trigger) decides the label gives that
word the largest attribution. Then: explanations run on full, feature_extraction and LoRA runs and leave
the model as they found it; a `chunks` run names the window that decided; `--label`; the terminal,
HTML and JSON outputs; and the folders and labels that are refused with one paragraph, exit 2.
"""
from __future__ import annotations

import csv
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_run, write_recipe
from textxfer import load_classifier
from textxfer.commands.explain import _use_color, render_terminal
from textxfer.errors import TextxferError
from textxfer.inference.explain import embedding_layer, explain
from textxfer.runs.info import RunInfo

STEPS = 16
TRIGGER = "zebra"


def _filler_words(model_dir: str) -> list[str]:
    """Whole-word, lowercase ASCII entries of the tiny model's vocabulary (the trigger left out)."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(model_dir).get_vocab()
    return sorted(w for w, i in vocab.items()
                  if 2000 <= i < 8000 and w.isascii() and w.isalpha() and len(w) >= 3 and w != TRIGGER)


def _trigger_rows(filler: list[str], n: int, rng: random.Random, with_trigger: bool | None = None) -> list[dict]:
    """Texts of 5-10 random filler words; `yes` exactly when the trigger is among them, at a random place."""
    rows = []
    for k in range(n):
        words = rng.sample(filler, rng.randint(5, 10))
        yes = k % 2 == 0 if with_trigger is None else with_trigger
        if yes:
            words.insert(rng.randint(0, len(words)), TRIGGER)
        rows.append({"text": " ".join(words), "label": "yes" if yes else "no"})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trigger(tmp_path_factory, tiny_bert):
    """A `full` run of the tiny BERT trained where the trigger word alone decides the label, and the
    vocabulary its texts are drawn from."""
    from textxfer import load_recipe, train

    folder = tmp_path_factory.mktemp("trigger")
    filler = _filler_words(tiny_bert)
    rng = random.Random(0)
    train_csv = _write_csv(folder / "train.csv", _trigger_rows(filler, 96, rng))
    test_csv = _write_csv(folder / "test.csv", _trigger_rows(filler, 20, rng))
    recipe = write_recipe(folder, data={"train": str(train_csv), "test": str(test_csv), "max_length": 16},
                          model={"name": tiny_bert, "method": "full"},
                          train={"epochs": 4, "lr": 1e-2, "batch_size": 16, "seed": 1},
                          output_dir=str(folder / "run"))
    train(load_recipe(recipe))
    return folder / "run", filler


def test_the_word_that_decides_the_label_gets_the_largest_attribution(trigger):
    run, filler = trigger
    held_out = _trigger_rows(filler, 20, random.Random(7), with_trigger=True)
    explanations = load_classifier(run).explain([r["text"] for r in held_out], steps=STEPS)
    assert len(explanations) == len(held_out)
    right = [e for e in explanations if e.predicted == "yes" and e.label == "yes"
             and max(e.words, key=lambda w: w.score).text == TRIGGER]
    assert len(right) >= 16, [(e.predicted, [(w.text, round(w.score, 2)) for w in e.words]) for e in explanations]
    # the trigger's word is placed where it is in the text
    for e in right:
        word = max(e.words, key=lambda w: w.score)
        assert e.text[word.start:word.end] == TRIGGER


def test_texts_without_the_trigger_are_predicted_no(trigger):
    run, filler = trigger
    texts = [r["text"] for r in _trigger_rows(filler, 20, random.Random(8), with_trigger=False)]
    explanations = load_classifier(run).explain(texts, steps=4)
    assert sum(e.predicted == "no" for e in explanations) >= 16


@pytest.mark.parametrize("run_fixture", ["tiny_full_run", "tiny_fe_run", "tiny_lora_run"])
def test_explain_runs_on_each_kind_of_run_and_leaves_the_model_as_it_was(request, run_fixture):
    clf = load_classifier(request.getfixturevalue(run_fixture))
    texts = ["my card was charged twice", "How do I top up?  By card, please!", "x"]
    flags = [p.requires_grad for p in clf.model.parameters()]
    explanations = clf.explain(texts, steps=STEPS)
    assert [e.index for e in explanations] == [0, 1, 2] and [e.text for e in explanations] == texts
    probs = clf.predict_proba(texts)
    for e, p in zip(explanations, probs):
        assert e.label == e.predicted and e.probability == pytest.approx(float(p.max()), abs=1e-5)
        assert len(e.tokens) == len(e.scores) > 2
        assert all(math.isfinite(s) for s in e.scores) and math.isfinite(e.delta)
        assert np.linalg.norm(e.scores) == pytest.approx(1.0, abs=1e-4)
        for word in e.words:  # words are the text's own characters
            assert e.text[word.start:word.end] == word.text
            assert word.score == pytest.approx(sum(e.scores[slice(*word.tokens)]), abs=1e-6)
        json.dumps(e.to_dict())
    assert [w.text for w in explanations[1].words] == ["How", "do", "I", "top", "up", "?", "By", "card", ",",
                                                       "please", "!"]
    assert [p.requires_grad for p in clf.model.parameters()] == flags and not clf.model.training
    layer = embedding_layer(clf.model)
    assert not layer._forward_hooks and not layer._forward_pre_hooks


def test_the_label_option_explains_that_label(tiny_full_run):
    clf = load_classifier(tiny_full_run)
    label = clf.labels[-1]
    texts = ["my card was charged twice", "where is my refund"]
    explanations = clf.explain(texts, label=label, steps=STEPS)
    probs = clf.predict_proba(texts)
    assert [e.label for e in explanations] == [label, label]
    assert [e.probability for e in explanations] == pytest.approx(list(probs[:, -1]), abs=1e-5)
    assert [e.predicted for e in explanations] == clf.predict(texts)
    with pytest.raises(TextxferError, match="not one of this run's"):
        clf.explain(texts, label="no_such_label")
    with pytest.raises(TextxferError, match="steps"):
        clf.explain(texts, steps=0)


def test_a_chunks_run_reports_the_window_that_decided(trigger, tmp_path):
    run = copy_run(trigger[0], tmp_path)
    info = RunInfo.read(run)
    # any window with the trigger makes the text a `yes`: the max rule
    info.replace(long_text="chunks", max_length=8, stride=2, max_chunks=None, chunk_aggregation="max").write(run)
    clf = load_classifier(run)
    text = f"alpha beta gamma delta country village {TRIGGER} harbour forest station river mountain"
    [e] = clf.explain([text], steps=STEPS)
    assert e.label == e.predicted == "yes"
    assert len(e.windows) >= 3 and e.window is not None
    decider = e.windows[e.window]
    assert decider.logit == max(w.logit for w in e.windows)
    assert TRIGGER in decider.tokens and TRIGGER in text[decider.char_start:decider.char_end]
    assert (e.tokens, e.scores) == (decider.tokens, decider.scores)
    assert max(e.words, key=lambda w: w.score).text == TRIGGER
    # consecutive windows overlap by the stride and together cover the text
    assert e.windows[0].token_start == 0 and e.windows[0].char_start == 0
    assert e.windows[-1].char_end == len(text)
    assert all(b.token_start == a.token_end - 2 for a, b in zip(e.windows, e.windows[1:]))
    assert e.to_dict()["windows"][e.window]["tokens"] == decider.tokens
    # windows of the same tokens are still told apart by where they are
    [same] = clf.explain(["alpha " * 14], steps=2)
    assert [w.token_start for w in same.windows] == [0, 4, 8]
    assert [w.char_start for w in same.windows] == [0, 24, 48] and same.windows[-1].char_end == 83


def test_a_head_tail_run_places_the_words_it_keeps(trigger, tmp_path):
    run = copy_run(trigger[0], tmp_path)
    RunInfo.read(run).replace(long_text="head_tail", max_length=8).write(run)
    text = f"alpha beta gamma delta country village harbour forest station {TRIGGER} river"
    [e] = load_classifier(run).explain([text], steps=STEPS)
    assert len(e.tokens) == 8
    assert all(text[w.start:w.end] == w.text for w in e.words if w.start is not None)
    assert e.words[0].text == "alpha" and e.words[-1].text == "river" and TRIGGER in [w.text for w in e.words]


def test_a_multi_label_run_explains_each_predicted_label(trigger, tmp_path):
    run = copy_run(trigger[0], tmp_path)
    RunInfo.read(run).replace(multi_label=True, calibration=None, decision={"thresholds": {"yes": 0.0, "no": 0.0}}
                              ).write(run)  # every label predicted
    explanations = load_classifier(run).explain(["alpha beta", f"alpha {TRIGGER}"], steps=4)
    assert [(e.index, e.label) for e in explanations] == [(0, "no"), (0, "yes"), (1, "no"), (1, "yes")]
    assert all(e.predicted == ["no", "yes"] for e in explanations)


def test_a_missing_captum_is_one_paragraph_with_the_install_command(tiny_full_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # `import captum.attr` now fails
    with pytest.raises(TextxferError, match=r"pip install 'textxfer\[explain\]'"):
        explain(load_classifier(tiny_full_run), ["my card was charged twice"])


# --- the command -----------------------------------------------------------------------------------

def test_the_command_prints_words_and_writes_html_and_json(cli, trigger, tmp_path):
    run, _ = trigger
    page, scores = tmp_path / "explained.html", tmp_path / "explained.json"
    texts = [f"alpha <script>alert(1)</script> {TRIGGER} beta", "alpha beta & gamma"]
    code, out, err = cli("explain", run, *texts, "--html", page, "--json", scores, "--steps", STEPS)
    assert code == 0, err
    assert "[1] yes" in out and f"{TRIGGER}(+" in out and "\x1b[" not in out  # not a terminal: plain scores
    assert f"top: {TRIGGER} +" in out
    document = json.loads(scores.read_text(encoding="utf-8"))
    assert document["run"] == str(run) and len(document["explanations"]) == 2
    first = document["explanations"][0]
    assert len(first["tokens"]) == len(first["scores"]) and first["label"] == "yes"
    assert {"text", "score", "start", "end"} <= set(first["words"][0])
    content = page.read_text(encoding="utf-8")
    assert content.startswith("<!DOCTYPE html>") and "<script>" not in content
    assert ">&lt;</span>" in content and "&amp;" in content and f">{TRIGGER}</span>" in content
    assert "http" not in content.split("</style>", 1)[1]  # self-contained: no links, no scripts
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_command_explains_the_rows_of_a_file_and_json_to_stdout(cli, trigger, tmp_path):
    run, filler = trigger
    table = _write_csv(tmp_path / "texts.csv", _trigger_rows(filler, 3, random.Random(3)))
    code, out, err = cli("explain", run, table, "--json", "-", "--steps", 4, "--label", "yes")
    assert code == 0, err
    document = json.loads(out)  # nothing else on stdout
    assert [e["label"] for e in document["explanations"]] == ["yes"] * 3


def test_color_only_on_a_terminal_without_no_color(trigger, monkeypatch):
    class Stream:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _use_color(Stream(True)) and not _use_color(Stream(False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _use_color(Stream(True))
    [e] = load_classifier(trigger[0]).explain([f"alpha {TRIGGER}"], steps=4)
    shaded = render_terminal([e], color=True)
    assert "\x1b[38;2;0;0;0;48;2;" in shaded and f"{TRIGGER}\x1b[0m" in shaded


def _fake_folder(tmp_path: Path, name: str, **fields) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    RunInfo(**{"labels": ["no", "yes"], "method": "full", **fields}).write(folder)
    return folder


@pytest.mark.parametrize("case, expected", [
    ("ensemble", "is an ensemble of 2 runs"),
    ("onnx", "is an ONNX export"),
    ("label", "not one of this run's 2 labels"),
    ("not_a_run", "is not a textxfer run folder"),
    ("newer", "newer than this textxfer"),
    ("missing_file", "does not exist"),
    ("file_and_text", "either texts or one file"),
])
def test_bad_input_is_one_paragraph_and_exit_2(cli, trigger, tmp_path, case, expected):
    run = trigger[0]
    args = {
        "ensemble": [_fake_folder(tmp_path, "ens", method="ensemble", combine="mean_prob",
                                  members=[{"folder": "members/0-a"}, {"folder": "members/1-b"}]), "a text"],
        "onnx": [_fake_folder(tmp_path, "onnx", onnx={"file": "model.onnx"}), "a text"],
        "label": [run, "a text", "--label", "maybe"],
        "not_a_run": [tmp_path, "a text"],
        "newer": [_fake_folder(tmp_path, "newer", format_version=99), "a text"],
        "missing_file": [run, tmp_path / "texts.csv"],
        "file_and_text": [run, Path(__file__), "a text"],
    }[case]
    code, out, err = cli("explain", *args)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert err.startswith("textxfer: error: ") and err.count("\n") == 1
