"""Push a run folder to the Hugging Face Hub: the files stock transformers / peft load, plus a model card.

    textxfer push runs/tickets --repo-id acme/ticket-router [--private] [--revision main]
    textxfer push runs/tickets --repo-id acme/ticket-router --dry-run out/   # exactly what would be uploaded

What is uploaded (an allow-list: nothing else leaves the run folder):
- full, lp_ft, scratch and merged runs: `config.json` (with id2label), `model.safetensors`, the tokenizer;
- lora/qlora runs: `adapter_model.safetensors` (adapters + trained head), `adapter_config.json` with
  `base_model_name_or_path` set to the base model's Hub id (not textxfer's local labelled-base cache),
  the labelled `config.json` and the tokenizer;
- always `README.md` (the model card), `textxfer.json`, `recipe.yaml`, `metrics.json` and the plots.
`predictions_test.csv` stays behind: it holds the test texts. `feature_extraction` runs are refused: their
mean-pooled head has no stock model class, and a Hub copy would load with a random head.

The token comes from `HF_TOKEN` or `hf auth login` (huggingface_hub's `get_token`); it is passed to
huggingface_hub only, never printed, logged or written, and scrubbed from any error message. `HF_ENDPOINT`
(read when pushing) points at another Hub. Every local check (repo id, run folder, base model, token,
offline mode) and the `whoami` call happen before anything is created or uploaded.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..config.checks import repo_id_problem
from ..errors import TextxferError
from ..outputs import MANIFEST
from ..methods import get_method
from ..models.embedded import EMBEDDED
from ..runs.info import RunInfo
from .model_card import PLOTS, Base, build_card, plot_sources

DEFAULT_LICENSE = "other"
COMMON_FILES = ("README.md", "textxfer.json", "recipe.yaml", "metrics.json", "confusion_matrix.png",
                "learning_curves.png", "label_scores.png", "precision_recall.png", "calibration.png", "risk_coverage.png",
                "validation_scores.json", "groups.png")
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


@dataclass
class PushResult:
    repo_id: str
    revision: str
    files: list[str]
    folder: Path | None = None  # the dry-run folder
    left_out: list[str] | None = None  # run-folder entries that are not uploaded
    repo_url: str | None = None
    commit_url: str | None = None


def check_repo_id(repo_id: str, what: str = "--repo-id") -> None:
    problem = repo_id_problem(repo_id)
    if problem is None:

        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            problem = str(exc).splitlines()[0]
    if problem:
        raise TextxferError(f"{what} {repo_id!r} is not a valid Hugging Face Hub model id: {problem}. Use OWNER/NAME, "
                            f"e.g. `acme/ticket-router` (OWNER is your user name or an organization you can write to).")


def is_adapter(run_dir: Path) -> bool:
    return (run_dir / "adapter_config.json").is_file()


def _is_hub_id(name: str) -> bool:
    """A Hub model id (`gpt2` and `OWNER/NAME` alike), not a local path."""

    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def resolve_base(name: str, override: str | None, adapter: bool, where: str) -> Base:
    """The base model as the Hub knows it: an embedded alias's upstream id, a Hub id, or `override`."""
    if override:
        if not _is_hub_id(override):
            raise TextxferError(f"--base-model {override!r} is not a Hugging Face Hub model id; give the id the base model "
                                f"has on the Hub, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct`.")
        known = next((m for m in EMBEDDED.values() if m.hub_id == override), None)
        return Base(override, name, known.license if known else None, known.hub_note if known and adapter else None,
                    explicit=True)
    if name in EMBEDDED:
        model = EMBEDDED[name]
        return Base(model.hub_id, name, model.license, model.hub_note if adapter else None)
    if _is_hub_id(name):
        return Base(name, name)
    if adapter:
        raise TextxferError(f"The run {where} has adapters on the local model folder `{name}`, which nobody who "
                            f"downloads them can load. Say where that base model lives on the Hub with `--base-model "
                            f"OWNER/NAME` (recipe: `push_to_hub.base_model`), or merge the adapters first (`textxfer "
                            f"merge`) and push the standalone model.")
    return Base(None, Path(name).name)


