"""Writing output folders without ever losing a user's file.

Every folder textxfer writes (a run, a merged model, an ensemble, an ONNX export, an adapted model)
goes through `OutputFolder`:

- `check()` refuses, before any work, a location that is a file, the working folder or one of its
  parents, a folder holding the command's inputs, a non-empty folder that textxfer cannot prove it
  wrote, and a finished output of its own unless replacing it was asked for (`overwrite`).
- `with folder:` holds an exclusive lock on the location (a lock file beside it), so a second process
  aimed at the same folder stops at once with the first one's pid.
- `staging()` yields `<folder>.incomplete/`; on success the folder is sealed with a manifest of its
  files (`.textxfer-owned.json`, the proof of ownership) and swapped into place, the replaced output
  kept intact until then; on failure the staging folder is removed. A full disk becomes one clear
  message instead of a traceback.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from ._version import __version__
from .errors import TextxferError
from .fsutil import disk_full_error, folder_bytes, fsync_dir, fsync_tree, is_disk_full, write_json

MANIFEST = ".textxfer-owned.json"  # written last into every folder textxfer publishes
STAGING_MARK = ".textxfer-staging"  # inside a staging folder while textxfer fills it


# --- ownership -------------------------------------------------------------------------------------

def manifest(folder: Path) -> dict | None:
    """The ownership manifest of a folder textxfer published, or None."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None


def _relative_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def foreign_files(folder: Path) -> list[str] | None:
    """Files in a published folder that textxfer did not write (None: the folder has no manifest)."""
    found = manifest(folder)
    if found is None:
        return None
    return sorted(_relative_files(folder) - set(found["files"]) - {MANIFEST})


def _seal(staging: Path, kind: str) -> None:
    files = sorted(_relative_files(staging) - {MANIFEST, STAGING_MARK})
    (staging / STAGING_MARK).unlink(missing_ok=True)
    write_json(staging / MANIFEST, {"kind": kind, "textxfer_version": __version__, "files": files})


# --- where an output may go -----------------------------------------------------------------------

