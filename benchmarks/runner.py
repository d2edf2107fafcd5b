"""Run a command as a child process and measure it: wall time, CPU time and exact peak RSS.

A small launcher (``python -S``, nothing imported but ``os``, ``sys`` and ``time``) forks the
command and reaps it with ``os.wait4``, whose resource usage is that child's own: ``ru_maxrss``
is its peak resident set (or that of a descendant it waited for, if larger). The launcher sits
in between because Linux carries the peak RSS of the memory image a process replaces at
``execve`` into its own: spawned straight from the benchmark, every tool would report at least
the benchmark's RSS; forked from the launcher, at least the launcher's (a few MB). A command
that runs several processes at once (``--workers``) holds the sum of their memory: with ``tree``
the launcher also samples the proportional set size (PSS, pages shared after fork counted once)
of the whole process tree every 20 ms and reports the largest sum.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "workers.py"

_LAUNCHER = """
import os, sys, time
report, tree, argv = sys.argv[1], sys.argv[2] == "tree", sys.argv[3:]

def tree_rss(root):
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            pass
    return total

began = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
peak = 0
if tree:
    while True:
        done, status, ru = os.wait4(pid, os.WNOHANG)
        if done == pid:
            break
        peak = max(peak, tree_rss(pid))
        time.sleep(0.02)
else:
    _, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - began
with open(report, "w") as fh:
    code = os.waitstatus_to_exitcode(status)
    fh.write(f"{wall} {ru.ru_utime + ru.ru_stime} {ru.ru_maxrss} {code} {peak // 1024}")
"""


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one child process cost."""

    argv: list[str]
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    returncode: int
    #: the largest sum of the proportional set size (PSS: pages shared after fork counted once)
    #: of the process and all its descendants, sampled every 20 ms (``tree=True`` only; 0
    #: otherwise): what a multi-process run holds at once
    tree_rss_mb: float
    stdout: str
    stderr: str


class RunError(RuntimeError):
    """A measured command exited non-zero."""


def pin_prefix(enabled: bool = True) -> list[str]:
    """``taskset -c 0`` when asked, available and core 0 is ours; else nothing."""
    if not enabled or shutil.which("taskset") is None:
        return []
    if 0 not in os.sched_getaffinity(0):
        return []
    return ["taskset", "-c", "0"]


def measure(
    argv: list[str], *, stdout: Path | None = None, check: bool = True, tree: bool = False
) -> Measurement:
    """Run ``argv`` to its end; its stdout goes to ``stdout`` (captured when None). With
    ``tree`` the RSS of the whole process tree is also sampled (a run with worker processes)."""
    with tempfile.TemporaryDirectory(prefix="otsentry-bench-") as tmp:
        out_path = stdout if stdout is not None else Path(tmp, "stdout")
        err_path = Path(tmp, "stderr")
        report = Path(tmp, "report")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(out_path), flags, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, str(err_path), flags, 0o644),
        ]
        mode = "tree" if tree else "one"
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(report), mode, *argv]
        pid = os.posix_spawn(sys.executable, launcher, os.environ, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        text = out_path.read_text(errors="replace") if stdout is None else ""
        errors = err_path.read_text(errors="replace")
        if os.waitstatus_to_exitcode(status) != 0 or not report.exists():
            raise RunError(f"launcher failed for {' '.join(argv)}:\n{errors.strip()}")
        wall, cpu, maxrss_kib, code, tree_kib = report.read_text().split()
    result = Measurement(
        argv=argv,
        seconds=float(wall),
        cpu_seconds=float(cpu),
        peak_rss_mb=int(maxrss_kib) / 1024,
        returncode=int(code),
        tree_rss_mb=int(tree_kib) / 1024,
        stdout=text,
        stderr=errors,
    )
    if check and result.returncode != 0:
        raise RunError(f"{' '.join(argv)} exited {result.returncode}:\n{errors.strip()}")
    return result


def worker(
    mode: str, file: Path, *, limit: int | None = None, pin: bool = False
) -> tuple[Measurement, dict[str, Any]]:
    """Run one ``workers.py`` mode; return the measurement and the worker's JSON report."""
    argv = [*pin_prefix(pin), sys.executable, str(WORKERS), mode, str(file)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    run = measure(argv)
    lines = run.stdout.strip().splitlines()
    if not lines:
        raise RunError(f"{' '.join(argv)} printed no report:\n{run.stderr.strip()}")
    report: dict[str, Any] = json.loads(lines[-1])
    return run, report