def _files(run_dir: Path, adapter: bool) -> tuple[list[str], list[str]]:
    """(files to upload as they are, files left behind) of a run folder."""
    wanted = set(COMMON_FILES) | set(TOKENIZER_FILES) | set(ADAPTER_FILES if adapter else MODEL_FILES)
    shards = {p.name for p in run_dir.glob("model-*-of-*.safetensors")} if not adapter else set()
    keep, left = [], []
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and (path.name in wanted or path.name in shards):
            if path.name not in ("README.md", "adapter_config.json"):  # both are written anew
                keep.append(path.name)
        elif path.name != MANIFEST:  # textxfer's record of the folder's files: not part of the model
            left.append(path.name + ("/" if path.is_dir() else ""))
    return keep, left


def stage(run_dir: str | Path, folder: str | Path, repo_id: str, base_model: str | None = None,
          license: str | None = None, link: bool = False) -> list[str]:
    """Write into `folder` exactly the files a push of `run_dir` to `repo_id` uploads; returns their names."""

    run_dir, folder = Path(run_dir), Path(folder)
    check_repo_id(repo_id)
    info = RunInfo.read(run_dir, "`textxfer push`")
    if info.is_ensemble:
        raise TextxferError(f"{run_dir} is an ensemble of {len(info.members)} runs, which no stock Hugging Face "
                            f"class loads as one model. Push its members one by one (copied in {run_dir / 'members'}), "
                            f"or share the folder with textxfer users (`load_classifier` loads it).")
    method = info.method_spec
    if method.push:
        raise TextxferError(f"{run_dir} is a `{method.name}` run, which cannot be pushed: {method.push} (`model.method="
                            f"lp_ft` starts from a trained linear head and fine-tunes), or share the run folder with "
                            f"textxfer users.")
    adapter = method.saves == "adapter"
    recipe = {}
    if (run_dir / "recipe.yaml").is_file():
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}
    model_cfg = recipe.get("model") or {}
    base = resolve_base(model_cfg.get("name") or (info.base_model or ""), base_model, adapter, str(run_dir))
    needed = ("adapter_model.safetensors", "config.json") if adapter else ("config.json",)
    missing = [n for n in needed if not (run_dir / n).is_file()]
    if not adapter and not any((run_dir / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json")):
        missing.append("model.safetensors")
    if missing:
        raise TextxferError(f"{run_dir} lacks {', '.join(missing)}: it is not a complete saved model. Train it again "
                            f"(or merge it again) before pushing.")
    keep, _ = _files(run_dir, adapter)
    folder.mkdir(parents=True, exist_ok=True)
    for name in keep:
        if name not in PLOTS:
            _place(run_dir / name, folder / name, link)
    for name, source in plot_sources(run_dir).items():
        _place(source, folder / name, link)
    if adapter:
        config = json.loads((run_dir / "adapter_config.json").read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base.hub_id  # not textxfer's local labelled base
        config["revision"] = model_cfg.get("revision") if base_model is None else None
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    card = build_card(run_dir, repo_id, base, license or base.license or DEFAULT_LICENSE, adapter)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return sorted(p.name for p in folder.iterdir())


def _place(source: Path, target: Path, link: bool) -> None:
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system
            pass
    shutil.copy2(source, target)


def dry_run(run_dir: str | Path, folder: str | Path, repo_id: str, base_model: str | None = None,
            license: str | None = None, revision: str = "main") -> PushResult:
    """Write what `push` would upload into `folder` (new or empty); no token or network needed."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise TextxferError(f"The dry-run folder {folder} exists and is not empty: give a new or empty folder, so that "
                            f"it holds exactly what would be uploaded.")
    _check_revision(revision)
    created = not folder.exists()
    try:
        files = stage(run_dir, folder, repo_id, base_model, license)
    except BaseException:
        if created:  # a failed dry run leaves nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return PushResult(repo_id, revision, files, folder=folder, left_out=_files(Path(run_dir), is_adapter(Path(run_dir)))[1])


def _check_revision(revision: str) -> None:
    if not revision or revision != revision.strip() or " " in revision:
        raise TextxferError(f"--revision {revision!r} is not a branch name; use e.g. `main` or `experiments`.")


def endpoint() -> str:
    """The Hub to talk to: `HF_ENDPOINT` when set (read now, not at import), else huggingface.co."""

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_token() -> str:
    """The user's token (HF_TOKEN, else the stored login), or a clear error before any request."""

    if constants.is_offline_mode():
        raise TextxferError("Cannot push: Hugging Face offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set "
                            "in the environment). Unset it on a machine with a network, or use `--dry-run DIR` to write "
                            "what would be uploaded.")
    token = get_token()
    if not token:
        raise TextxferError("Cannot push: no Hugging Face token found. Set the HF_TOKEN environment variable to a token "
                            "with write access (https://huggingface.co/settings/tokens) or run `hf auth login`; "
                            "`--dry-run DIR` needs no token.")
    return token


def check_can_push(recipe) -> None:
    """Local checks of the push a recipe asks for after training (`push_to_hub`): they fail before training.
    (The recipe itself already checked the repo id, the revision and the method.)"""
    settings = recipe.push_to_hub
    resolve_base(recipe.model.name, settings.base_model, get_method(recipe.model.method).adapters,
                 f"of recipe output_dir {recipe.output_dir}")
    hub_token()


def push(run_dir: str | Path, repo_id: str, private: bool = False, revision: str = "main",
         base_model: str | None = None, license: str | None = None, commit_message: str | None = None) -> PushResult:
    """Create (or reuse) the Hub repository `repo_id` and upload the run with its model card."""

    run_dir = Path(run_dir)
    check_repo_id(repo_id)
    _check_revision(revision)
    token = hub_token()
    url = endpoint()
    with tempfile.TemporaryDirectory(prefix="textxfer-push-") as tmp:
        files = stage(run_dir, tmp, repo_id, base_model, license, link=True)  # all local checks before the network
        api = HfApi(endpoint=url, token=token)
        user = _call(lambda: api.whoami(), "check the token", url, token)
        owner = repo_id.split("/")[0]
        orgs = {org.get("name") for org in user.get("orgs", []) if isinstance(org, dict)}
        if owner != user.get("name") and owner not in orgs:
            raise TextxferError(f"Cannot push to {repo_id}: the token belongs to `{user.get('name')}`, who is neither "
                                f"`{owner}` nor a member of an organization of that name (organizations: "
                                f"{', '.join(sorted(n for n in orgs if n)) or 'none'}). Use a repo id under your user "
                                f"or one of your organizations, or another token.")
        repo_url = _call(lambda: api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"),
                         f"create the repository {repo_id}", url, token)
        if revision != "main":
            _call(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model"),
                  f"create the branch {revision}", url, token)
        message = commit_message or f"textxfer: upload {run_dir.name}"
        commit = _call(lambda: api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                                 commit_message=message, repo_type="model"),
                       f"upload {len(files)} files to {repo_id}", url, token)
    return PushResult(repo_id, revision, files, repo_url=str(repo_url), commit_url=getattr(commit, "commit_url", None))


def _call(fn, what: str, url: str, token: str):
    """Run one Hub request; turn its failure into one paragraph (token scrubbed)."""

    try:
        return fn()
    except TextxferError:
        raise
    except OfflineModeIsEnabled:
        raise TextxferError(f"Cannot {what}: Hugging Face offline mode is on (HF_HUB_OFFLINE). Unset it to push.") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        detail = _first_line(exc, token)
        hints = {401: "the token is invalid or expired: set HF_TOKEN to a valid token or run `hf auth login`",
                 403: "the token may not write there: use a token with write access to that user or organization",
                 404: "the repository or branch was not found, or the token cannot see it",
                 409: "it conflicts with what is on the Hub (an existing repository of another type?)"}
        hint = hints.get(status, "see the message of the Hub above")
        raise TextxferError(f"Could not {what} on {url} (HTTP {status}): {detail}. {hint[0].upper() + hint[1:]}.") from None
    except Exception as exc:  # noqa: BLE001 - connection errors come from httpx, hf_xet, ssl, ...
        names = " ".join(c.__name__ for c in type(exc).__mro__)
        if any(word in names for word in ("Connect", "Timeout", "Transport", "Network", "SSL")) or isinstance(exc, OSError):
            raise TextxferError(f"Could not {what}: {url} cannot be reached ({type(exc).__name__}: "
                                f"{_first_line(exc, token)}). Check the network connection (and HF_ENDPOINT if you set "
                                f"it); `--dry-run DIR` works offline.") from None
        raise TextxferError(f"Could not {what} on {url}: {type(exc).__name__}: {_first_line(exc, token)}.") from None


def _first_line(exc: BaseException, token: str) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.replace(token, "[token]") if token else line
