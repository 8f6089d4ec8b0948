"""Self-training: the most confident pseudo-labels per class join training, labeled texts never do,
the round kept is the best on validation, and on real tickets it beats the labeled rows alone."""
import csv
import random
from pathlib import Path

import pytest
import torch

from conftest import SAMPLES, write_recipe
from textxfer import load_classifier, load_recipe, train
from textxfer.errors import TextxferError
from textxfer.data.batching import TokenizedDataset
from textxfer.training.self_training import pseudo_labels, with_pseudo_labels, without_known


def test_pseudo_labels_take_the_most_confident_texts_of_each_predicted_class():
    logits = torch.tensor([[5.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0], [0, 4.0, 0], [0, 0.5, 0], [0, 0, 2.0]])
    rows, labels = pseudo_labels(logits, per_class=2)
    # class 0: rows 0 and 2, not the least sure row 1; class 1: both of its rows; class 2: its one row
    assert rows.tolist() == [0, 2, 3, 4, 5]
    assert labels.tolist() == [0, 0, 1, 1, 2]
    rows, labels = pseudo_labels(torch.zeros(4, 2), per_class=1)  # all tied on class 0: the earliest row
    assert rows.tolist() == [0] and labels.tolist() == [0]


def test_without_known_drops_labeled_texts_and_repeats_keeping_order():
    kept, dropped = without_known(["b", "a", "b", "c", "x"], known={"x"})
    assert kept == ["b", "a", "c"] and dropped == 2


def test_the_students_set_is_the_labeled_rows_then_the_picked_pseudo_labelled_ones():
    labeled = TokenizedDataset({"input_ids": [[1, 5], [1, 6, 7]], "attention_mask": [[1, 1], [1, 1, 1]],
                                "doc": [0, 1], "label": [2, 0]})
    unlabeled = TokenizedDataset({"input_ids": [[1, 8], [1, 9], [1, 4, 4]], "attention_mask": [[1, 1], [1, 1], [1, 1, 1]],
                                  "doc": [0, 1, 2]})
    students = with_pseudo_labels(labeled, unlabeled, torch.tensor([0, 2]), torch.tensor([1, 2]))
    assert students.columns["input_ids"] == [[1, 5], [1, 6, 7], [1, 8], [1, 4, 4]]
    assert students.columns["label"] == [2, 0, 1, 2]
    assert students.columns["doc"] == [0, 1, 2, 4]  # unlabeled documents numbered after the labeled ones
    assert students.lengths == [2, 3, 2, 3] and labeled.columns["label"] == [2, 0]  # the labeled set is untouched


