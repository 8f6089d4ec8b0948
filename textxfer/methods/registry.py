"""The registry: every transfer method by name. Add a method here (one line) and in its own module."""
from __future__ import annotations

from ..errors import TextxferError
from .base import Method
from .bitfit import BITFIT
from .feature_extraction import FEATURE_EXTRACTION
from .full import FULL
from .lora import LORA, QLORA
from .lp_ft import LP_FT
from .scratch import SCRATCH

METHODS: dict[str, Method] = {m.name: m for m in (FULL, FEATURE_EXTRACTION, SCRATCH, LORA, QLORA, LP_FT, BITFIT)}


def method_names() -> tuple[str, ...]:
    """The names `model.method` accepts, in the registry's order."""
    return tuple(METHODS)


def get_method(name: str) -> Method:
    """The method called `name`; a clear error naming the choices for anything else."""
    try:
        return METHODS[name]
    except KeyError:
        raise TextxferError(f"Unknown transfer method {name!r}; `model.method` is one of: "
                            f"{', '.join(METHODS)}.") from None
