"""One `textxfer tune` trial: a training run in a process of its own, watched epoch by epoch.

The trial runs `python -m textxfer.train` in a fresh process, so that nothing a run allocates (model,
optimizer, tokenized data, library caches) piles up across trials. The child process is told, through the
environment variable `TEXTXFER_TRIAL_PROGRESS`, to append each epoch's validation scores
to a progress file (a tracker of its own, see `textxfer.training.tracking.EpochProgress`). This process
reads the file as it grows and hands each epoch to `on_epoch`; when that says to prune, the child is
stopped (SIGTERM, then SIGKILL) and leaves no run folder. The parent alone talks to the Optuna storage,
so pruning works the same with SQLite on one machine and a database shared by many.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# The child appends its epochs to the file this names (textxfer.training.tracking reads the same name; a
# test keeps them equal: importing the tracking module here would load torch into the parent process).
PROGRESS_ENV = "TEXTXFER_TRIAL_PROGRESS"
POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 20.0


@dataclass
class TrialOutcome:
    """How a trial process ended: its exit status, whether it was pruned, the epochs it reported."""

    returncode: int
    pruned: bool
    epochs: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # the child's `textxfer: error: ...` paragraph, when it printed one


def train_command(recipe_path: str | Path, overrides: list[str]) -> list[str]:
    """The command of a trial: this Python, textxfer's training entry point, the recipe and overrides."""
    return [sys.executable, "-m", "textxfer.train", str(recipe_path), *overrides]


def run_trial(command: list[str], progress: Path, log_file: Path, on_epoch: Callable[[dict], bool]) -> TrialOutcome:
    """Run `command`, its output going to `log_file`; `on_epoch(scores)` for each epoch it reports, and
    stop it when that returns True (pruned). Ctrl-C here stops the child and is raised again."""
    progress.unlink(missing_ok=True)
    env = {**os.environ, PROGRESS_ENV: str(progress), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    epochs: list[dict] = []
    pruned = False
    with log_file.open("w", encoding="utf-8") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            read = 0
            while child.poll() is None or read < _lines(progress):
                for scores in _new_epochs(progress, read):
                    read += 1
                    epochs.append(scores)
                    if not pruned and on_epoch(scores):
                        pruned = True
                        _stop(child)
                if child.poll() is None:
                    time.sleep(POLL_SECONDS)
        except BaseException:
            _stop(child)
            raise
    return TrialOutcome(child.returncode, pruned, epochs, time.perf_counter() - started,
                        None if pruned else _error_paragraph(log_file))


def _lines(path: Path) -> int:
    try:
        return path.read_text(encoding="utf-8").count("\n")
    except OSError:
        return 0


def _new_epochs(path: Path, already: int) -> list[dict]:
    """The complete JSON lines of the progress file after the first `already` ones."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # the last piece may be half-written
    except OSError:
        return []
    return [json.loads(line) for line in lines[already:] if line.strip()]


def _stop(child: subprocess.Popen) -> None:
    """Stop the child's whole process group: politely, then for good."""
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    except ProcessLookupError:
        child.wait()


def _error_paragraph(log_file: Path) -> str | None:
    """The `textxfer: error: ...` message a failed trial printed (the CLI prints one paragraph)."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    marker = "textxfer: error: "
    at = text.rfind(marker)
    return text[at + len(marker):].strip() if at >= 0 else None


def log_tail(log_file: Path, lines: int = 8) -> str:
    """The last lines of a trial's log, for a message."""
    try:
        return "\n".join(log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
