"""Checks across keys, made when a recipe is read (one key's type, choices and range are checked beside
its field, see `textxfer.config.schema`): what the recipe's method supports, settings that exclude each
other, and `push_to_hub` (reported before training, not after it)."""
from __future__ import annotations

import re

from ..errors import TextxferError
from ..methods import get_method
from .schema import Recipe

# Hub repository ids: OWNER/NAME, letters, digits, `-`, `_` and `.`, no `--` or `..`, at most 96 characters
# per part, not starting or ending with `-` or `.` (huggingface_hub's validate_repo_id rules, owner required).
_REPO_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")


def repo_id_problem(repo_id) -> str | None:
    """Why `repo_id` is not a valid Hub model id of the form OWNER/NAME, or None when it is."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        return "it is empty"
    if repo_id.count("/") != 1:
        return "it must be OWNER/NAME: your user or organization name, a slash, and the model name"
    if "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        return "`--`, `..` and a trailing `.git` are not allowed"
    if not _REPO_ID.fullmatch(repo_id):
        return ("each part may only use letters, digits, `-`, `_` and `.`, may not start or end with `-` or `.`, "
                "and is at most 96 characters long")
    return None


def check(recipe: Recipe, where: str) -> None:
    """Every check across keys; raises one `TextxferError` for the first problem."""
    _check_data(recipe, where)
    _check_strategies(recipe, where)
    _check_self_training(recipe, where)
    _check_push(recipe, where)


def _check_data(recipe: Recipe, where: str) -> None:
    d, t = recipe.data, recipe.train
    files = [key for key in ("train", "validation", "test") if getattr(d, key)]
    if d.dataset and files:
        raise TextxferError(f"{where} sets `data.dataset` and {', '.join(f'`data.{k}`' for k in files)}: the splits come "
                            f"from one or the other. Name the dataset's splits with `data.dataset_train_split`, "
                            f"`data.dataset_validation_split` and `data.dataset_test_split`, or remove `data.dataset`.")
    if not d.train and not d.dataset:
        raise TextxferError(f"{where} has no training file: set `data.train` to a CSV, TSV, JSONL or parquet file "
                            f"(in the recipe, or on the command line as `data.train=path/to/train.csv`), or "
                            f"`data.dataset` to a Hub dataset id or a local dataset folder.")
    if isinstance(d.text_column, list) and not d.text_column:
        raise TextxferError(f"`data.text_column` in {where} is an empty list; name at least one column.")
    if d.long_text == "chunks" and not d.stride < d.max_length // 2:
        raise TextxferError(f"`data.stride` in {where} is {d.stride}: windows of data.max_length={d.max_length} tokens "
                            f"need a stride (overlap) from 0 to {d.max_length // 2 - 1}.")
    if not d.label_separator:
        raise TextxferError(f"`data.label_separator` in {where} cannot be empty; the default is `|`.")
    for key, value in (("train.target_precision", t.target_precision), ("train.target_recall", t.target_recall)):
        if value is not None and d.multi_label:
            raise TextxferError(f"`{key}` in {where} applies to binary tasks; multi-label runs tune one threshold "
                                f"per label instead (train.tune_thresholds).")
    if t.min_confidence is not None and d.multi_label:
        raise TextxferError(f"`train.min_confidence` in {where} applies to single-label runs: a multi-label run decides "
                            f"each label by its own threshold (train.tune_thresholds), so there is no single score to "
                            f"abstain on. Remove the key.")
    if t.target_precision is not None and t.target_recall is not None:
        raise TextxferError(f"{where} sets both `train.target_precision` and `train.target_recall`; a single threshold "
                            f"can aim at one of them. Keep one.")


def _check_strategies(recipe: Recipe, where: str) -> None:
    """Layer-wise strategies apply to methods that train the pretrained layers; say so instead of ignoring them."""
    m, t = recipe.model, recipe.train
    method = get_method(m.method)
    layerwise = {"model.freeze_layers": m.freeze_layers is not None, "train.layer_lr_decay": t.layer_lr_decay is not None,
                 "train.gradual_unfreezing": t.gradual_unfreezing, "train.l2_sp": t.l2_sp is not None}
    used = [key for key, on in layerwise.items() if on]
    if used and method.layer_strategies:
        raise TextxferError(f"{', '.join(f'`{k}`' for k in used)} in {where} cannot apply to `model.method={m.method}`: "
                            f"{method.layer_strategies}. Use `model.method=full` or `lp_ft`, or remove the key.")
    if m.freeze_layers is not None and m.freeze_layers < 0:
        raise TextxferError(f"`model.freeze_layers` in {where} must be 0 or more, got {m.freeze_layers}.")
    if t.gradual_unfreezing and m.freeze_layers is not None:
        raise TextxferError(f"{where} sets both `train.gradual_unfreezing` and `model.freeze_layers`; gradual "
                            f"unfreezing decides per epoch which layers train. Keep one.")
    if t.head_solver == "lbfgs" and t.sampler == "balanced":
        raise TextxferError(f"{where} sets `train.head_solver=lbfgs` with `train.sampler=balanced`: the L-BFGS head "
                            f"fits all rows at once, so there are no batches to rebalance. Use `train.class_weights="
                            f"balanced` with it, or `train.head_solver=sgd` (or `auto`) to keep the balanced sampler.")


def _check_self_training(recipe: Recipe, where: str) -> None:
    """Self-training refits the cached-feature head on pseudo-labels: say where that cannot apply."""
    d, m, t = recipe.data, recipe.model, recipe.train
    if not t.self_training_rounds:
        if t.student_epochs:
            raise TextxferError(f"`train.student_epochs` in {where} fine-tunes a student on self-training's "
                                f"pseudo-labels, and self-training is off. Set `train.self_training_rounds` (e.g. 3) "
                                f"with `data.unlabeled=FILE`, or set `train.student_epochs=0`.")
        return
    problem = get_method(m.method).self_training
    if problem:
        problem = f"{problem} (`model.method={m.method}`)" if "model.method" not in problem else problem
    elif not d.unlabeled:
        problem = "it needs unlabeled texts to pseudo-label. Set `data.unlabeled=FILE` (.txt one per line, or a table)"
    elif d.multi_label:
        problem = "it picks one most probable class per text, and this recipe is multi-label. Set the rounds to 0"
    elif d.text_pair_column:
        problem = "the unlabeled file holds single texts, and this recipe reads text pairs. Set the rounds to 0"
    elif t.head_solver == "sgd" or (t.head_solver == "auto" and t.sampler == "balanced"):
        problem = ("it refits the head with the L-BFGS solver. Set `train.head_solver=lbfgs` (with "
                   "`train.class_weights=balanced` instead of the balanced sampler)")
    if problem:
        raise TextxferError(f"`train.self_training_rounds` in {where} cannot apply: {problem}.")


def _check_push(recipe: Recipe, where: str) -> None:
    push = recipe.push_to_hub
    if push is None:
        return
    if push.repo_id is None:
        raise TextxferError(f"`push_to_hub` in {where} has no `repo_id`: set it to OWNER/NAME, e.g. "
                            f"`push_to_hub: {{repo_id: acme/ticket-router}}`, or remove the section to skip the push.")
    problem = repo_id_problem(push.repo_id)
    if problem:
        raise TextxferError(f"`push_to_hub.repo_id` in {where} is {push.repo_id!r}, which is not a valid Hugging Face "
                            f"Hub model id: {problem}. Example: `acme/ticket-router`.")
    if not push.revision.strip() or push.revision != push.revision.strip():
        raise TextxferError(f"`push_to_hub.revision` in {where} must be a branch name such as `main`, got {push.revision!r}.")
    if push.base_model is not None and repo_id_problem(push.base_model):
        raise TextxferError(f"`push_to_hub.base_model` in {where} is {push.base_model!r}, which is not a Hub model id "
                            f"(OWNER/NAME, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct`): "
                            f"{repo_id_problem(push.base_model)}.")
    refusal = get_method(recipe.model.method).push
    if refusal:
        raise TextxferError(f"`push_to_hub` in {where} cannot push a `model.method={recipe.model.method}` run: "
                            f"{refusal}, or remove `push_to_hub`.")
