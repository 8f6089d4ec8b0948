"""Datasets as input (`data.dataset`): a Hugging Face Hub dataset id, a `save_to_disk` folder, or a folder
of data files (parquet, csv, jsonl), instead of train/validation/test files.

- A Hub id (OWNER/NAME) goes through `datasets.load_dataset` with `data.dataset_config` and
  `data.dataset_revision`; offline (`HF_HUB_OFFLINE=1` / `HF_DATASETS_OFFLINE=1`, or a Hub that cannot be
  reached) it is read from the local datasets cache, where an earlier `load_dataset` left it.
- A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` goes through `load_from_disk`.
- Any other folder goes through `load_dataset(FOLDER)`: datasets takes the split names from the file
  names (`train.parquet`, `test.csv`, `data/train-00000-of-00001.parquet`, ...).

The splits used are `data.dataset_train_split` (required), `data.dataset_validation_split` and
`data.dataset_test_split` (each used where the dataset has it, unless set to null; a name set to
something other than its default must exist). A `ClassLabel` label column gives the label names, in
the dataset's order; integer labels without names become the classes `0`, `1`, ... with a note saying so.
A split whose labels are all missing (-1, as in GLUE's test splits) is not used as validation or test.

`open_dataset(cfg)` returns the split tables (labels as names), how messages name each split, the
label names, notes, and `source`: what the run records of the dataset (id, kind, config, the revision
actually used: the commit of a Hub dataset, the content fingerprint of a local one, and the splits).
"""
from __future__ import annotations

import difflib
import re
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import datasets

from ..config import DataConfig
from ..errors import TextxferError

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_DEFAULT_SPLITS = {"validation": "validation", "test": "test"}


@dataclass
class DatasetInput:
    """The splits of `data.dataset`, ready for `textxfer.data.splits` (see the module notes)."""

    tables: dict[str, datasets.Dataset]  # role (train / validation / test) -> table, labels as names
    wheres: dict[str, str]  # role -> how messages name the split
    label_names: list[str] | None  # a ClassLabel's names, in its order (None: the labels are the values)
    source: dict
    notes: list[str] = field(default_factory=list)


def open_dataset(cfg: DataConfig) -> DatasetInput:
    """Load `cfg.dataset` and pick its splits; one clear error naming the dataset or split otherwise."""
    kind, splits = _load(cfg)
    roles = _pick_splits(cfg, splits)
    train = splits[roles["train"]]
    _check_columns(cfg, train, roles["train"])
    notes: list[str] = []
    feature = train.features.get(cfg.label_column)
    names = _label_names(feature)
    if names is None and _is_integer(feature):
        notes.append(f"the label column `{cfg.label_column}` of the dataset {cfg.dataset} holds integers without "
                     f"names (not a datasets ClassLabel), so the classes are called by their numbers. To name them, "
                     f"cast the column before saving the dataset: `ds.cast_column(\"{cfg.label_column}\", "
                     f"ClassLabel(names=[...]))`.")
    tables, wheres = {}, {}
    for role, split in roles.items():
        if split is None:
            continue
        table = splits[split]
        if role != "train":
            _check_columns(cfg, table, split)
        if names is not None:
            table = _named_labels(table, cfg.label_column, names)
        if role != "train" and _unlabeled(table, cfg.label_column):
            notes.append(f"the {split} split of the dataset {cfg.dataset} has no labels (every one missing, as in a "
                         f"benchmark's hidden test split), so it is not used as the {role} split; set "
                         f"`data.dataset_{role}_split` to a labeled split.")
            roles[role] = None
            continue
        tables[role], wheres[role] = table, f"{cfg.dataset} (split {split})"
    source = {"dataset": cfg.dataset, "kind": kind, "config": cfg.dataset_config,
              "revision": _revision(kind, cfg, train), "splits": roles}
    if kind == "hub" and cfg.dataset_revision:
        source["requested_revision"] = cfg.dataset_revision
    return DatasetInput(tables, wheres, names, source, notes)


# --- loading ------------------------------------------------------------------------------------------

