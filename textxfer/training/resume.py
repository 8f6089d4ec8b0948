"""Training checkpoints that are complete or absent, never half-written, and resume exactly.

A checkpoint is `accelerator.save_state` (model, optimizer, scheduler, RNG states of every process)
plus `textxfer_state.json` (epoch, batches done in the epoch, history, best epoch, loss sums) and the
best epoch's trainable weights. It is written into `<output_dir>.checkpoints/.tmp-step-N/` and renamed
to `step-N/` only when everything is on disk, so a kill during saving leaves no folder that looks
complete. The last `train.keep_checkpoints` are kept; a finished run removes them.

`Checkpointer` is what the training loop uses: where a fit resumes from, and saving its position.
SIGINT/SIGTERM become a flag the loop checks after each optimizer step (`StopSignal`): a checkpoint is
saved and the run stops with `TrainingInterrupted`, whose message says how to resume.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import TextxferError
from ..fsutil import disk_full_error, fsync_tree, is_disk_full

STATE_FILE = "textxfer_state.json"
BEST_FILE = "best_trainable.safetensors"
VALIDATION_FILE = "best_validation.safetensors"
_STEP = re.compile(r"step-(\d+)")
_OURS = re.compile(r"(\.tmp-)?step-\d+")  # the only entries textxfer makes in a checkpoint folder


def checkpoint_root(output_dir: str | Path) -> Path:
    """Where a run's checkpoints live: beside the run folder, never inside it."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".checkpoints")


def check_root(output_dir: str | Path) -> None:
    """Refuse, before training, a checkpoint location that holds something textxfer did not put there."""
    root = checkpoint_root(output_dir)
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise TextxferError(f"textxfer keeps the checkpoints of `output_dir` {output_dir} in {root}, and that is an "
                            f"existing file. Move it away or choose another `output_dir`.")
    foreign = sorted(p.name for p in root.iterdir() if not _OURS.fullmatch(p.name)) if root.is_dir() else []
    if foreign:
        raise TextxferError(f"textxfer keeps the checkpoints of `output_dir` {output_dir} in {root}, and that folder "
                            f"holds files textxfer did not write ({', '.join(foreign[:5])}). Move them away or choose "
                            f"another `output_dir`.")


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints, oldest first (temporary folders of an interrupted save are ignored)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP.fullmatch(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str | None, output_dir: str) -> Path | None:
    """`train.resume`: None (start fresh), `auto` (the newest checkpoint, if any) or a checkpoint folder."""
    if resume is None:
        return None
    if resume == "auto":
        found = complete_checkpoints(checkpoint_root(output_dir))
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise TextxferError(
            f"`train.resume={resume}` is not a complete textxfer checkpoint (no {STATE_FILE} in it). Use "
            f"`train.resume=auto` for the newest one in {checkpoint_root(output_dir)}, or a `step-N` folder there."
        )
    return path


def save(accelerator, root: Path, step: int, state: dict, best: dict[str, torch.Tensor] | None,
         validation: tuple[torch.Tensor, torch.Tensor] | None, keep: int) -> Path:
    """Write a checkpoint atomically (every process must call this: each saves its RNG state)."""
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    try:
        _write(accelerator, root, tmp, final, state, best, validation, keep)
    except BaseException as exc:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error(exc, tmp, 0, f"the checkpoint at step {step} (the newest complete one in {root} "
                                  f"is kept: resume from it with `train.resume=auto` once there is room)") from None
        raise
    return final


def _write(accelerator, root: Path, tmp: Path, final: Path, state: dict, best, validation, keep: int) -> None:
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        if best:
            save_file({k: v.contiguous() for k, v in best.items()}, str(tmp / BEST_FILE))
        if validation is not None:
            save_file({"logits": validation[0].contiguous(), "labels": validation[1].contiguous()},
                      str(tmp / VALIDATION_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")  # last: marks completeness
        fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load(accelerator, path: Path) -> tuple[dict, dict[str, torch.Tensor] | None, tuple | None]:
    """Restore model, optimizer, scheduler and RNG states; return (textxfer state, best weights, validation)."""
    accelerator.load_state(str(path))
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    best = load_file(str(path / BEST_FILE)) if (path / BEST_FILE).is_file() else None
    validation = None
    if (path / VALIDATION_FILE).is_file():
        tensors = load_file(str(path / VALIDATION_FILE))
        validation = (tensors["logits"], tensors["labels"])
    return state, best, validation


def remove_all(output_dir: str | Path) -> None:
    """Drop a finished run's checkpoints: only the entries textxfer made, then the folder if that empties it."""
    root = checkpoint_root(output_dir)
    if not root.is_dir() or root.is_symlink():
        return
    for entry in root.iterdir():
        if _OURS.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    try:
        root.rmdir()
    except OSError:  # something else is in it: not ours to remove
        pass


@dataclass
class Position:
    """Where a fit stands: the epoch, batches done in it, optimizer steps, and the epoch's loss so far."""

    epoch: int = 1
    batches_done: int = 0
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0


class Checkpointer:
    """A fit's checkpoints under `<output_dir>.checkpoints/`, for `train.save_every`/`keep_checkpoints`/`resume`."""

    def __init__(self, accelerator, output_dir: str, train_config, log):
        self.accelerator, self.output_dir, self.config, self.log = accelerator, output_dir, train_config, log
        self.root = checkpoint_root(output_dir)

    def resume(self):
        """(Position, FitResult state, best weights, validation outputs) of the checkpoint to resume from,
        or None to start fresh."""
        t = self.config
        path = resolve_resume(t.resume, self.output_dir)
        if path is None:
            if t.resume == "auto":
                self.log.info(f"note: no checkpoint in {self.root} to resume from; starting from the beginning")
            return None
        state, best, validation = load(self.accelerator, path)
        position = Position(state["epoch"], state["batches_done"], state["step"], state["loss_sum"],
                            state["loss_count"])
        self.log.info(f"resuming from {path} (epoch {position.epoch}, {position.batches_done} batches done)")
        return position, state, best, validation

    def save(self, position: Position, result, best: dict | None) -> Path:
        """Save the fit at `position` (every process calls this)."""
        state = {"epoch": position.epoch, "batches_done": position.batches_done, "step": position.step,
                 "loss_sum": position.loss_sum, "loss_count": position.loss_count, **result.state()}
        validation = (None if result.best_validation_logits is None
                      else (result.best_validation_logits, result.best_validation_labels))
        return save(self.accelerator, self.root, position.step, state, best, validation, self.config.keep_checkpoints)


class TrainingInterrupted(TextxferError):
    """SIGINT/SIGTERM during training: a checkpoint was saved; the message says how to resume."""

    def __init__(self, signal_name: str, checkpoint: Path, output_dir: str):
        super().__init__(
            f"training stopped by {signal_name}; a checkpoint of the current step is in {checkpoint}. "
            f"Continue with the same command plus `train.resume=auto` (the run folder {output_dir} is not written "
            f"until training finishes)."
        )
        self.exit_code = 130 if signal_name == "SIGINT" else 143


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each optimizer step (all processes agree)."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.name: str | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.name = signal.Signals(signum).name

    def requested(self) -> bool:
        flag = self.name is not None
        if self.accelerator.num_processes > 1:  # one process may get the signal: stop together
            flag = bool(self.accelerator.reduce(torch.tensor(float(flag), device=self.accelerator.device),
                                                reduction="sum").item())
            if flag and self.name is None:  # another process was signalled
                self.name = "SIGTERM"
        return flag

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