def _rows(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return [(r["text"], r["label"]) for r in csv.DictReader(fh)]


def _write(path, rows, header=("text", "label")):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _few_shot_files(tmp_path, per_class: int, validation_per_class: int, seed: int = 0):
    """Labeled train / validation rows drawn per class from the tickets, the rest as unlabeled texts.
    The unlabeled file also repeats one train and one validation text, which must be left out."""
    test_texts = {text for text, _ in _rows(SAMPLES / "tickets_test.csv")}
    rows = [row for row in {text: (text, label) for text, label in _rows(SAMPLES / "tickets_train.csv")}.values()
            if row[0] not in test_texts]  # unique texts, none of them a test text
    random.Random(seed).shuffle(rows)
    train_rows, val_rows, rest, seen = [], [], [], {}
    for text, label in rows:
        n = seen[label] = seen.get(label, 0) + 1
        (train_rows if n <= per_class else val_rows if n <= per_class + validation_per_class else rest).append((text, label))
    unlabeled = [(t,) for t, _ in rest] + [(train_rows[0][0],), (val_rows[0][0],)]
    return (_write(tmp_path / "train.csv", train_rows), _write(tmp_path / "validation.csv", val_rows),
            _write(tmp_path / "unlabeled.csv", unlabeled, header=("text",)), len(rest))


def test_rounds_are_recorded_and_the_best_validation_round_is_kept(tmp_path, tiny_bert, capsys):
    train_file, val_file, unlabeled, n_rest = _few_shot_files(tmp_path, per_class=4, validation_per_class=6)
    path = write_recipe(tmp_path, data={"train": train_file, "validation": val_file, "unlabeled": unlabeled,
                                        "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32},
                        model={"name": tiny_bert, "method": "feature_extraction"},
                        train={"self_training_rounds": 2, "self_training_per_class": 15},
                        output_dir=str(tmp_path / "run"))
    metrics = train(load_recipe(path))
    out, err = capsys.readouterr()
    assert f"leaves out 2 of the {n_rest + 2} texts" in err  # the train and the validation text
    history = metrics["history"]
    assert [h["self_training_round"] for h in history] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # three L2 fits per round
    assert all(h["pseudo_labeled"] == 0 for h in history[:3])
    assert all(0 < h["pseudo_labeled"] <= 15 * 10 for h in history[3:])
    scores = [h["validation_macro_f1"] for h in history]
    best = metrics["train"]["best_epoch"]
    assert scores[best - 1] == max(scores) and scores.index(max(scores)) == best - 1  # first of the best
    assert f"keeps round {history[best - 1]['self_training_round']}" in out
    assert metrics["validation"]["macro_f1"] == pytest.approx(max(scores))
    # the kept head is the one saved: the reloaded classifier reproduces the run's validation accuracy
    val = _rows(val_file)
    predicted = load_classifier(str(tmp_path / "run")).predict([t for t, _ in val])
    accuracy = sum(p == label for p, (_, label) in zip(predicted, val)) / len(val)
    assert accuracy == pytest.approx(metrics["validation"]["accuracy"], abs=1.5 / len(val))


@pytest.mark.parametrize("overrides,message", [
    (["model.method=full", "data.unlabeled=u.txt"], "Use `model.method=feature_extraction`"),
    (["model.method=feature_extraction"], "Set `data.unlabeled=FILE`"),
    (["model.method=feature_extraction", "data.unlabeled=u.txt", "data.multi_label=true"], "multi-label"),
    (["model.method=feature_extraction", "data.unlabeled=u.txt", "train.head_solver=sgd"], "L-BFGS"),
])
def test_self_training_where_it_cannot_apply_is_refused(overrides, message):
    with pytest.raises(TextxferError, match="self_training_rounds") as error:
        load_recipe(None, ["data.train=x.csv", "train.self_training_rounds=2", *overrides])
    assert message in str(error.value)


@pytest.mark.parametrize("overrides,key,message", [
    (["train.student_epochs=1"], "student_epochs", "self-training is off"),
    (["train.self_training_rounds=1", "train.student_epochs=-1"], "student_epochs", "must be 0 or more"),
    (["train.self_training_rounds=1", "train.student_epochs=1", "train.student_lr=0"], "student_lr", "above 0"),
    (["train.self_training_rounds=1", "train.student_epochs=1", "train.student_generations=0"], "student_generations",
     "at least 1"),
])
def test_a_student_without_self_training_or_with_bad_settings_is_refused(overrides, key, message):
    with pytest.raises(TextxferError, match=key) as error:
        load_recipe(None, ["data.train=x.csv", "data.unlabeled=u.txt", "model.method=feature_extraction", *overrides])
    assert message in str(error.value)


@pytest.mark.parametrize("noise", ["1", "-0.1"])
def test_student_noise_outside_zero_to_one_is_refused(noise):
    with pytest.raises(TextxferError, match="student_noise") as error:
        load_recipe(None, ["data.train=x.csv", "data.unlabeled=u.txt", "model.method=feature_extraction",
                           "train.self_training_rounds=1", "train.student_epochs=1", f"train.student_noise={noise}"])
    assert f"got {float(noise)}" in str(error.value)


def _backbone_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(next(folder.glob("*.safetensors"))))


def _student_recipe(tmp_path, tiny_bert, lr):
    train_file, val_file, unlabeled, _ = _few_shot_files(tmp_path, per_class=4, validation_per_class=6)
    return write_recipe(tmp_path, data={"train": train_file, "validation": val_file, "unlabeled": unlabeled,
                                        "max_length": 32},
                        model={"name": tiny_bert, "method": "feature_extraction"},
                        train={"self_training_rounds": 1, "self_training_per_class": 15, "student_epochs": 3,
                               "student_lr": lr, "student_generations": 2, "batch_size": 16},
                        output_dir=str(tmp_path / "run")), val_file


def test_noisy_students_fine_tune_the_backbone_and_the_best_on_validation_is_kept(tmp_path, tiny_bert, capsys):
    """A random tiny backbone: fine-tuning it on labeled + pseudo-labelled tickets must beat a linear
    head on its random features. A kept student teaches a second one; the saved run is the best model
    on validation over the teacher and both students, backbone included."""
    path, val_file = _student_recipe(tmp_path, tiny_bert, lr=1e-3)
    metrics = train(load_recipe(path))
    out = capsys.readouterr().out
    history = metrics["history"]
    first = [h for h in history if h.get("student_generation") == 1 and "student_epoch" in h]
    assert [h["student_epoch"] for h in first] == [1, 2, 3]
    assert all(0 < h["pseudo_labeled"] <= 15 * 10 for h in first)
    assert first[-1]["train_loss"] < first[0]["train_loss"]
    teacher_best = max(h["validation_macro_f1"] for h in history if h["student_generation"] == 0)
    assert max(h["validation_macro_f1"] for h in first) > teacher_best and "noisy student 1 is the best so far" in out
    assert "15% of input tokens masked" in out  # train.student_noise's default reaches the students
    # student 1 was kept, so it taught a second generation: its head refit on its own features (rounds 0
    # and 1, three L2 strengths each), then student 2's three epochs
    refits = [h for h in history if h["student_generation"] == 1 and "student_epoch" not in h]
    assert [h["self_training_round"] for h in refits] == [0, 0, 0, 1, 1, 1]
    assert [h["student_epoch"] for h in history if h["student_generation"] == 2] == [1, 2, 3]
    scores = [h["validation_macro_f1"] for h in history]
    best = metrics["train"]["best_epoch"]
    assert scores.index(max(scores)) == best - 1 and metrics["validation"]["macro_f1"] == pytest.approx(max(scores))
    assert history[best - 1]["student_generation"] >= 1
    before, after = _backbone_weights(Path(tiny_bert)), _backbone_weights(tmp_path / "run" / "backbone")
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert len(changed) > len(after) // 2  # the backbone trained (not just the head)
    assert metrics["train"]["timings"]["student_seconds"] > 0
    assert metrics["train"]["trainable_parameters"] == metrics["train"]["total_parameters"]
    val = _rows(val_file)
    predicted = load_classifier(str(tmp_path / "run")).predict([t for t, _ in val])
    accuracy = sum(p == label for p, (_, label) in zip(predicted, val)) / len(val)
    assert accuracy == pytest.approx(metrics["validation"]["accuracy"], abs=1.5 / len(val))


def test_a_student_no_better_than_its_teacher_is_dropped_and_the_backbone_stays_pretrained(tmp_path, tiny_bert, capsys):
    path, _ = _student_recipe(tmp_path, tiny_bert, lr=1e-12)  # too small to change a prediction: a tie at best
    metrics = train(load_recipe(path))
    out = capsys.readouterr().out
    assert "noisy student 1 is no better" in out and "stopping there" in out and "keeps the first teacher" in out
    history = metrics["history"]
    assert {h["student_generation"] for h in history} == {0, 1}  # no second generation
    assert "student_epoch" not in history[metrics["train"]["best_epoch"] - 1]
    before, after = _backbone_weights(Path(tiny_bert)), _backbone_weights(tmp_path / "run" / "backbone")
    assert all(torch.equal(after[k], before[k]) for k in after)


def test_students_of_a_tokenizer_without_a_mask_token_need_student_noise_zero(tmp_path, tiny_bert, cli):
    """Decoder tokenizers usually have no mask token: masking input tokens is then impossible, and
    the run says so up front (before any feature is computed) instead of failing deep inside."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "no-mask-bert"
    shutil.copytree(tiny_bert, folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.mask_token = None
    tokenizer.save_pretrained(str(folder))
    path, _ = _student_recipe(tmp_path, str(folder), lr=1e-3)
    code, _, err = cli("train", path, "train.student_generations=1", "train.student_epochs=1")
    assert code != 0 and "train.student_noise=0" in err and "no-mask-bert" in err and "Traceback" not in err
    code, out, err = cli("train", path, "train.student_generations=1", "train.student_epochs=1", "train.student_noise=0")
    assert code == 0, err
    assert "no input masking" in out


def test_an_unlabeled_file_of_only_labeled_texts_is_an_error(tmp_path, tiny_bert, cli):
    train_file = str(SAMPLES / "tickets_small.csv")
    path = write_recipe(tmp_path, data={"train": train_file, "unlabeled": train_file, "max_length": 32},
                        model={"name": tiny_bert, "method": "feature_extraction"},
                        train={"self_training_rounds": 1}, output_dir=str(tmp_path / "run"))
    code, _, err = cli("train", path)
    assert code != 0 and "nothing to pseudo-label" in err and "tickets_small.csv" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_self_training_beats_the_labeled_rows_alone_on_real_tickets(tmp_path):
    """MiniLM-L6 features, 3 labeled tickets per intent, ~1,100 unlabeled ones (10 intents, chance 10%)."""
    train_file, val_file, unlabeled, _ = _few_shot_files(tmp_path, per_class=3, validation_per_class=20)
    data = {"train": train_file, "validation": val_file, "unlabeled": unlabeled,
            "test": str(SAMPLES / "tickets_test.csv"), "max_length": 48}
    accuracy = {}
    for rounds in (0, 3):
        path = write_recipe(tmp_path / f"r{rounds}", data=data, model={"name": "minilm-l6", "method": "feature_extraction"},
                            train={"self_training_rounds": rounds}, output_dir=str(tmp_path / f"run{rounds}"))
        accuracy[rounds] = train(load_recipe(path))["test"]["accuracy"]
    assert accuracy[3] > accuracy[0] + 0.01, accuracy


def test_long_texts_in_windows_are_pseudo_labelled_window_by_window(tmp_path, tiny_bert, capsys):
    train_file, val_file, unlabeled, _ = _few_shot_files(tmp_path, per_class=4, validation_per_class=6)
    path = write_recipe(tmp_path, data={"train": train_file, "validation": val_file, "unlabeled": unlabeled,
                                        "max_length": 12, "long_text": "chunks", "stride": 2},
                        model={"name": tiny_bert, "method": "feature_extraction"},
                        train={"self_training_rounds": 1, "self_training_per_class": 5}, output_dir=str(tmp_path / "run"))
    metrics = train(load_recipe(path))
    assert "unlabeled windows pseudo-labelled" in capsys.readouterr().out
    assert metrics["history"][-1]["pseudo_labeled"] <= 5 * 10
    assert metrics["validation"]["n"] == len(_rows(val_file))  # scored per document, not per window


@pytest.mark.parametrize("name,content,message", [
    ("missing.txt", None, "does not exist"),
    ("latin.txt", "caf\xe9 card arrival\n".encode("latin-1"), "not valid utf-8"),
    ("blank.txt", "\n  \n", "holds no text"),
])
def test_bad_unlabeled_files_are_explained(tmp_path, tiny_bert, cli, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    path = write_recipe(tmp_path, data={"train": str(SAMPLES / "tickets_small.csv"), "unlabeled": str(tmp_path / name),
                                        "max_length": 32},
                        model={"name": tiny_bert, "method": "feature_extraction"},
                        train={"self_training_rounds": 1}, output_dir=str(tmp_path / "run"))
    code, _, err = cli("train", path)
    assert code == 2 and message in err and name in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
