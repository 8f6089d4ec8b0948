"""Messages go through the `textxfer` logger, so a Python user can silence or route them.

The library only logs; it installs no handler (`logging.getLogger("textxfer")` is silent below WARNING
until the user configures logging). The `textxfer` command installs `cli_handlers()`: results and
progress lines on stdout as `textxfer: ...`, notes and warnings on stderr as `textxfer: note: ...` /
`textxfer: warning: ...`, written through tqdm so they never break a progress bar, and only by the
main process of a multi-process launch.

    log = get_logger()            # "textxfer: ..."
    log = get_logger("compare")   # "textxfer compare: ..."
    log.info(...); note(log, ...); log.warning(...)
"""
from __future__ import annotations

import logging
import os
import sys

from tqdm.auto import tqdm

ROOT = "textxfer"
NOTE = 25  # between INFO and WARNING: something the user should know, not a problem
logging.addLevelName(NOTE, "NOTE")
logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(component: str | None = None) -> logging.Logger:
    """The `textxfer` logger, or the one of a command that prefixes its lines with its name."""
    return logging.getLogger(f"{ROOT}.{component}" if component else ROOT)


def note(logger: logging.Logger, message: str) -> None:
    """A note: worth knowing (a default changed, rows left out), not a problem."""
    logger.log(NOTE, message)


def bare(logger: logging.Logger, message: str) -> None:
    """A line shown as it is, without the `textxfer:` prefix (per-epoch scores)."""
    logger.info(message, extra={"bare": True})


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a launched multi-process run (torchrun/accelerate set RANK)."""
    return os.environ.get("RANK", "0") in ("0", "")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if getattr(record, "bare", False):
            return message
        name = record.name.split(".", 1)[1] if "." in record.name else ""
        prefix = f"{ROOT} {name}: " if name else f"{ROOT}: "
        kind = {NOTE: "note: ", logging.WARNING: "warning: "}.get(record.levelno, "")
        if record.levelno >= logging.ERROR:
            kind = "error: "
        return prefix + kind + message


class _TqdmHandler(logging.Handler):
    """Writes through `tqdm.write`, so a running progress bar is redrawn below the message."""

    def __init__(self, stream: str, levels):
        super().__init__()
        self.stream_name = stream  # looked up at each message: tests and notebooks swap sys.stdout
        self.setFormatter(_Formatter())
        self.addFilter(lambda record: levels(record.levelno) and is_main_process())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = getattr(sys, self.stream_name)
            tqdm.write(self.format(record), file=stream)
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def cli_handlers(verbose: bool = False) -> list[logging.Handler]:
    """Install the command line's handlers on the `textxfer` logger (replacing earlier ones); returns them."""
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        if isinstance(handler, _TqdmHandler):
            logger.removeHandler(handler)
    handlers = [_TqdmHandler("stdout", lambda level: level < NOTE),
                _TqdmHandler("stderr", lambda level: level >= NOTE)]
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handlers
