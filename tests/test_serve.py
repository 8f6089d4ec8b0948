"""`textxfer serve`: a real uvicorn process per run (single-label, multi-label, ONNX export) and an httpx client.

Served predictions equal `textxfer predict`'s on the same texts (labels exact, scores within 1e-5), concurrent
requests each get their own answers in order, bad requests get 4xx JSON without a traceback. The batcher is
also tested on its own, with a model function that blocks, so which requests share a batch is certain."""
from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, copy_run, train_tiny

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TEST_CSV = SAMPLES / "tickets_test.csv"
MULTI = {"train": str(SAMPLES / "tickets_multilabel_train.csv"), "test": str(SAMPLES / "tickets_multilabel_test.csv"),
         "label_column": "labels", "multi_label": True, "max_length": 32}


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _predict_csv(run: Path, input_path: Path, output: Path, *flags: str) -> list[dict]:
    """What `textxfer predict` writes for `input_path`."""
    from textxfer.commands.cli import main

    assert main(["predict", str(run), str(input_path), "-o", str(output), *flags]) == 0
    return _rows(output)


class Server:
    """`textxfer serve RUN --port 0 ...` in a subprocess; `url` once it listens and answers /health."""

    def __init__(self, run: Path, *flags: str):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen([sys.executable, "-m", "textxfer", "serve", str(run), "--port", "0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def _wait(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m.group(1) for line in self.lines for m in [re.search(r"at (http://[\d.]+:\d+) ", line)] if m]
            if found:
                try:
                    if httpx.get(found[0] + "/health", timeout=5).status_code == 200:
                        return found[0]
                except httpx.TransportError:
                    pass
            if self.proc.poll() is not None:
                raise AssertionError(f"textxfer serve exited with {self.proc.returncode}:\n{''.join(self.lines)}")
            time.sleep(0.1)
        raise AssertionError(f"textxfer serve did not come up:\n{''.join(self.lines)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def post(self, payload, **kwargs) -> httpx.Response:
        return httpx.post(self.url + "/predict", json=payload, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def full_server(tiny_full_run):
    server = Server(tiny_full_run, "--max-texts", "100", "--max-chars", "500")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory, tiny_bert) -> Path:
    _, run = train_tiny(tmp_path_factory.mktemp("serve-multi"), tiny_bert, data=MULTI, epochs=2)
    return run


@pytest.fixture(scope="module")
def multi_server(multi_label_run):
    server = Server(multi_label_run)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory, tiny_full_run) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from textxfer.commands.cli import main

    out = tmp_path_factory.mktemp("serve-onnx") / "onnx"
    assert main(["export-onnx", str(tiny_full_run), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def expected(tiny_full_run, tmp_path_factory) -> list[dict]:
    return _predict_csv(tiny_full_run, TEST_CSV, tmp_path_factory.mktemp("serve-expected") / "p.csv")


def _assert_same(served: list[dict], rows: list[dict]) -> None:
    assert len(served) == len(rows)
    assert [p["label"] for p in served] == [r["predicted_label"] for r in rows]
    assert np.allclose([p["score"] for p in served], [float(r["score"]) for r in rows], atol=1e-5)


def _predict_all(server: Server, texts: list[str], per_request: int = 100) -> list[dict]:
    out = []
    for start in range(0, len(texts), per_request):
        response = server.post({"texts": texts[start:start + per_request]})
        assert response.status_code == 200, response.text
        out += response.json()["predictions"]
    return out


def test_served_predictions_equal_textxfer_predict(full_server, expected):
    served = _predict_all(full_server, [r["text"] for r in expected])
    _assert_same(served, expected)
    assert all(p["abstained"] is False and p["suggested_label"] == p["label"] for p in served)
    assert "probabilities" not in served[0]


def test_probabilities_on_request_are_calibrated_and_sum_to_one(full_server, tiny_full_run, expected):
    from textxfer import load_classifier

    texts = [r["text"] for r in expected[:20]]
    served = full_server.post({"texts": texts, "return_probabilities": True}).json()["predictions"]
    clf = load_classifier(tiny_full_run)
    probs = clf.predict_proba(texts)
    for p, row in zip(served, probs):
        assert list(p["probabilities"]) == clf.labels
        assert np.allclose(list(p["probabilities"].values()), row, atol=1e-5)
        assert p["probabilities"][p["label"]] == p["score"]


def test_request_min_confidence_abstains_as_predict_does(full_server, tiny_full_run, expected, tmp_path):
    texts = [r["text"] for r in expected]
    threshold = float(np.median([float(r["score"]) for r in expected]))
    rows = _predict_csv(tiny_full_run, TEST_CSV, tmp_path / "p.csv", "--min-confidence", str(threshold))
    served = []
    for start in range(0, len(texts), 100):
        body = full_server.post({"texts": texts[start:start + 100], "min_confidence": threshold}).json()
        assert body["min_confidence"] == threshold
        served += body["predictions"]
    assert [p["abstained"] for p in served] == [r["abstained"] == "true" for r in rows]
    assert 0 < sum(p["abstained"] for p in served) < len(served)
    assert [p["label"] or "" for p in served] == [r["predicted_label"] for r in rows]  # null when abstaining
    assert [p["suggested_label"] for p in served] == [r["suggested_label"] for r in rows]


def test_concurrent_requests_each_get_their_own_answers_in_order(full_server, expected):
    slices = [expected[i * 23:i * 23 + 1 + i % 7] for i in range(16)]  # 16 requests of 1 to 7 texts

    def ask(rows):
        return full_server.post({"texts": [r["text"] for r in rows]}).json()["predictions"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, slices * 2))
    for served, rows in zip(answers, slices * 2):
        _assert_same(served, rows)
    stats = httpx.get(full_server.url + "/health").json()["batching"]
    assert stats["requests"] >= 32 and stats["batches"] <= stats["requests"]


@pytest.mark.parametrize("payload, status, says", [
    ({"texts": []}, 422, "empty"),
    ({"texts": ["a"] * 101}, 413, "at most 100"),
    ({"texts": ["ok", "x" * 501]}, 413, "texts[1]"),
    ({"texts": "my card was charged twice"}, 422, "texts"),
    ({"texts": [1, 2]}, 422, "texts.0"),
    ({"text": ["a"]}, 422, "texts"),
    ({"texts": ["a"], "min_confidence": 1.5}, 422, "min_confidence"),
    ({"texts": ["a"], "return_probabilities": "yes"}, 422, "return_probabilities"),
    ({"texts": ["a"], "pairs": ["b"]}, 422, "not pairs"),
])
def test_bad_requests_get_json_4xx_without_a_traceback(full_server, payload, status, says):
    response = full_server.post(payload)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and says in body["error"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert "x" * 100 not in response.text  # the input is not echoed back


def test_malformed_json_unknown_paths_and_oversized_bodies(full_server):
    response = httpx.post(full_server.url + "/predict", content=b"{not json", timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422 and "error" in response.json()
    response = httpx.get(full_server.url + "/nothing-here")
    assert response.status_code == 404 and response.json()["status"] == 404
    assert httpx.get(full_server.url + "/predict").status_code == 405
    big = json.dumps({"texts": ["x" * 700] * 2000}).encode()  # past the body cap (1.3 MB for these limits)
    response = httpx.post(full_server.url + "/predict", content=big, timeout=60, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "body" in response.json()["error"]


def test_metadata_says_what_is_served(full_server, tiny_full_run):
    import textxfer

    info = json.loads((tiny_full_run / "textxfer.json").read_text())
    metrics = json.loads((tiny_full_run / "metrics.json").read_text())
    about = httpx.get(full_server.url + "/metadata").json()
    assert about["labels"] == info["labels"] and about["multi_label"] is False
    assert about["method"] == "full" and about["base_model"] == info["base_model"] and about["backend"] == "torch"
    assert about["textxfer_version"] == textxfer.__version__
    assert about["test_metrics"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert about["limits"]["max_texts"] == 100 and about["limits"]["max_chars"] == 500
    assert about["calibration"] == "temperature"
    health = httpx.get(full_server.url + "/health").json()
    assert health["status"] == "ok"


def test_multi_label_runs_serve_label_sets_with_their_thresholds(multi_server, multi_label_run, tmp_path):
    rows = _predict_csv(multi_label_run, SAMPLES / "tickets_multilabel_test.csv", tmp_path / "p.csv")
    info = json.loads((multi_label_run / "textxfer.json").read_text())
    texts = [r["text"] for r in rows]
    served = []
    for start in range(0, len(texts), 200):
        response = multi_server.post({"texts": texts[start:start + 200], "return_probabilities": True})
        assert response.status_code == 200, response.text
        served += response.json()["predictions"]
    separator = info["label_separator"]
    assert [separator.join(p["labels"]) for p in served] == [r["predicted_labels"] for r in rows]
    for p, r in zip(served, rows):
        assert np.allclose([p["probabilities"][l] for l in info["labels"]],
                           [float(r[f"score_{l}"]) for l in info["labels"]], atol=1e-5)
        assert p["scores"] == {l: p["probabilities"][l] for l in p["labels"]}
        assert all(p["scores"][l] >= info["decision"]["thresholds"][l] for l in p["labels"])
    assert any(len(p["labels"]) > 1 for p in served)
    response = multi_server.post({"texts": ["a"], "min_confidence": 0.5})
    assert response.status_code == 422 and "single-label" in response.json()["error"]
    assert httpx.get(multi_server.url + "/metadata").json()["multi_label"] is True


def test_an_onnx_export_serves_what_textxfer_predict_gives(onnx_export, expected):
    server = Server(onnx_export)
    try:
        served = _predict_all(server, [r["text"] for r in expected], per_request=200)
        _assert_same(served, expected)
        about = httpx.get(server.url + "/metadata").json()
        assert about["backend"] == "onnx" and about["test_metrics"] is None and about["labels"]
    finally:
        server.stop()


def test_the_wrong_backend_for_a_folder_is_one_clear_error(onnx_export, tiny_full_run, cli):
    code, _, err = cli("serve", tiny_full_run, "--backend", "onnx", "--port", "0")
    assert code == 2 and "not an ONNX export" in err and "Traceback" not in err
    code, _, err = cli("serve", onnx_export, "--backend", "torch", "--port", "0")
    assert code == 2 and "--backend onnx" in err


def test_a_port_in_use_and_bad_settings_are_clear_errors(tiny_full_run, cli):
    import socket

    from textxfer.errors import TextxferError
    from textxfer.serving.server import bind

    sock = bind("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP  # else asyncio sets no TCP_NODELAY: 40 ms of delayed ACK a request
    sock.close()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(TextxferError, match="in use"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    code, _, err = cli("serve", tiny_full_run, "--max-batch", "0")
    assert code == 2 and "--max-batch" in err


def test_missing_fastapi_says_how_to_install_it(monkeypatch, tiny_full_run):
    from textxfer.errors import TextxferError
    from textxfer.serving.server import serve

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(TextxferError, match=r"pip install 'textxfer\[serve\]'"):
        serve(tiny_full_run)


def test_pairs_and_a_runs_own_min_confidence_in_process(tmp_path, tiny_bert, tiny_full_run):
    """The app without a subprocess (Starlette's test client): a text-pair run, and a run whose
    decision carries a minimum confidence (as `train.min_confidence` records it)."""
    from fastapi.testclient import TestClient

    from textxfer.serving.app import create_app
    from textxfer.serving.backends import load_backend

    rows = _rows(SAMPLES / "tickets_pairs_train.csv")
    for name, part in (("train.csv", rows[:240]), ("test.csv", rows[240:300])):
        with open(tmp_path / name, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, ["ticket", "queue", "label"])
            writer.writeheader()
            writer.writerows(part)
    data = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv"), "text_column": "ticket",
            "text_pair_column": "queue", "label_column": "label", "max_length": 48}
    _, run = train_tiny(tmp_path / "pairs", tiny_bert, data=data, epochs=1)
    expected = _predict_csv(run, tmp_path / "test.csv", tmp_path / "p.csv")
    with TestClient(create_app(*load_backend(run))) as client:
        body = {"texts": [r["ticket"] for r in expected], "pairs": [r["queue"] for r in expected]}
        _assert_same(client.post("/predict", json=body).json()["predictions"], expected)
        response = client.post("/predict", json={"texts": ["a"]})
        assert response.status_code == 422 and "pairs" in response.json()["error"]
        response = client.post("/predict", json={"texts": ["a", "b"], "pairs": ["c"]})
        assert response.status_code == 422 and "one pair text per text" in response.json()["error"]

    run = copy_run(tiny_full_run, tmp_path, "abstaining")
    info = json.loads((run / "textxfer.json").read_text())
    info["decision"]["min_confidence"] = 0.999
    (run / "textxfer.json").write_text(json.dumps(info))
    with TestClient(create_app(*load_backend(run))) as client:
        body = client.post("/predict", json={"texts": ["my card was charged twice"]}).json()
        assert body["min_confidence"] == 0.999 and body["predictions"][0]["abstained"] is True
        assert body["predictions"][0]["label"] is None and body["predictions"][0]["suggested_label"]
        body = client.post("/predict", json={"texts": ["my card was charged twice"], "min_confidence": 0}).json()
        assert body["predictions"][0]["abstained"] is False and body["predictions"][0]["label"]



def test_a_feature_extraction_run_and_an_ensemble_serve_what_predict_gives(tmp_path, tiny_full_run, tiny_fe_run):
    from fastapi.testclient import TestClient

    from textxfer.commands.cli import main
    from textxfer.serving.app import Limits, create_app
    from textxfer.serving.backends import load_backend

    ensemble = tmp_path / "ensemble"
    assert main(["ensemble", str(tiny_full_run), str(tiny_fe_run), "--output", str(ensemble)]) == 0
    for run in (tiny_fe_run, ensemble):
        expected = _predict_csv(run, TEST_CSV, tmp_path / f"{run.name}.csv")
        with TestClient(create_app(*load_backend(run), Limits(max_texts=400))) as client:
            response = client.post("/predict", json={"texts": [r["text"] for r in expected]})
            _assert_same(response.json()["predictions"], expected)
            assert client.get("/metadata").json()["method"] == ("ensemble" if run == ensemble else "feature_extraction")

# The batcher on its own: a model function that blocks until told, so the batches are known.

def _batcher_run(max_batch: int, max_wait_ms: float, sizes: list[int]):
    from textxfer.serving.batcher import Batcher

    release, seen = threading.Event(), []

    def model(texts, pairs):
        seen.append(list(texts))
        release.wait(30)
        return np.array([[float(t.split(":")[0]), float(t.split(":")[1])] for t in texts])

    async def main():
        batcher = Batcher(model, max_batch, max_wait_ms)
        first = asyncio.ensure_future(batcher.predict(["0:0"]))
        while not seen:  # the first batch is running (and blocked)
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batcher.predict([f"{r}:{k}" for k in range(n)])) for r, n in enumerate(sizes, 1)]
        await asyncio.sleep(0.05)  # every request is queued
        release.set()
        results = await asyncio.gather(first, *rest)
        batcher.close()
        return results

    return asyncio.run(main()), seen


def test_requests_queued_while_the_model_runs_share_one_batch_and_get_their_own_rows():
    results, seen = _batcher_run(max_batch=64, max_wait_ms=0, sizes=[3, 1, 4, 1, 5])
    assert [len(b) for b in seen] == [1, 14]  # the five waiting requests ran as one batch
    for r, (n, result) in enumerate(zip([3, 1, 4, 1, 5], results[1:]), 1):
        assert result.tolist() == [[r, k] for k in range(n)]


def test_a_batch_holds_at_most_max_batch_texts_unless_one_request_is_larger():
    results, seen = _batcher_run(max_batch=6, max_wait_ms=0, sizes=[3, 2, 4, 9, 1])
    assert [len(b) for b in seen] == [1, 5, 4, 9, 1]
    assert results[4].tolist() == [[4, k] for k in range(9)]


def test_a_lone_request_never_waits_for_company():
    from textxfer.serving.batcher import Batcher

    async def main():
        batcher = Batcher(lambda texts, pairs: np.zeros((len(texts), 2)), 64, max_wait_ms=60_000)
        try:
            for _ in range(3):  # with a minute's wait for more requests, each of these would hang
                await asyncio.wait_for(batcher.predict(["alone"]), 20)
        finally:
            batcher.close()

    asyncio.run(main())


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on():
    from textxfer.serving.batcher import Batcher

    def model(texts, pairs):
        if "bad" in texts:
            raise ValueError("broken input")
        return np.ones((len(texts), 1))

    async def main():
        batcher = Batcher(model, 64, 0)
        with pytest.raises(ValueError, match="broken input"):
            await batcher.predict(["bad"])
        result = await batcher.predict(["good"])
        batcher.close()
        return result

    assert asyncio.run(main()).tolist() == [[1.0]]


def test_length_batches_cover_every_row_once_and_keep_short_texts_off_long_padding():
    from textxfer.serving.backends import length_batches

    lengths = [12, 80, 9, 11, 78, 10, 13, 79] * 4
    batches = length_batches(lengths, max_batch=64, pass_cost=48)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [max(lengths[i] for i in b) for b in batches] == [13, 80]  # two passes: the short ones, the long ones
    assert all(len(b) <= 5 for b in length_batches(lengths, max_batch=5))
    assert length_batches([20] * 10, max_batch=64) == [list(range(10))]  # equal lengths: one pass
