"""Shared test helpers: where the public captures and the lab captures live."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.model import Alert, Event
from otsentry.pipeline import Pipeline

# baseline files parsed by the tests (and the otsentry commands they run) are cached in a
# directory of the test run's own, never in the user's ~/.cache
os.environ.setdefault("OTSENTRY_CACHE_DIR", tempfile.mkdtemp(prefix="otsentry-test-cache-"))

ROOT = Path(__file__).resolve().parents[1]
LAB_PCAPS = ROOT / "pcaps"
SHARED_PCAPS = ROOT.parent / "shared" / "pcaps"


def run_otsentry(
    *args: str | Path, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m otsentry ARGS`` in a child process, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "otsentry", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def shared_pcaps() -> list[Path]:
    """Every public capture under ../shared/pcaps (empty when the folder is absent)."""
    if not SHARED_PCAPS.is_dir():
        return []
    return sorted(
        p for p in SHARED_PCAPS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng")
    )


def lab_pcaps() -> list[Path]:
    """The project's own captures."""
    return sorted(LAB_PCAPS.glob("*.pcap"))


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path to tshark, or skip."""
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared/pcaps, or skip."""
    if not SHARED_PCAPS.is_dir():
        pytest.skip("../shared/pcaps is absent (public captures are not part of a clone)")
    return SHARED_PCAPS


def capture_path(capture: str, request: pytest.FixtureRequest) -> Path:
    """The file behind a ``lab/NAME`` or ``shared/REL`` capture id of a parametrised test; skips
    when ../shared/pcaps or the file is absent."""
    kind, _, rel = capture.partition("/")
    base: Path = request.getfixturevalue("shared_dir") if kind == "shared" else LAB_PCAPS
    path = base / rel
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def replay_events(
    path: Path, out: Path | None = None, config: Config | None = None, **pipeline_kw: Any
) -> tuple[list[Event], dict[str, Any]]:
    """Replay a capture through the whole pipeline: every event (protocol and network) it hands
    its detection hooks, in order, and the run's stats. ``out`` defaults to a temporary
    directory."""
    seen: list[Event] = []

    def hook(event: Event) -> tuple[Alert, ...]:
        seen.append(event)
        return ()

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline(config or Config(), out or Path(tmp), **pipeline_kw)
        pipeline.event_hooks.append(hook)
        with open_capture(path) as reader:
            pipeline.run(reader)
        stats = pipeline.finish()
    return seen, stats
