"""Shared fixtures: tiny random BERT/DistilBERT models saved to disk, sample data, a CLI runner."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The dequantized SmolLM2 and labelled adapter bases go to a cache outside the user's home.
os.environ.setdefault("TEXTXFER_CACHE", os.path.join(tempfile.gettempdir(), "textxfer-test-cache"))

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
# The real support tickets, small: 60 training rows (10 intents), the 400-row test file.
TICKETS = {"train": str(SAMPLES / "tickets_small.csv"), "test": str(SAMPLES / "tickets_test.csv"), "max_length": 32}


@pytest.fixture(autouse=True)
def textxfer_messages():
    """textxfer's messages as the command line shows them (stdout/stderr, `textxfer: ...`), in every test,
    whatever ran before: a library call logs, and only the CLI's handlers print. Tests read them with
    capsys (or caplog)."""
    from textxfer.log import cli_handlers

    cli_handlers()
    yield


def _save_tiny(folder: Path, config, tokenizer_cls) -> str:
    from transformers import AutoModel

    from textxfer.models.embedded import resolve_model_path

    import torch

    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer_cls.from_pretrained(resolve_model_path("minilm-l6")).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, hidden-32 random BERT with the real MiniLM (BERT uncased) vocabulary."""
    from transformers import BertConfig, BertTokenizer

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), config, BertTokenizer)


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> str:
    """A 2-layer, dim-32 random DistilBERT (no token_type_ids) with the same vocabulary."""
    from transformers import DistilBertConfig, DistilBertTokenizer

    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=128)
    return _save_tiny(tmp_path_factory.mktemp("tiny-distilbert"), config, DistilBertTokenizer)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """A 2-layer, hidden-64 random Llama (grouped-query attention, tied embeddings) with the MiniLM
    vocabulary; its tokenizer is told to pad on the left, as decoder tokenizers often do.

    Every linear layer's input is a multiple of 64 and its output of 32: bitsandbytes' 4-bit CPU kernels
    for AVX-512 BF16 machines repack weights in such blocks (smaller layers fail there, see
    `textxfer.models.adapters.check_4bit_layers`)."""
    from transformers import BertTokenizer, LlamaConfig

    config = LlamaConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=128,
                         tie_word_embeddings=True, pad_token_id=0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    _save_tiny(folder, config, BertTokenizer)
    return str(folder)


def tiny_recipe(folder: Path, model: str, method: str = "full", data: dict | None = None,
                output_dir: str | Path | None = None, model_cfg: dict | None = None, **train_cfg) -> Path:
    """A recipe training `model` briefly on the small tickets sample (`data` replaces keys of it, None
    removes one); the run goes to `folder/run`."""
    settings = {"epochs": 4, "lr": 1e-3, "batch_size": 8, "seed": 3, **train_cfg}
    data = {k: v for k, v in {**TICKETS, **(data or {})}.items() if v is not None}  # None: leave the key out
    return write_recipe(folder, data=data,
                        model={"name": model, "method": method, **(model_cfg or {})},
                        train=settings, output_dir=str(output_dir or folder / "run"))


def train_tiny(folder: Path, model: str, method: str = "full", **kwargs) -> tuple[dict, Path]:
    """Train `tiny_recipe(folder, model, method, **kwargs)`; returns (metrics, run folder)."""
    from textxfer import load_recipe, train

    recipe = load_recipe(tiny_recipe(folder, model, method, **kwargs))
    return train(recipe), Path(recipe.output_dir)


# The finished runs that many tests read: trained once per session (several files used to train their
# own copies of the same tiny runs). A test that changes a run must copy it first (`copy_run`).
SHARED_RUN = {"epochs": 2, "lr": 5e-3, "batch_size": 16, "seed": 1}


def _shared_run(tmp_path_factory, model: str, method: str) -> Path:
    from textxfer import load_recipe, train

    folder = tmp_path_factory.mktemp(f"tiny-{method}-run")
    path = write_recipe(folder, data=TICKETS, model={"name": model, "method": method, "lora": {"r": 4, "alpha": 8}},
                        train=SHARED_RUN, output_dir=str(folder / "run"))
    train(load_recipe(path))
    return folder / "run"


@pytest.fixture(scope="session")
def tiny_full_run(tmp_path_factory, tiny_bert) -> Path:
    """A finished `full` run of the tiny BERT on the small tickets (with a test file)."""
    return _shared_run(tmp_path_factory, tiny_bert, "full")


@pytest.fixture(scope="session")
def tiny_fe_run(tmp_path_factory, tiny_bert) -> Path:
    """A finished `feature_extraction` run of the same model, data and seed as `tiny_full_run`."""
    return _shared_run(tmp_path_factory, tiny_bert, "feature_extraction")


@pytest.fixture(scope="session")
def tiny_lora_run(tmp_path_factory, tiny_llama) -> Path:
    """A finished `lora` run (r=4) of the tiny Llama on the small tickets."""
    return _shared_run(tmp_path_factory, tiny_llama, "lora")


def copy_run(run: Path, folder: Path, name: str = "run") -> Path:
    """A private copy of a finished run, for a test that changes or replaces it."""
    import shutil

    target = folder / name
    shutil.copytree(run, target)
    return target


@pytest.fixture
def cli(capsys):
    """Run the `textxfer` command in-process: returns (exit status, stdout, stderr)."""
    from textxfer.commands.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write(folder: Path, name: str, content: str | bytes) -> Path:
    """Write a test input file (bytes are written as they are)."""
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def write_recipe(folder: Path, **sections) -> Path:
    """A recipe YAML from keyword sections, e.g. write_recipe(tmp, data={...}, model={...})."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(sections), encoding="utf-8")
    return path
