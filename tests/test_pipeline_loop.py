"""``Pipeline.run``'s packet loop: the compiled one (``_speedups.run_frames``) against the Python one.

The same frames give the same events, alerts and counters either way, also when the frames
stop with an error part-way (a broken capture keeps what was counted before the damage) and
when a worker's frame numbers are given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import otsentry.pipeline as pipeline_module
from otsentry import accel
from otsentry.capture import CaptureError, Frame, open_capture
from otsentry.config import Config
from otsentry.pipeline import Pipeline
from tests.conftest import LAB_PCAPS

FAST = accel.SPEEDUPS
needs_fast = pytest.mark.skipif(FAST is None, reason="otsentry._speedups is not built")
CAPTURES = [
    LAB_PCAPS / name
    for name in ("network_attacks_modbus.pcap", "s7comm_attacks.pcap", "opcua_attacks.pcap")
]


def _frames(limit: int | None = None) -> list[Frame]:
    frames: list[Frame] = []
    for path in CAPTURES:
        reader = open_capture(path)
        try:
            frames += reader
        finally:
            reader.close()
    return frames if limit is None else frames[:limit]


def _failing(frames: list[Frame], after: int) -> Iterator[Frame]:
    yield from frames[:after]
    raise CaptureError(str(CAPTURES[0]), 1234, "truncated record")


def _run(
    tmp_path: Path,
    name: str,
    compiled: bool,
    frames: Iterator[Frame],
    numbers: list[int] | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> dict[str, Any]:
    assert monkeypatch is not None
    monkeypatch.setattr(pipeline_module, "SPEEDUPS", FAST if compiled else None)
    out = tmp_path / name
    pipeline = Pipeline(Config(), out)
    error = None
    try:
        pipeline.run(frames, numbers=numbers)
    except CaptureError as exc:
        error = str(exc)
    c = pipeline.counters
    counted = (c.packets, c.bytes, c.first_ts, c.last_ts)
    pipeline.finish()
    docs = {}
    for stream in ("events", "alerts"):
        lines = []
        for line in (out / f"{stream}.ndjson").read_text().splitlines():
            doc = json.loads(line)
            doc["event"].pop("created")
            lines.append(doc)
        docs[stream] = lines
    return {"error": error, "counted": counted, **docs}


@needs_fast
def test_the_compiled_loop_gives_what_the_python_loop_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _frames()
    compiled = _run(tmp_path, "c", True, iter(frames), monkeypatch=monkeypatch)
    python = _run(tmp_path, "p", False, iter(frames), monkeypatch=monkeypatch)
    assert compiled["counted"][0] == len(frames)
    assert len(compiled["events"]) > 100 and compiled["alerts"]
    assert compiled == python


@needs_fast
@pytest.mark.parametrize("after", [0, 1, 777, 1_500])
def test_an_error_part_way_keeps_what_was_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    frames = _frames()
    assert len(frames) > after
    compiled = _run(tmp_path, "c", True, _failing(frames, after), monkeypatch=monkeypatch)
    python = _run(tmp_path, "p", False, _failing(frames, after), monkeypatch=monkeypatch)
    assert compiled["error"] is not None
    assert compiled["counted"][0] == after
    assert compiled["counted"][1] == sum(len(data) for _ts, _lt, data in frames[:after])
    assert compiled == python


@needs_fast
def test_worker_numbers_number_the_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _frames()
    numbers = [7 + 3 * i for i in range(len(frames) - 100)]  # fewer: zip stops there
    compiled = _run(tmp_path, "c", True, iter(frames), numbers, monkeypatch=monkeypatch)
    python = _run(tmp_path, "p", False, iter(frames), numbers, monkeypatch=monkeypatch)
    assert compiled["counted"][0] == len(numbers)
    assert compiled == python


@needs_fast
def test_bad_arguments_are_refused() -> None:
    assert FAST is not None
    with pytest.raises(TypeError):
        FAST.run_frames(iter([]), iter([]), 1, None, None, True, None, None, None, None, [0])
    with pytest.raises(TypeError):  # a frame that is not a (ts, linktype, data) tuple
        FAST.run_frames(
            iter([(1, 1)]), iter([1]), 1, None, None, True, None, None, None, None, [0, 0, -1, -1]
        )
