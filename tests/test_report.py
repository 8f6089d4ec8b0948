"""The pictures stay legible from 2 to 150 classes: figures grow with the labels, nothing is clipped."""
import numpy as np
from PIL import Image

from textxfer.evaluation.report import _confused_pairs, plot_confusion_matrix, plot_learning_curves


def _matrix(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=(n, n))
    np.fill_diagonal(counts, 30)
    return counts.tolist()


def test_the_confusion_matrix_grows_with_the_number_and_length_of_labels(tmp_path):
    sizes = {}
    for n in (2, 10, 77, 150):
        labels = [f"intent_number_{i}_with_a_long_name" for i in range(n)]
        path = tmp_path / f"cm{n}.png"
        plot_confusion_matrix(_matrix(n), labels, path, "test: accuracy 0.900, macro-F1 0.900")
        sizes[n] = Image.open(path).size
    assert sizes[2][0] < sizes[10][0] < sizes[77][0] < sizes[150][0]
    assert sizes[150][1] / 150 >= 12, "at least 12 pixels per class row: labels stay readable"
    short = tmp_path / "short.png"
    plot_confusion_matrix(_matrix(10), [f"c{i}" for i in range(10)], short, "t")
    assert Image.open(short).size[0] < sizes[10][0], "short labels: a narrower figure"


def test_many_classes_get_the_most_confused_pairs():
    counts = np.eye(30, dtype=int) * 20
    counts[3, 7], counts[5, 1] = 9, 4
    pairs = _confused_pairs(counts.astype(float), [f"l{i}" for i in range(30)])
    assert pairs[0][:2] == ("l3 -> l7", 9) and pairs[1][:2] == ("l5 -> l1", 4) and len(pairs) == 2


def test_learning_curves_draw_epochs_and_l2_fits(tmp_path):
    epochs = [{"epoch": e, "train_loss": 1 / e, "validation_loss": 1 / e, "validation_accuracy": 0.5,
               "validation_macro_f1": 0.5 + e / 100} for e in range(1, 5)]
    fits = [{**h, "head_l2": l2} for h, l2 in zip(epochs[:3], (1e-4, 1e-5, 1e-6))]
    for name, history in (("epochs.png", epochs), ("fits.png", fits)):
        plot_learning_curves(history, tmp_path / name)
        assert Image.open(tmp_path / name).size[0] > 800
