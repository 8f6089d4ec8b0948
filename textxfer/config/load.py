"""Reading recipes: YAML + dotted `key=value` overrides, every key and value checked as it is read.

`load_recipe(path, overrides)` returns a resolved recipe (see `textxfer.config.resolve`); a problem is
one `TextxferError` naming the file, the key and the fix, with the closest valid key for a typo.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ..errors import TextxferError
from .checks import check
from .resolve import resolve
from .schema import NESTED, OPTIONAL_SECTIONS, SECTIONS, TOP_LEVEL, Recipe, valid_keys

KEY_TABLE = "README.md, section Recipes"  # where every key is listed with its meaning


def _unknown_key_error(key: str, where: str) -> TextxferError:
    keys = valid_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # try the last component alone: `lr` -> `train.lr`
        tails = {k.split(".")[-1]: k for k in keys}
        hit = difflib.get_close_matches(key.split(".")[-1], list(tails), n=1, cutoff=0.6)
        close = [tails[hit[0]]] if hit else []
    section = key.split(".")[0]
    if close:
        hint = f" Did you mean `{close[0]}`?"
    elif section in SECTIONS or section in OPTIONAL_SECTIONS:
        hint = f" The `{section}` keys are: {', '.join(k for k in keys if k.startswith(section + '.'))}."
    else:
        hint = f" A recipe has the sections {', '.join(SECTIONS)} and push_to_hub, and the keys {', '.join(TOP_LEVEL)}."
    return TextxferError(f"Unknown recipe key `{key}` in {where}.{hint} Every key is listed in {KEY_TABLE}.")


_NAMES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "None": type(None)}


def _types_of(annotation: Any) -> tuple:
    if isinstance(annotation, str):  # `from __future__ import annotations`
        annotation = eval(annotation, {"Optional": Optional, "Union": Union, **_NAMES})  # noqa: S307
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return tuple(t for a in typing.get_args(annotation) for t in _types_of(a))
    return (annotation,)


def _type_names(allowed: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in allowed)


def _converted(value: Any, allowed: tuple) -> Any:
    """Ints for floats, numeric strings for numbers, numbers for strings: YAML's types, as the field wants."""
    if bool in allowed and isinstance(value, bool):
        return value
    if list in allowed and str not in allowed and isinstance(value, str):  # `report_to: tensorboard`: a list of one
        return [value]
    if float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if float in allowed and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if str in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _range_problem(value, bounds: dict) -> str | None:
    """Why `value` is outside the field's range, or None."""
    low = ("at_least", bounds["at_least"]) if "at_least" in bounds else ("above", bounds.get("above"))
    high = ("at_most", bounds["at_most"]) if "at_most" in bounds else ("below", bounds.get("below"))
    too_low = low[1] is not None and (value < low[1] if low[0] == "at_least" else value <= low[1])
    too_high = high[1] is not None and (value > high[1] if high[0] == "at_most" else value >= high[1])
    if not (too_low or too_high):
        return None
    if low[1] is not None and high[1] is not None:
        left, right = ("[" if low[0] == "at_least" else "("), ("]" if high[0] == "at_most" else ")")
        return f"between {low[1]:g} and {high[1]:g} ({left}{low[1]:g}, {high[1]:g}{right})"
    if low[1] is not None:
        if low[0] == "above":
            return "positive (above 0)" if low[1] == 0 else f"above {low[1]:g}"
        return "0 or more" if low[1] == 0 else f"at least {low[1]:g}"
    return f"at most {high[1]:g}" if high[0] == "at_most" else f"below {high[1]:g}"