def _kind(cfg: DataConfig) -> str:
    path = Path(cfg.dataset)
    if path.is_dir():
        saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        return "saved" if saved else "files"
    looks_local = cfg.dataset.startswith((".", "/", "~")) or path.suffix.lower() in (".csv", ".parquet", ".jsonl")
    if looks_local or not _HUB_ID.fullmatch(cfg.dataset):
        raise TextxferError(f"`data.dataset={cfg.dataset}` is neither a folder here (looked in {path.resolve()}) nor a "
                            f"Hugging Face Hub dataset id (OWNER/NAME). Give the folder of a `save_to_disk` dataset "
                            f"or of data files, or a Hub id such as `PolyAI/banking77`; a single file goes in "
                            f"`data.train`.")
    return "hub"


def _load(cfg: DataConfig) -> tuple[str, dict[str, datasets.Dataset]]:
    kind = _kind(cfg)
    if kind != "hub" and (cfg.dataset_config or cfg.dataset_revision):
        key = "data.dataset_config" if cfg.dataset_config else "data.dataset_revision"
        raise TextxferError(f"`{key}` applies to a Hub dataset, and `data.dataset={cfg.dataset}` is a local folder. "
                            f"Remove `{key}`.")
    try:  # (datasets' progress bars and notes are off: textxfer.data.io)
        if kind == "saved":
            loaded = datasets.load_from_disk(cfg.dataset)
        elif kind == "files":
            loaded = datasets.load_dataset(cfg.dataset)
        else:
            with _offline_if_unreachable():
                loaded = datasets.load_dataset(cfg.dataset, name=cfg.dataset_config, revision=cfg.dataset_revision)
    except TextxferError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets, huggingface_hub and pyarrow raise many kinds
        raise _load_error(cfg, kind, exc) from None
    if isinstance(loaded, datasets.Dataset):  # one split saved on its own
        loaded = {"train": loaded}
    if isinstance(loaded, datasets.IterableDatasetDict) or not isinstance(loaded, (dict, datasets.DatasetDict)):
        raise TextxferError(f"`data.dataset={cfg.dataset}` did not load as a table of rows ({type(loaded).__name__}).")
    return kind, dict(loaded)


def _load_error(cfg: DataConfig, kind: str, exc: Exception) -> TextxferError:
    reason = _root_message(exc)
    where = f"`data.dataset={cfg.dataset}`"
    if kind != "hub":
        return TextxferError(f"Could not read the dataset folder {cfg.dataset} ({where}): {reason}. It must hold a "
                             f"dataset written by `save_to_disk`, or data files (parquet, csv, jsonl) named by split "
                             f"(train.parquet, test.csv, ...).")
    config_hint = re.search(r"(available configs|Config name is missing)[^\[]*(\[[^\]]*\])", reason, re.IGNORECASE)
    if config_hint and cfg.dataset_config:
        return TextxferError(f"The dataset {cfg.dataset} has no configuration `{cfg.dataset_config}` "
                             f"(`data.dataset_config`){' in the local cache' if datasets.config.HF_HUB_OFFLINE else ''}: "
                             f"choose one of {config_hint.group(2)}.")
    if config_hint:
        return TextxferError(f"The dataset {cfg.dataset} has several configurations: set `data.dataset_config` to "
                             f"one of {config_hint.group(2)}.")
    if "revision" in reason.lower() and cfg.dataset_revision:
        return TextxferError(f"The dataset {cfg.dataset} has no revision `{cfg.dataset_revision}` "
                             f"(`data.dataset_revision`): {reason}. Give a branch, tag or commit of the dataset.")
    offline = datasets.config.HF_HUB_OFFLINE or isinstance(exc, ConnectionError) or "offline" in reason.lower()
    if offline or "cache" in reason.lower():
        return TextxferError(f"The dataset {cfg.dataset} ({where}) is not in the local datasets cache "
                             f"({datasets.config.HF_DATASETS_CACHE}), and the Hugging Face Hub cannot be reached "
                             f"(offline): {reason}. Load it once with a network (or copy the cache here), or point "
                             f"`data.dataset` at a local `save_to_disk` folder or a folder of data files.")
    return TextxferError(f"Could not load the dataset {cfg.dataset} from the Hugging Face Hub ({where}): {reason}. "
                         f"Check the id (OWNER/NAME, as on huggingface.co/datasets), `data.dataset_config` and "
                         f"`data.dataset_revision`.")


