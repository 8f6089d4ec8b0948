"""The search space of `textxfer tune`: which recipe keys vary, and over what.

A space maps dotted recipe keys to a distribution, in YAML as in Python:

    train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    train.epochs: {type: int, low: 2, high: 10}
    train.batch_size: {type: categorical, choices: [8, 16, 32, 64]}

`default_space(recipe)` asks the recipe's method what applies: the learning rate (a decade either side of
the method's default, log scale), epochs (half to twice the default), batch size, warmup, weight decay
and, where the method trains the pretrained layers, `train.layer_lr_decay`; LoRA's rank, alpha and
dropout for adapter methods; a feature-extraction head fit by L-BFGS (no epochs, no learning rate, its L2
strength already chosen on validation) varies only its pooling and class weights. A `--space` file
replaces the default space as a whole (`textxfer tune` writes the space it used to `space.yaml`, a
starting point to edit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import head_solver, load_recipe, valid_keys
from ..config.schema import Recipe
from ..errors import TextxferError
from ..methods import get_method

KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One key's distribution: `float`/`int` between `low` and `high` (`log`: on a log scale), or one of
    `choices`."""

    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def to_dict(self) -> dict:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high}
        return {**out, "log": True} if self.log else out

    def extremes(self) -> list:
        """The values that bound the distribution (every choice of a categorical one)."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def default_space(recipe: Recipe) -> dict[str, Param]:
    """What `textxfer tune` varies for the recipe's method when no `--space` is given (module notes)."""
    method = get_method(recipe.model.method)
    solver = head_solver(recipe)
    defaults = method.defaults(solver)
    space: dict[str, Param] = {}
    if defaults["epochs"] is not None:
        lr, epochs = defaults["lr"], defaults["epochs"]
        space["train.lr"] = Param("float", _round(lr / 10), _round(lr * 10), log=True)
        space["train.epochs"] = Param("int", max(1, epochs // 2), epochs * 2)
        space["train.batch_size"] = Param("categorical", choices=(8, 16, 32, 64))
        space["train.warmup_ratio"] = Param("float", 0.0, 0.3)
        space["train.weight_decay"] = Param("float", 0.0, 0.1)
        if not method.layer_strategies:
            space["train.layer_lr_decay"] = Param("float", 0.5, 1.0)
    if method.adapters:
        space["model.lora.r"] = Param("categorical", choices=(4, 8, 16, 32))
        space["model.lora.alpha"] = Param("categorical", choices=(8, 16, 32, 64))
        space["model.lora.dropout"] = Param("float", 0.0, 0.2)
    if method.caches_features and solver == "lbfgs":
        space["model.pooling"] = Param("categorical", choices=("mean", "cls"))
        space["train.class_weights"] = Param("categorical", choices=("none", "balanced"))
    return space


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def read_space(path: str | Path) -> dict[str, Param]:
    """A space from a YAML file (module notes); one clear error for anything it cannot use."""
    path = Path(path)
    if not path.is_file():
        raise TextxferError(f"The search space file {path} (--space) does not exist. Give a YAML file such as the "
                            f"`space.yaml` a finished `textxfer tune` writes into its output folder.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TextxferError(f"The search space file {path} is not valid YAML: {getattr(exc, 'problem', exc)}.") from None
    if not isinstance(raw, dict) or not raw:
        raise TextxferError(f"The search space file {path} must map recipe keys to distributions, e.g. "
                            f"`train.lr: {{type: float, low: 1.0e-5, high: 1.0e-3, log: true}}`.")
    return {str(key): _param(str(key), spec, path) for key, spec in raw.items()}


def _param(key: str, spec, path: Path) -> Param:
    where = f"`{key}` in the search space file {path}"
    if isinstance(spec, list):  # shorthand: a list of choices
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise TextxferError(f"{where} must be a mapping with `type` one of {', '.join(KINDS)}, e.g. "
                            f"`{{type: float, low: 0.0, high: 0.3}}` or `{{type: categorical, choices: [16, 32]}}`; "
                            f"got {spec!r}.")
    unknown = set(spec) - {"type", "low", "high", "log", "choices"}
    if unknown:
        raise TextxferError(f"{where} has unknown fields {', '.join(sorted(unknown))}; a distribution has `type`, "
                            f"`low`, `high` and `log` (float, int) or `choices` (categorical).")
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise TextxferError(f"{where} is categorical and needs a non-empty list `choices`.")
        return Param("categorical", choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or low >= high:
        raise TextxferError(f"{where} needs numbers `low` < `high`, got low={low!r}, high={high!r}.")
    if spec["type"] == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise TextxferError(f"{where} is an int distribution and needs whole numbers `low` and `high`.")
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and low <= 0):
        raise TextxferError(f"{where}: `log` must be true or false, and a log scale needs `low` above 0.")
    if spec["type"] == "int":
        return Param("int", int(low), int(high), log=log)
    return Param("float", float(low), float(high), log=log)


def check_space(space: dict[str, Param], recipe_path: str, overrides: list[str]) -> None:
    """Refuse, before any trial, a key that is not a recipe key, one the tuned recipe fixes itself, or a
    value the recipe refuses: every bound and choice is read as the trials will read it."""
    keys = valid_keys()
    fixed = {"output_dir", "overwrite", "data.test", "train.save_every", "train.seed"}
    for key, param in space.items():
        if key not in keys:
            raise TextxferError(f"`{key}` in the search space is not a recipe key; the space varies recipe keys such "
                                f"as train.lr or model.lora.r (every key is listed in README.md, section Recipes).")
        if key in fixed or key.startswith("data."):
            raise TextxferError(f"`{key}` cannot be tuned: the data, the seed (which draws the validation split) "
                                f"and where the trial runs go stay the same for every trial, so their validation "
                                f"scores compare. Remove it from the search space.")
        for value in param.extremes():
            try:
                load_recipe(recipe_path, [*overrides, f"{key}={value}"])
            except TextxferError as exc:
                raise TextxferError(f"The search space's `{key}` reaches {value!r}, which the recipe {recipe_path} "
                                    f"refuses: {exc}") from None


def suggest(trial, space: dict[str, Param]) -> dict:
    """The trial's value of every key of the space (Optuna's `suggest_*`)."""
    values = {}
    for key, param in space.items():
        if param.kind == "categorical":
            values[key] = trial.suggest_categorical(key, list(param.choices))
        elif param.kind == "int":
            values[key] = trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
        else:
            values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
    return values


def as_overrides(values: dict) -> list[str]:
    """`key=value` recipe overrides for a trial's values (floats written exactly, in YAML's syntax)."""
    return [f"{key}={_yaml_value(value)}" for key, value in values.items()]


def _yaml_value(value) -> str:
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def space_to_yaml(space: dict[str, Param]) -> str:
    """The space as the YAML a `--space` file holds."""
    return yaml.safe_dump({key: param.to_dict() for key, param in space.items()}, sort_keys=False,
                          default_flow_style=None)
