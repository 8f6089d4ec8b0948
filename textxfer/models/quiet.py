"""Quiet transformers load reports: the freshly initialised head they list is expected here."""
from __future__ import annotations

from contextlib import contextmanager

from transformers.utils import logging as hf_logging


@contextmanager
def quiet_loading():
    """transformers prints a load report listing the freshly initialised head; expected here, so hide it."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
