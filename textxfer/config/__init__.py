"""Recipes: the section dataclasses (schema), reading and checking them (load, checks), and the
resolved recipe that says exactly what runs (resolve)."""
from .load import load_recipe, parse_overrides, recipe_from_dict, save_recipe
from .resolve import head_solver, resolve
from .schema import DataConfig, LoraSettings, ModelConfig, PushConfig, Recipe, TrainConfig, valid_keys

__all__ = ["DataConfig", "LoraSettings", "ModelConfig", "PushConfig", "Recipe", "TrainConfig", "head_solver",
           "load_recipe", "parse_overrides", "recipe_from_dict", "resolve", "save_recipe", "valid_keys"]
