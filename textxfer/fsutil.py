"""File-system basics: atomic files and JSON, fsync, the cache folder, and one clear message for a full
disk (instead of a traceback) with the partial files removed. Output folders: `textxfer.outputs`."""
from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import TextxferError

CACHE_ENV = "TEXTXFER_CACHE"
DEFAULT_CACHE = Path("~/.cache/textxfer")
MB = 2**20


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """textxfer's cache folder: `cache_dir`, else $TEXTXFER_CACHE, else ~/.cache/textxfer."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(cache_dir).expanduser()


def write_json(path: Path, data) -> None:
    """Write JSON atomically: a temporary file beside the target, renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_tree(folder: Path) -> None:
    """Flush a folder's files (and the folder entries) to disk before a rename publishes it."""
    for file in Path(folder).rglob("*"):
        if file.is_file() and not file.is_symlink():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def folder_bytes(folder: Path) -> int:
    """Total size of the files under `folder` (0 if it does not exist)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file() and not f.is_symlink())


# --- a full disk ----------------------------------------------------------------------------------

def is_disk_full(exc: BaseException) -> bool:
    """True for the errors a full disk (or quota) raises: OSError ENOSPC/EDQUOT, or a library's wrapper of it."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        text = str(exc)
        if "No space left on device" in text or "StorageFull" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def disk_full_error(exc: BaseException, target: Path, needed_bytes: int, what: str) -> TextxferError:
    """One paragraph for a full disk: where, how much is needed and free, and what was cleaned up."""
    written = getattr(exc, "filename", None) or target
    mount = _mount_point(target)
    free = shutil.disk_usage(mount).free
    need = f"it needs about {max(needed_bytes, MB) / MB:.0f} MB and " if needed_bytes else ""
    return TextxferError(f"No space left on the device mounted at {mount} while writing {written} for {what}: "
                         f"{need}{free / MB:.0f} MB are free. The partial files were removed. Free some space, or "
                         f"write to another disk.")


def check_free_space(folder: Path, needed_bytes: int, what: str, fix: str = "") -> None:
    """Refuse up front when the disk that will hold `folder` has less room than `needed_bytes`."""
    mount = _mount_point(folder)
    free = shutil.disk_usage(mount).free
    if free < needed_bytes:
        raise TextxferError(f"Not enough space for {what}: it needs about {needed_bytes / MB:.0f} MB on the device "
                            f"mounted at {mount}, and {free / MB:.0f} MB are free. Free some space or write to another "
                            f"disk{fix}.")


@contextmanager
def atomic_file(path: Path, what: str) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed over it when the block ends; removed on failure,
    with a full disk reported in one paragraph."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")  # never a user's file
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(exc, path, 0, what) from None
        raise