def _within(path: Path, folder: Path) -> bool:
    """True when `path` is `folder` or lies inside it."""
    return path == folder or folder in path.parents


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class OutputFolder:
    """A folder textxfer is about to write: checked, locked, staged, published (see the module notes).

    `setting` names where the user chose the location (`output_dir`, `--output`), for messages;
    `inputs` are the paths the command reads, which the output must never swallow; `kind` is what the
    folder holds (run, merged model, ensemble, ...), recorded in its manifest.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path | None] = (),
                 setting: str = "output_dir", kind: str = "run", overwrite_hint: str = "overwrite=true",
                 workspace_entries: tuple[str, ...] = ()):
        self.path = Path(path)
        # A workspace (`textxfer compare`'s folder) is added to, never replaced: these are the entries it
        # may hold; it is marked with a manifest of its kind when first claimed.
        self.workspace_entries = workspace_entries
        self.overwrite = overwrite
        self.inputs = [Path(p) for p in inputs if p]
        self.setting = setting
        self.kind = kind
        self.overwrite_hint = overwrite_hint
        self._lock: _Lock | None = None

    @property
    def staging_path(self) -> Path:
        return self.path.with_name(self.path.name + ".incomplete")

    def _where(self) -> str:
        return f"`{self.setting}` {self.path}"

    def check(self) -> None:
        """Refuse a location whose use could lose a file; a finished output of textxfer's own is
        replaced only with `overwrite` (and only if it holds nothing textxfer did not write)."""
        path, where = self.path, self._where()
        if not path.name or path.name in (".", ".."):
            raise TextxferError(f"{where} must name a folder of its own, not `{path}`. Give a new folder such as "
                                f"`runs/my-run`.")
        resolved = path.resolve()
        cwd = Path.cwd().resolve()
        if _within(cwd, resolved):
            raise TextxferError(f"{where} is the current folder or one of its parents ({resolved}); textxfer replaces "
                                f"its output folder as a whole, so it would take your files with it. Give a new folder "
                                f"such as `runs/my-run`.")
        for source in self.inputs:
            if source.exists() and _within(source.resolve(), resolved):
                raise TextxferError(f"{where} holds an input of this command ({source}); writing the output there "
                                    f"would replace the folder and the input with it. Give a new folder such as "
                                    f"`runs/my-run`.")
            if source.is_dir() and _within(resolved, source.resolve()):
                raise TextxferError(f"{where} lies inside {source}, an input folder of this command; textxfer does "
                                    f"not write into its inputs. Give a folder outside it, such as `runs/my-run`.")
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise TextxferError(f"{where} is an existing {'link' if path.is_symlink() else 'file'}, not a folder. "
                                f"Give a new folder name, or move that file away.")
        self._check_staging()
        if path.is_dir() and any(path.iterdir()):
            self._check_replaceable()

    def _check_staging(self) -> None:
        staging = self.staging_path
        if staging.is_symlink() or (staging.exists() and not staging.is_dir()):
            raise TextxferError(f"textxfer writes {self._where()} in {staging} first, and that is an existing file. "
                                f"Move it away or choose another `{self.setting}`.")
        if staging.is_dir() and any(staging.iterdir()) and not (staging / STAGING_MARK).exists():
            raise TextxferError(f"textxfer writes {self._where()} in {staging} first, and that folder exists and was "
                                f"not made by textxfer. Move it away or choose another `{self.setting}`.")

    def _check_replaceable(self) -> None:
        if self.workspace_entries:
            return self._check_workspace()
        where, extra = self._where(), foreign_files(self.path)
        if extra is None:
            legacy = (self.path / "textxfer.json").is_file()
            raise TextxferError(
                f"{where} already exists and is not empty"
                + (", and it holds a run from an earlier textxfer version, which recorded no list of its files, so "
                   "textxfer cannot prove every file in it is its own" if legacy else
                   ", and it is not a folder textxfer wrote")
                + f". textxfer never replaces such a folder: choose a new `{self.setting}`, or move the folder away "
                  f"yourself.")
        if extra:
            raise TextxferError(f"{where} is a finished textxfer {manifest(self.path)['kind']}, but it also holds files "
                                f"textxfer did not write ({_listing(extra)}). textxfer will not replace it with them: "
                                f"move those files out, or choose a new `{self.setting}`.")
        if not self.overwrite:
            raise TextxferError(f"{where} already holds a finished textxfer {manifest(self.path)['kind']}. Replace it "
                                f"on purpose with `{self.overwrite_hint}` (it stays intact until the new one is "
                                f"complete), or choose a new `{self.setting}`.")

    def _check_workspace(self) -> None:
        found = manifest(self.path)
        entries = {p.name for p in self.path.iterdir()} - {MANIFEST}
        ours = found is not None and found.get("kind") == self.kind and found.get("workspace")
        # a folder of an earlier textxfer version, before workspaces were marked: only its own entries
        legacy = found is None and "comparison.json" in entries and entries <= set(self.workspace_entries)
        if not (ours or legacy):
            raise TextxferError(f"{self._where()} already exists, is not empty, and is not a textxfer {self.kind} "
                                f"folder; textxfer does not write into it. Choose a new `{self.setting}`.")

    def mark_workspace(self) -> None:
        """Create the workspace folder (if new) and its manifest, so later runs know it as textxfer's."""
        self.path.mkdir(parents=True, exist_ok=True)
        if manifest(self.path) is None:
            write_json(self.path / MANIFEST, {"kind": self.kind, "workspace": True, "textxfer_version": __version__,
                                              "files": []})

    # -- lock ------------------------------------------------------------------------------------------
    def __enter__(self) -> "OutputFolder":
        self.check()
        self._lock = _Lock(self.path, self._where())
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- staging and publishing ------------------------------------------------------------------------
    @contextmanager
    def staging(self, expected_bytes: int = 0) -> Iterator[Path]:
        """Yield an empty staging folder; publish it as the output when the block ends without error."""
        staging = self.staging_path
        self._check_staging()
        if staging.is_dir():  # left by a killed process of ours: we hold the lock, nobody else uses it
            shutil.rmtree(staging)
        try:
            staging.mkdir(parents=True)
            (staging / STAGING_MARK).touch()
            yield staging
            _seal(staging, self.kind)
            fsync_tree(staging)
            self._publish(staging)
        except BaseException as exc:
            written = folder_bytes(staging)
            shutil.rmtree(staging, ignore_errors=True)
            if is_disk_full(exc):
                raise disk_full_error(exc, staging, max(expected_bytes, written), self._where()) from None
            raise

    def _publish(self, staging: Path) -> None:
        final = self.path
        old = None
        if final.exists():
            if final.is_dir() and any(final.iterdir()):
                self._check_replaceable()  # again: files may have been added while the new one was made
            old = final.with_name(f".{final.name}.replaced-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(staging, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# --- the lock -------------------------------------------------------------------------------------

def lock_path(folder: Path) -> Path:
    """The lock file of an output folder: beside it, since the folder itself is replaced."""
    return folder.with_name(f".{folder.name}.lock")


class _Lock:
    """An exclusive advisory lock (fcntl/msvcrt) on a lock file that records its holder."""

    def __init__(self, folder: Path, where: str):
        self.path = lock_path(folder)
        self.where = where
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                holder = _read_holder(fd)
                os.close(fd)
                raise TextxferError(f"Another textxfer process ({holder}) is writing {self.where} right now. Wait "
                                    f"for it to finish, or choose another folder; two runs writing one folder would "
                                    f"mix their files. (If no such process exists any more, the lock went with it: "
                                    f"run again.)")
            try:  # the file may have been removed by its last holder between our open and our lock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting process re-checks the inode
        finally:
            os.close(self.fd)  # closing drops the lock
            self.fd = None


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096).decode() or "{}")
        return (f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: "
                f"`{holder['command']}`")
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid is not recorded yet"