def _coerce(value: Any, f: dataclasses.Field, key: str, where: str) -> Any:
    """Check `value` against a field's type, choices and range."""
    allowed = _types_of(f.type)
    if value is None:
        if type(None) in allowed:
            return None
        raise TextxferError(f"Recipe key `{key}` in {where} cannot be empty; give a value of type {_type_names(allowed)}.")
    value = _converted(value, allowed)
    if isinstance(value, float) and not math.isfinite(value):
        raise TextxferError(f"Recipe key `{key}` in {where} must be a finite number, got {value}. Fix the value in "
                            f"the recipe or override it, e.g. `{key}=...`.")
    if not any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed):
        raise TextxferError(f"Recipe key `{key}` in {where} must be {_type_names(allowed)}, got {value!r}. "
                            f"Fix the value in the recipe or override it, e.g. `{key}=...`.")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise TextxferError(f"Recipe key `{key}` in {where} must be a list of names, got {value!r}.")
    choices = f.metadata.get("choices")
    if choices and isinstance(value, list):  # a list of names: each one a choice
        unknown = [v for v in value if v not in choices]
        if unknown:
            raise TextxferError(f"Recipe key `{key}` in {where} names {', '.join(map(repr, unknown))}, which "
                                f"{'is' if len(unknown) == 1 else 'are'} not one of: {', '.join(map(str, choices))}.")
    elif choices and value not in choices:
        raise TextxferError(f"Recipe key `{key}` in {where} is {value!r}, which is not one of: "
                            f"{', '.join(map(str, choices))}.")
    problem = _range_problem(value, f.metadata["range"]) if "range" in f.metadata else None
    if problem:
        raise TextxferError(f"Recipe key `{key}` in {where} must be {problem}, got {value}: "
                            f"{f.metadata['help']}.")
    return value


def _build(cls, values: dict, section: str, where: str):
    if not isinstance(values, dict):
        raise TextxferError(f"Section `{section}` in {where} must be a mapping of keys to values, got {values!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key_error(f"{section}.{key}", where)
        nested = NESTED.get((section, key))
        if nested:
            kwargs[key] = _build(nested, value or {}, f"{section}.{key}", where)
        else:
            kwargs[key] = _coerce(value, fields[key], f"{section}.{key}", where)
    return cls(**kwargs)


def parse_overrides(overrides: list[str] | None) -> dict:
    """Turn `["train.lr=3e-5", "data.text_column=[subject,body]"]` into a nested dict."""
    nested: dict = {}
    keys = valid_keys()
    for item in overrides or []:
        if "=" not in item:
            raise TextxferError(
                f"Override `{item}` is not of the form key=value (for example `train.lr=3e-5` or `model.method=full`)."
            )
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in keys:
            raise _unknown_key_error(key, "the command-line overrides")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, set)):
            value = raw
        *parents, name = key.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[name] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recipe_from_dict(raw: dict, where: str = "the recipe") -> Recipe:
    """Validate a nested dict into a checked, resolved `Recipe`."""
    if not isinstance(raw, dict):
        raise TextxferError(f"{where} must be a YAML mapping with sections data, model, train and output_dir.")
    for key in raw:
        if key not in (*SECTIONS, *OPTIONAL_SECTIONS, *TOP_LEVEL):
            raise _unknown_key_error(str(key), where)
    sections = {name: _build(cls, raw.get(name) or {}, name, where) for name, cls in SECTIONS.items()}
    sections.update({name: _build(cls, raw[name], name, where) for name, cls in OPTIONAL_SECTIONS.items()
                     if raw.get(name) is not None})
    output_dir = raw.get("output_dir", Recipe.output_dir)
    if not isinstance(output_dir, str) or not output_dir.strip():
        raise TextxferError(f"`output_dir` in {where} must be a folder path, got {output_dir!r}.")
    overwrite = raw.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise TextxferError(f"`overwrite` in {where} must be true or false, got {overwrite!r}.")
    recipe = Recipe(**sections, output_dir=output_dir, overwrite=overwrite)
    check(recipe, where)
    return resolve(recipe)


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (or start from defaults when `path` is None) and apply `key=value` overrides.

    Relative data paths are kept as written: they resolve against the working directory, like
    every command-line tool. Raises `TextxferError` with a clear message on any problem.
    """
    raw: dict = {}
    where = "the recipe"
    if path is not None:
        path = Path(path)
        where = f"recipe {path}"
        if not path.is_file():
            raise TextxferError(f"Recipe file {path} does not exist. Check the path (recipes live in `recipes/`).")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise TextxferError(f"Recipe {path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}.") from None
        except UnicodeDecodeError:
            raise TextxferError(f"Recipe {path} is not UTF-8 text; save it as UTF-8.") from None
    merged = _merge(raw, parse_overrides(overrides)) if overrides else raw
    return recipe_from_dict(merged, where)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the recipe as YAML (a run saves the resolved one it ran)."""
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
