"""Push to the Hub: the dry-run folder exactly, its model card's metadata, loading it with stock
transformers / peft (offline), clear errors before any upload, and the upload itself against a fake Hub
served from this test (HF_ENDPOINT) that speaks the endpoints huggingface_hub calls."""
import base64
import csv
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import SAMPLES, write_recipe
from textxfer import load_classifier, load_recipe
from textxfer.errors import TextxferError

TOKEN = "hf_FAKEtokenTHATmustNEVERbeSHOWN0123456789"
DATA = {"train": str(SAMPLES / "tickets_small.csv"), "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32}
COMMON = ["README.md", "calibration.png", "confusion_matrix.png", "learning_curves.png", "metrics.json", "recipe.yaml",
          "risk_coverage.png", "textxfer.json", "tokenizer.json", "tokenizer_config.json", "validation_scores.json"]
FULL_FILES = sorted(COMMON + ["config.json", "model.safetensors"])
ADAPTER_FILES = sorted(COMMON + ["adapter_config.json", "adapter_model.safetensors", "config.json"])


@pytest.fixture
def full_run(tiny_full_run):
    return tiny_full_run


@pytest.fixture
def lora_run(tiny_lora_run):
    return tiny_lora_run


def card_header(folder: Path) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def sample_texts(n=None) -> list[str]:
    with open(DATA["test"], encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows[:n]]


def expected_model_index(run: Path, name: str) -> list:
    test = json.loads((run / "metrics.json").read_text())["test"]
    return [{"name": name, "results": [{
        "task": {"type": "text-classification", "name": "Text Classification"},
        "dataset": {"name": "tickets_test.csv", "type": "tickets_test", "split": "test"},
        "metrics": [{"type": "accuracy", "value": round(test["accuracy"], 4), "name": "Test Accuracy"},
                    {"type": "f1", "value": round(test["macro_f1"], 4), "name": "Test Macro F1",
                     "args": {"average": "macro"}}]}]}]


def test_dry_run_of_a_full_run_writes_exactly_the_upload_and_loads_with_stock_transformers(full_run, tmp_path, cli):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "out"
    code, stdout, err = cli("push", full_run, "--repo-id", "acme/ticket-router", "--dry-run", out,
                            "--base-model", "textxfer-tests/tiny-bert", "--license", "apache-2.0")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == FULL_FILES  # predictions_test.csv (test texts) stays behind
    assert f"the {len(FULL_FILES)} files" in stdout and "not uploaded: audit.json, predictions_test.csv" in stdout
    for name in FULL_FILES:
        if name != "README.md":
            assert (out / name).read_bytes() == (full_run / name).read_bytes(), name

    assert card_header(out) == {
        "base_model": "textxfer-tests/tiny-bert", "library_name": "transformers", "license": "apache-2.0",
        "metrics": ["accuracy", "f1"], "pipeline_tag": "text-classification",
        "tags": ["textxfer", "text-classification", "full-fine-tuning"],
        "model-index": expected_model_index(full_run, "ticket-router"),
    }
    card = (out / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((full_run / "metrics.json").read_text())["test"]
    labels = json.loads((full_run / "textxfer.json").read_text())["labels"]
    for i, label in enumerate(labels):  # per-class F1 and the label distribution (5 train, 1 validation, 40 test)
        row = metrics["per_class"][label]
        assert f"| {i} | `{label}` | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1-score']:.4f} | 40 |" in card
        assert f"| `{label}` | 5 | 1 | 40 |" in card
    assert "| train | `tickets_small.csv` less the validation rows | 50 |" in card and "| test | `tickets_test.csv` | 400 |" in card
    assert "![Confusion matrix on the test set (rows: true label)](confusion_matrix.png)" in card
    assert "| `train.lr` | `0.005` |" in card and "| `method` | `full` |" in card
    assert "textxfer train recipe.yaml" in card and f"--repo-id acme/ticket-router --base-model textxfer-tests/tiny-bert" in card
    assert 'AutoModelForSequenceClassification.from_pretrained(repo)' in card
    written = "".join((out / n).read_text(encoding="utf-8") for n in ("README.md", "metrics.json", "recipe.yaml", "textxfer.json"))
    assert not any(text in written for text in sample_texts(50)), "no test text leaves the run folder"

    # Stock transformers from the folder: same label names, same predictions as textxfer's own run.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert [model.config.id2label[i] for i in range(len(labels))] == labels
    texts = sample_texts()
    with torch.no_grad():
        probs = model(**tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits.softmax(-1)
    with open(full_run / "predictions_test.csv", encoding="utf-8", newline="") as fh:
        saved = [r["predicted_label"] for r in csv.DictReader(fh)]
    assert [model.config.id2label[int(i)] for i in probs.argmax(-1)] == saved
    assert np.allclose(probs.numpy(), load_classifier(full_run).predict_proba(texts, calibrated=False), atol=1e-5)


def _fake_hub_cache(tmp_path: Path, repo_id: str, folder: str) -> Path:
    """A Hugging Face cache holding `folder` as the snapshot of `repo_id`: what a machine that once
    downloaded the base model has, so stock loading by Hub id works offline."""
    cache = tmp_path / "hf-cache"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    return cache


def test_dry_run_of_an_adapter_run_points_at_the_base_hub_id_and_loads_with_stock_peft(lora_run, tiny_llama, tmp_path, cli,
                                                                                     monkeypatch):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoConfig, AutoTokenizer

    out = tmp_path / "out"
    code, _, err = cli("push", lora_run, "--repo-id", "acme/ticket-router-lora", "--dry-run", out,
                       "--base-model", "textxfer-tests/tiny-llama")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ADAPTER_FILES
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "textxfer-tests/tiny-llama"  # not the local labelled base
    assert adapter_config["task_type"] == "SEQ_CLS" and "score" in adapter_config["modules_to_save"]
    assert (out / "adapter_model.safetensors").read_bytes() == (lora_run / "adapter_model.safetensors").read_bytes()
    assert card_header(out) == {
        "base_model": "textxfer-tests/tiny-llama", "library_name": "peft", "license": "other",
        "metrics": ["accuracy", "f1"], "pipeline_tag": "text-classification",
        "tags": ["textxfer", "text-classification", "peft", "lora"],
        "model-index": expected_model_index(lora_run, "ticket-router-lora"),
    }
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| `model.lora.r` | `4` |" in card and "AutoPeftModelForSequenceClassification.from_pretrained(" in card

    # The card's snippet, run on the folder; the base model comes by its Hub id from a (fake, offline) cache.
    cache = _fake_hub_cache(tmp_path, "textxfer-tests/tiny-llama", tiny_llama)
    config = AutoConfig.from_pretrained(out)
    model = AutoPeftModelForSequenceClassification.from_pretrained(
        out, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,
        pad_token_id=config.pad_token_id, cache_dir=str(cache)).eval()
    clf = load_classifier(lora_run)
    assert [model.config.id2label[i] for i in range(len(clf.labels))] == clf.labels
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = sample_texts(24)
    with torch.no_grad():
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        probs = model(**inputs).logits.softmax(-1).numpy()
    assert np.allclose(probs, clf.predict_proba(texts, calibrated=False), atol=1e-5)  # stock: no temperature
    assert [clf.labels[i] for i in probs.argmax(-1)] == clf.predict(texts)

    # textxfer itself reloads the uploaded folder too (the base by Hub id from the cache).
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    again = load_classifier(out)
    assert again.labels == clf.labels
    assert np.allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)


def test_a_merged_lora_run_is_pushed_as_a_standalone_model_with_the_run_plots(lora_run, tmp_path, cli):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    assert cli("merge", lora_run, tmp_path / "merged")[0] == 0
    out = tmp_path / "out"
    code, _, err = cli("push", tmp_path / "merged", "--repo-id", "acme/merged", "--dry-run", out,
                       "--base-model", "textxfer-tests/tiny-llama")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == FULL_FILES  # plots come from the run it was merged from
    header = card_header(out)
    assert header["library_name"] == "transformers" and header["base_model"] == "textxfer-tests/tiny-llama"
    assert header["tags"] == ["textxfer", "text-classification", "lora", "merged-lora"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    clf = load_classifier(lora_run)
    texts = sample_texts(24)
    with torch.no_grad():
        probs = model(**tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits.softmax(-1)
    assert np.allclose(probs.numpy(), clf.predict_proba(texts, calibrated=False), atol=1e-5)
    assert [model.config.id2label[int(i)] for i in probs.argmax(-1)] == clf.predict(texts)


def test_adapters_on_a_local_base_need_its_hub_id(lora_run, tmp_path, cli):
    code, _, err = cli("push", lora_run, "--repo-id", "acme/x", "--dry-run", tmp_path / "out")
    assert code == 2 and "--base-model OWNER/NAME" in err and "local model folder" in err
    assert not (tmp_path / "out").exists()


def test_feature_extraction_runs_are_refused(full_run, tmp_path, cli):
    fake = tmp_path / "fe"
    shutil.copytree(full_run, fake)
    info = json.loads((fake / "textxfer.json").read_text())
    (fake / "textxfer.json").write_text(json.dumps({**info, "method": "feature_extraction"}))
    code, _, err = cli("push", fake, "--repo-id", "acme/x", "--dry-run", tmp_path / "out")
    assert code == 2 and "feature_extraction" in err and "random head" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("repo_id,fragment", [("ticket-router", "OWNER/NAME"), ("acme/a/b", "OWNER/NAME"),
                                              ("acme/bad--name", "`--`"), ("acme/-x", "may not start")])
def test_invalid_repo_ids_fail_before_anything_is_written(full_run, tmp_path, cli, repo_id, fragment):
    code, _, err = cli("push", full_run, "--repo-id", repo_id, "--dry-run", tmp_path / "out")
    assert code == 2 and fragment in err and "not a valid Hugging Face Hub model id" in err
    assert not (tmp_path / "out").exists()


def test_dry_run_refuses_a_folder_with_other_files(full_run, tmp_path, cli):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, _, err = cli("push", full_run, "--repo-id", "acme/x", "--dry-run", tmp_path / "out")
    assert code == 2 and "not empty" in err and (tmp_path / "out" / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------- the upload, against a fake Hub


class FakeHub(BaseHTTPRequestHandler):
    """The endpoints huggingface_hub 2.x calls for whoami, create_repo, create_branch and upload_folder
    (which first has the Hub validate the README's metadata).

    Every file is declared `regular` in the preupload answer, so its content comes inline (base64) in the
    commit's ndjson payload, where the test can read it (the real Hub answers `lfs` for weights, which go to
    Xet storage instead; that transfer is huggingface_hub's own, and not exercised here)."""

    state: dict = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.state["requests"].append((self.command, self.path.split("?")[0], self.headers.get("Authorization")))
        return body

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.state['valid_token']}":
            self._reply(401, {"error": "Invalid credentials in Authorization header"})
            return False
        return True

    def do_GET(self):
        self._record()
        if not self._authorized():
            return
        if self.path == "/api/whoami-v2":
            return self._reply(200, {"type": "user", "name": "tester", "orgs": [{"name": "acme", "type": "org"}]})
        self._reply(404, {"error": f"unknown endpoint {self.path}"})

    def do_POST(self):
        body = self._record()
        if not self._authorized():
            return
        path = self.path.split("?")[0]
        endpoint = f"http://{self.headers['Host']}"
        if path == "/api/validate-yaml":  # the Hub parses the card's YAML header; so does this fake
            header = json.loads(body)["content"].split("---\n")[1]
            self.state["validated"].append(yaml.safe_load(header))
            return self._reply(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            payload = json.loads(body)
            self.state["created"].append(payload)
            return self._reply(200, {"url": f"{endpoint}/{payload['organization']}/{payload['name']}"})
        parts = path.split("/")  # /api/models/OWNER/NAME/{preupload,commit,branch}/REV
        if len(parts) == 7 and parts[:3] == ["", "api", "models"]:
            repo, action, revision = f"{parts[3]}/{parts[4]}", parts[5], parts[6]
            if action == "branch":
                self.state["branches"].append((repo, revision))
                return self._reply(200, {})
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                    "oid": None} for f in files]})
            if action == "commit":
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                files = {v["value"]["path"]: base64.b64decode(v["value"]["content"]) for v in lines if v["key"] == "file"}
                self.state["commits"].append({"repo": repo, "revision": revision, "header": lines[0]["value"],
                                              "files": files})
                return self._reply(200, {"commitUrl": f"{endpoint}/{repo}/commit/{'1' * 40}", "commitOid": "1" * 40})
        self._reply(404, {"error": f"unknown endpoint {path}"})


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A fake Hub on localhost; HF_ENDPOINT points at it, HF_TOKEN holds the fake token, offline mode off."""
    from huggingface_hub import constants

    FakeHub.state = {"requests": [], "created": [], "branches": [], "commits": [], "validated": [], "valid_token": TOKEN}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield FakeHub.state
    server.shutdown()
    server.server_close()


def _no_token_anywhere(*folders: Path, texts=()):
    for text in texts:
        assert TOKEN not in text
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


def test_push_uploads_exactly_the_dry_run_files(full_run, fake_hub, tmp_path, cli):
    dry = tmp_path / "dry"
    code, _, err = cli("push", full_run, "--repo-id", "acme/ticket-router", "--dry-run", dry,
                       "--base-model", "textxfer-tests/tiny-bert")
    assert code == 0, err
    assert fake_hub["requests"] == [], "a dry run sends nothing"

    code, out, err = cli("push", full_run, "--repo-id", "acme/ticket-router", "--private", "--revision", "experiments",
                         "--base-model", "textxfer-tests/tiny-bert")
    assert code == 0, err
    calls = [(method, path) for method, path, _ in fake_hub["requests"]]
    assert calls == [("GET", "/api/whoami-v2"), ("POST", "/api/repos/create"),
                     ("POST", "/api/models/acme/ticket-router/branch/experiments"), ("POST", "/api/validate-yaml"),
                     ("POST", "/api/models/acme/ticket-router/preupload/experiments"),
                     ("POST", "/api/models/acme/ticket-router/commit/experiments")]
    assert {auth for _, _, auth in fake_hub["requests"]} == {f"Bearer {TOKEN}"}
    assert fake_hub["created"] == [{"name": "ticket-router", "organization": "acme", "visibility": "private", "type": "model"}]
    assert fake_hub["validated"] == [card_header(dry)]
    [commit] = fake_hub["commits"]
    assert commit["header"]["summary"] == f"textxfer: upload {full_run.name}"
    assert sorted(commit["files"]) == FULL_FILES
    for name, content in commit["files"].items():
        assert content == (dry / name).read_bytes(), f"{name} differs from the dry run"
    assert f"pushed {len(FULL_FILES)} files" in out and "/acme/ticket-router" in out and "revision experiments" in out
    _no_token_anywhere(full_run, dry, texts=[out, err, *(c.decode("latin-1") for c in commit["files"].values())])


def test_recipe_push_to_hub_pushes_after_training(tiny_bert, fake_hub, tmp_path, cli):
    path = write_recipe(tmp_path, data=DATA, model={"name": tiny_bert, "method": "full"},
                        train={"epochs": 1, "batch_size": 16}, output_dir=str(tmp_path / "run"),
                        push_to_hub={"repo_id": "tester/tickets", "base_model": "textxfer-tests/tiny-bert"})
    code, out, err = cli("train", path)
    assert code == 0, err
    [commit] = fake_hub["commits"]
    assert commit["repo"] == "tester/tickets" and commit["revision"] == "main"
    assert sorted(commit["files"]) == FULL_FILES
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["push_to_hub"]["repo_id"] == "tester/tickets"
    assert fake_hub["created"][0]["visibility"] == "public"
    _no_token_anywhere(tmp_path / "run", texts=[out, err])


def test_recipe_push_without_a_token_fails_before_training(tiny_bert, fake_hub, monkeypatch, tmp_path, cli):
    monkeypatch.delenv("HF_TOKEN")
    path = write_recipe(tmp_path, data=DATA, model={"name": tiny_bert, "method": "full"}, train={"epochs": 1},
                        output_dir=str(tmp_path / "run"), push_to_hub={"repo_id": "tester/tickets"})
    code, _, err = cli("train", path)
    assert code == 2 and "no Hugging Face token" in err and "HF_TOKEN" in err
    assert not (tmp_path / "run").exists() and fake_hub["requests"] == []


def test_push_without_a_token_or_offline_is_explained(full_run, fake_hub, monkeypatch, cli):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    code, _, err = cli("push", full_run, "--repo-id", "acme/x")
    assert code == 2 and "no Hugging Face token found" in err and "hf auth login" in err
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, _, err = cli("push", full_run, "--repo-id", "acme/x")
    assert code == 2 and "offline mode" in err and "--dry-run" in err
    assert fake_hub["requests"] == []


def test_push_with_a_rejected_token_uploads_nothing_and_never_shows_it(full_run, fake_hub, cli):
    fake_hub["valid_token"] = "hf_another_token"
    code, out, err = cli("push", full_run, "--repo-id", "acme/x")
    assert code == 2 and "HTTP 401" in err and "token is invalid" in err
    assert [path for _, path, _ in fake_hub["requests"]] == ["/api/whoami-v2"]
    _no_token_anywhere(full_run, texts=[out, err])


def test_push_to_an_owner_the_token_cannot_write_to_stops_before_creating(full_run, fake_hub, cli):
    code, _, err = cli("push", full_run, "--repo-id", "someone-else/x")
    assert code == 2 and "belongs to `tester`" in err and "acme" in err
    assert [path for _, path, _ in fake_hub["requests"]] == ["/api/whoami-v2"] and not fake_hub["created"]


def test_push_to_an_unreachable_hub_is_explained(full_run, fake_hub, monkeypatch, cli):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    code, out, err = cli("push", full_run, "--repo-id", "acme/x")
    assert code == 2 and "cannot be reached" in err and f"127.0.0.1:{port}" in err and "--dry-run" in err
    assert "Traceback" not in err
    _no_token_anywhere(texts=[out, err])


def test_push_to_hub_recipe_section_is_validated():
    recipe = load_recipe(None, ["data.train=a.csv", "push_to_hub.repo_id=acme/x", "push_to_hub.private=true"])
    assert recipe.push_to_hub.repo_id == "acme/x" and recipe.push_to_hub.private and recipe.push_to_hub.revision == "main"
    assert "push_to_hub" not in load_recipe(None, ["data.train=a.csv"]).to_dict()
    with pytest.raises(TextxferError, match="has no `repo_id`"):
        load_recipe(None, ["data.train=a.csv", "push_to_hub.private=true"])
    with pytest.raises(TextxferError, match="not a valid Hugging Face Hub model id"):
        load_recipe(None, ["data.train=a.csv", "push_to_hub.repo_id=no-owner"])
    with pytest.raises(TextxferError, match="feature_extraction"):
        load_recipe(None, ["data.train=a.csv", "push_to_hub.repo_id=acme/x", "model.method=feature_extraction"])
    with pytest.raises(TextxferError, match="Did you mean `push_to_hub.repo_id`"):
        load_recipe(None, ["data.train=a.csv", "push_to_hub.repoid=acme/x"])