def _root_message(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text or type(exc).__name__


@contextmanager
def _offline_if_unreachable(timeout: float = 3.0):
    """Offline mode while loading when the Hub's endpoint does not answer: the cached copy is used at once,
    instead of after half a minute of retries."""
    if datasets.config.HF_HUB_OFFLINE or _reachable(timeout):
        yield
        return
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = False


def _reachable(timeout: float) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or constants.ENDPOINT, url.port or (443 if url.scheme == "https" else 80)
    outcome: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(outcome and outcome[0])


# --- splits, columns, labels --------------------------------------------------------------------------

def _pick_splits(cfg: DataConfig, splits: dict) -> dict[str, str | None]:
    available = ", ".join(splits) or "(none)"
    if cfg.dataset_train_split not in splits:
        raise TextxferError(f"The dataset {cfg.dataset} has no split `{cfg.dataset_train_split}` "
                            f"(`data.dataset_train_split`); its splits are: {available}. Name the one to train on.")
    roles: dict[str, str | None] = {"train": cfg.dataset_train_split}
    for role in ("validation", "test"):
        name = getattr(cfg, f"dataset_{role}_split")
        if name is not None and name not in splits and name != _DEFAULT_SPLITS[role]:
            raise TextxferError(f"The dataset {cfg.dataset} has no split `{name}` (`data.dataset_{role}_split`); its "
                                f"splits are: {available}. Name one of them, or null for "
                                f"{'a held-out share of train' if role == 'validation' else 'no test'}.")
        if name == cfg.dataset_train_split:
            raise TextxferError(f"`data.dataset_{role}_split` names the training split `{name}` of {cfg.dataset}; a "
                                f"{role} split must hold other rows. Name another split, or null.")
        roles[role] = name if name in splits else None
    return roles


def _check_columns(cfg: DataConfig, table: datasets.Dataset, split: str) -> None:
    texts = cfg.text_column if isinstance(cfg.text_column, list) else [cfg.text_column]
    wanted = [("data.text_column", c) for c in texts] + [("data.label_column", cfg.label_column)]
    if cfg.text_pair_column:
        wanted.append(("data.text_pair_column", cfg.text_pair_column))
    for key, column in wanted:
        if column not in table.column_names:
            close = difflib.get_close_matches(column, table.column_names, n=1, cutoff=0.4)
            hint = f" Did you mean `{close[0]}`? Set `{key}={close[0]}`." if close else f" Set `{key}` to one of them."
            raise TextxferError(f"The {split} split of the dataset {cfg.dataset} has no column `{column}` (asked for "
                                f"by `{key}`); its columns are: {', '.join(table.column_names)}.{hint}")


def _label_names(feature) -> list[str] | None:
    """A ClassLabel's names (also inside a sequence: multi-label), else None."""
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _is_integer(feature) -> bool:
    inner = getattr(feature, "feature", feature)
    return isinstance(inner, datasets.Value) and inner.dtype.startswith(("int", "uint"))


def _named_labels(table: datasets.Dataset, column: str, names: list[str]) -> datasets.Dataset:
    """The label column with names instead of class ids (a missing label, -1, stays missing)."""
    def name(i):
        return names[i] if isinstance(i, int) and 0 <= i < len(names) else None

    values = [[name(i) for i in v] if isinstance(v, list) else name(v) for v in table[column]]
    return table.remove_columns(column).add_column(column, values)


def _unlabeled(table: datasets.Dataset, column: str) -> bool:
    values = table[column]
    return len(values) > 0 and all(v is None or v == [] or (isinstance(v, int) and v < 0) for v in values)


def _revision(kind: str, cfg: DataConfig, train: datasets.Dataset) -> str | None:
    """The revision actually read: a Hub dataset's commit (the name of its cache folder), or the content
    fingerprint of a local one. A commit asked for and another found (an offline cache) is an error."""
    if kind != "hub":
        return getattr(train, "_fingerprint", None)
    files = train.cache_files
    used = Path(files[0]["filename"]).parent.name if files else None
    used = used if used and _COMMIT.fullmatch(used) else None
    wanted = cfg.dataset_revision
    if wanted and _COMMIT.fullmatch(wanted) and used and used != wanted:
        raise TextxferError(f"`data.dataset_revision={wanted}` asks for that commit of {cfg.dataset}, and the copy "
                            f"found (the local cache, offline) is commit {used}. Load that revision once with a "
                            f"network, or set `data.dataset_revision={used}`.")
    return used or wanted
