"""Baselines learned from the lab's normal captures, and replays of captures against them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otsentry.baseline import store
from otsentry.baseline.detector import Detector
from otsentry.baseline.learner import Learner
from otsentry.baseline.run import detect, feed, source_names
from otsentry.baseline.segment import SegmentBaseline, Sufficiency
from otsentry.model import Event
from tests.conftest import LAB_PCAPS

NORMAL = tuple(
    LAB_PCAPS / n for n in ("modbus_normal.pcap", "s7comm_normal.pcap", "opcua_normal.pcap")
)
SEGMENT = "10.10.30.0/24"

if not all(p.exists() for p in NORMAL):
    pytest.skip("lab captures missing", allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def _load_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The parsed-baseline cache of these tests: a directory of their own, not the user's."""
    directory = tmp_path_factory.mktemp("baseline-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTSENTRY_CACHE_DIR", str(directory))
        yield directory


def learn(
    paths: tuple[Path, ...] = NORMAL, sufficiency: Sufficiency | None = None
) -> list[SegmentBaseline]:
    """Baselines learned from ``paths``."""
    learner = Learner(sufficiency)
    learner.sources = source_names(paths)
    feed(list(paths), learner)
    return learner.finish()


@pytest.fixture(scope="session")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the baseline of the lab's normal Modbus, S7 and OPC UA captures."""
    directory = tmp_path_factory.mktemp("baselines")
    store.save_all(learn(), directory)
    return directory


def replay(
    capture: str | Path, directory: Path, out: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Replay a capture against the baselines in ``directory`` (no rules): the anomaly alert
    documents written to alerts.ndjson, and the run's stats."""
    path = capture if isinstance(capture, Path) else LAB_PCAPS / capture
    detector = Detector(store.load_dir(directory))
    stats = detect([path], detector, out)
    docs = [json.loads(line) for line in (out / "alerts.ndjson").open()]
    return [d for d in docs if d["rule"]["ruleset"] == "otsentry-anomaly"], stats


def by_rule(docs: list[dict[str, Any]], rule_id: str) -> list[dict[str, Any]]:
    """The alerts of one rule id."""
    return [d for d in docs if d["rule"]["id"] == rule_id]


def events_of(*captures: str) -> list[Event]:
    """Every protocol and network event of lab captures, in replay order."""
    found: list[Event] = []

    def hook(event: Event) -> tuple[()]:
        found.append(event)
        return ()

    feed([LAB_PCAPS / c for c in captures], hook)
    return found


@pytest.fixture(scope="session")
def normal_events() -> list[Event]:
    """The events of the three normal captures."""
    return events_of(*(p.name for p in NORMAL))
