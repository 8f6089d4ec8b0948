"""Transfer methods: one declaration each (see `base.Method`), found by name in the registry."""
from .base import Method, is_head_parameter
from .registry import METHODS, get_method, method_names

__all__ = ["Method", "METHODS", "get_method", "is_head_parameter", "method_names"]
