"""ONNX export: full and merged (LoRA) runs, checked with ONNX Runtime against PyTorch on the test set."""
import csv
import json

import numpy as np
import pytest

from conftest import SAMPLES
from textxfer import load_classifier

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

DATA = {"train": str(SAMPLES / "tickets_small.csv"), "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32}


@pytest.fixture(scope="module")
def exported_full(tmp_path_factory, tiny_full_run):
    from textxfer.commands.cli import main

    tmp = tmp_path_factory.mktemp("onnx-full")
    assert main(["export-onnx", str(tiny_full_run), str(tmp / "onnx")]) == 0
    return tiny_full_run, tmp / "onnx"


def _session(folder):
    import onnxruntime

    return onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def test_full_run_exports_with_config_tokenizer_labels_and_a_passed_check(exported_full):
    run, out = exported_full
    assert sorted(p.name for p in out.iterdir()) == [".textxfer-owned.json", "config.json", "model.onnx",
                                                     "onnx_check.json", "textxfer.json", "tokenizer.json",
                                                     "tokenizer_config.json"]
    check = json.loads((out / "onnx_check.json").read_text())
    assert check["passed"] and check["texts"] == 400 and check["mismatches"] == 0 and check["max_abs_diff"] < 1e-4
    assert check["max_abs_prob_diff"] < 1e-5  # the calibrated probabilities, computed in the graph
    labels = json.loads((run / "textxfer.json").read_text())["labels"]
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(labels))] == labels
    session = _session(out)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    calibration = json.loads((out / "textxfer.json").read_text())["calibration"]
    assert calibration == json.loads((run / "textxfer.json").read_text())["calibration"]
    assert calibration["method"] == "temperature" and calibration["temperature"] != 1.0


def test_onnx_predictions_equal_textxfer_predictions_for_any_batch_shape(exported_full):
    from transformers import AutoTokenizer

    run, out = exported_full
    with open(SAMPLES / "tickets_test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    texts = [r["text"] for r in rows]
    tokenizer = AutoTokenizer.from_pretrained(out)
    session = _session(out)
    clf = load_classifier(run)
    temperature = json.loads((out / "textxfer.json").read_text())["calibration"]["temperature"]
    for batch in (texts[:1], texts[1:3], texts[:97]):  # batch 1 and other sizes than the traced example
        enc = tokenizer(batch, padding=True, truncation=True, max_length=32, return_tensors="np")
        logits, probs = session.run(["logits", "probabilities"],
                                    {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
        assert np.allclose(probs, clf.predict_proba(batch), atol=1e-5)  # calibrated: the temperature is in the graph
        scaled = logits / temperature
        expected = np.exp(scaled - scaled.max(-1, keepdims=True))
        assert np.allclose(probs, expected / expected.sum(-1, keepdims=True), atol=1e-6)
        assert (logits.argmax(-1) == probs.argmax(-1)).all()  # calibration never changes the label
    enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="np")
    logits = session.run(["logits"], {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
    assert [clf.labels[i] for i in logits.argmax(-1)] == [r["predicted_label"] for r in
                                                           csv.DictReader(open(run / "predictions_test.csv", encoding="utf-8"))]


def test_merged_lora_decoder_exports_and_pads_either_side(tmp_path, tiny_lora_run, cli):
    from transformers import AutoTokenizer

    run = tiny_lora_run
    code, _, err = cli("export-onnx", run, tmp_path / "onnx")
    assert code == 2 and "textxfer merge" in err  # adapters must be merged first
    assert cli("merge", run, tmp_path / "merged")[0] == 0
    code, out, err = cli("export-onnx", tmp_path / "merged", tmp_path / "onnx")
    assert code == 0, err
    assert "same predicted label for 400/400 (100.00%)" in out
    session = _session(tmp_path / "onnx")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]  # position ids: in the graph
    texts = ["my card has not arrived yet and I am worried", "exchange rate", "where is my transfer?"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")
    expected = load_classifier(run).predict_proba(texts, calibrated=False)  # the graph's raw `logits` output
    for side in ("left", "right"):
        tokenizer.padding_side = side
        enc = tokenizer(texts, padding=True, return_tensors="np")
        logits = session.run(["logits"], {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})[0]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        assert np.allclose(probs / probs.sum(-1, keepdims=True), expected, atol=1e-5), side


def test_export_errors_are_explained(exported_full, tmp_path, cli):
    run, _ = exported_full
    code, _, err = cli("export-onnx", tmp_path / "nothing", tmp_path / "out")
    assert code == 2 and "not a textxfer run folder" in err
    code, _, err = cli("export-onnx", run, tmp_path / "out", "--check-file", tmp_path / "missing.csv")
    assert code == 2 and "--check-file" in err and "--no-check" in err
    assert not (tmp_path / "out").exists()


def test_int8_export_is_measured_against_the_float_model_and_refused_past_the_tolerance(tmp_path, tiny_full_run, cli):
    code, out, err = cli("export-onnx", tiny_full_run, tmp_path / "int8", "--quantize", "int8")
    assert code == 0, err
    folder = tmp_path / "int8"
    assert "model.float32.onnx" not in {p.name for p in folder.iterdir()}
    check = json.loads((folder / "onnx_check.json").read_text())
    int8 = check["int8"]
    assert int8["passed"] and int8["texts"] == 400 and int8["int8_megabytes"] < int8["float_megabytes"]
    # the reported float accuracy is the run's own test accuracy (same decisions as PyTorch's)
    metrics = json.loads((tiny_full_run / "metrics.json").read_text())
    assert abs(int8["float_accuracy"] - metrics["test"]["accuracy"]) < 1e-9
    assert abs(int8["drop_points"] - 100 * (int8["float_accuracy"] - int8["int8_accuracy"])) < 1e-9
    assert json.loads((folder / "textxfer.json").read_text())["onnx"]["quantization"].startswith("int8")
    # the int8 graph answers with the same outputs as the float one
    session = _session(folder)
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    assert any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul")
               for n in __import__("onnx").load(str(folder / "model.onnx")).graph.node)

    # a tolerance below the measured loss is refused and nothing is written; one at or above it is kept
    strict = max(int8["drop_points"] - 0.5, 0.0) if int8["drop_points"] > 0 else None
    if strict is not None:
        code, _, err = cli("export-onnx", tiny_full_run, tmp_path / "strict", "--quantize", "int8",
                           "--max-accuracy-drop", str(strict))
        assert code == 2 and "loses too much accuracy" in err and not (tmp_path / "strict").exists()
    from textxfer.commands.onnx_quantize import QuantizedCheck

    measured = dict(texts=100, agreement=0.97, float_onnx_seconds=2.0, int8_onnx_seconds=1.0, float_megabytes=4.0,
                    int8_megabytes=1.0)
    assert not QuantizedCheck(float_accuracy=0.90, int8_accuracy=0.88, max_drop=1.0, **measured).passed
    assert QuantizedCheck(float_accuracy=0.90, int8_accuracy=0.895, max_drop=1.0, **measured).passed
    code, _, err = cli("export-onnx", tiny_full_run, tmp_path / "x", "--quantize", "int8", "--no-check")
    assert code == 2 and "needs the check" in err
    code, _, err = cli("export-onnx", tiny_full_run, tmp_path / "x", "--quantize", "int8", "--max-accuracy-drop", "-1")
    assert code == 2 and "--max-accuracy-drop" in err
