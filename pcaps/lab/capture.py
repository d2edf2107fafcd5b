"""The SPAN port: tcpdump on the plant's bridge, inside the switch namespace."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.plant import BRIDGE, LabError, Plant


@dataclass(frozen=True)
class CaptureStats:
    """What tcpdump reported when it stopped."""

    captured: int
    dropped: int


class Tcpdump:
    """tcpdump -i <bridge> -U -s 0 -w FILE, started ready and stopped flushed."""

    def __init__(self, plant: Plant, path: Path) -> None:
        if shutil.which("tcpdump") is None:
            raise LabError("needs tcpdump (apt-get install tcpdump)")
        self.plant = plant
        self.path = path
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._lines.append(line.rstrip())
            if "listening on" in line:
                self._ready.set()

    def start(self, timeout: float = 10.0) -> None:
        """Start tcpdump and return once it listens on the bridge."""
        argv = ["tcpdump", "-i", BRIDGE, "-U", "-s", "0", "-n", "-Z", "root"]
        argv += ["--time-stamp-precision=micro", "-w", str(self.path)]
        self._proc = subprocess.Popen(
            self.plant.exec_argv(self.plant.switch, argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise LabError("tcpdump did not start: " + " | ".join(self._lines))

    def stop(self, settle: float = 0.5) -> CaptureStats:
        """Let the last frames arrive, stop tcpdump with SIGINT and return its counters."""
        if self._proc is None:
            raise LabError("tcpdump was not started")
        time.sleep(settle)
        self._proc.send_signal(signal.SIGINT)
        try:
            rc = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise LabError("tcpdump did not stop on SIGINT") from None
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._proc = None
        text = "\n".join(self._lines)
        captured = re.search(r"(\d+) packets? captured", text)
        dropped = re.search(r"(\d+) packets? dropped by kernel", text)
        if rc != 0 or captured is None or dropped is None:
            raise LabError(f"tcpdump failed (exit {rc}): {text}")
        stats = CaptureStats(int(captured.group(1)), int(dropped.group(1)))
        if stats.dropped:
            raise LabError(f"tcpdump: kernel dropped {stats.dropped} packets")
        return stats

    def kill(self) -> None:
        """Stop tcpdump at once (error and interrupt paths)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None
