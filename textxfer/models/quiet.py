"""Quiet model files: transformers' load report (it lists the freshly initialised head, which is expected
here) and its "Loading weights" / "Writing model shards" progress bars for local files (they flash by
in a second and bury the lines that matter) are hidden around textxfer's loads and saves. Downloads keep
their progress bars (huggingface_hub draws those), and `textxfer -v` shows everything."""
from __future__ import annotations

from contextlib import contextmanager

from transformers.utils import logging as hf_logging

FILE_BARS = ("Loading weights", "Writing model shards")
_verbose = False  # `textxfer -v`: show transformers' reports and bars


def set_verbose(verbose: bool) -> None:
    """Show (True) or hide transformers' load reports and file progress bars from now on."""
    global _verbose
    _verbose = verbose


def _without_file_bars(previous):
    def hook(factory, args, kwargs):
        if kwargs.get("desc") in FILE_BARS:
            kwargs = {**kwargs, "disable": True}
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)
    return hook


@contextmanager
def quiet_loading():
    """Hide transformers' load report and local-file progress bars inside the block (unless verbose)."""
    if _verbose:
        yield
        return
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers >= 5.x
    previous_hook = set_hook(None) if set_hook else None
    if set_hook:
        set_hook(_without_file_bars(previous_hook))
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if set_hook:
            set_hook(previous_hook)
