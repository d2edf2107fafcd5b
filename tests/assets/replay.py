"""Replays a capture through the real pipeline and reads back its asset documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otsentry.capture import CaptureError, merge_frames, open_capture
from otsentry.config import load_config
from otsentry.pipeline import Pipeline


def _fail(exc: CaptureError) -> None:
    raise exc


def replay(pcap: Path, out: Path) -> Pipeline:
    """Run ``pcap`` through a pipeline writing to ``out``; the finished pipeline."""
    pipeline = Pipeline(load_config(None), out)
    reader = open_capture(pcap)
    try:
        pipeline.run(merge_frames([reader], False, _fail))
    finally:
        reader.close()
    pipeline.finish()
    return pipeline


def asset_docs(out: Path) -> dict[str, dict[str, Any]]:
    """The asset documents of a run, by IP address."""
    lines = (out / "assets.ndjson").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    return {doc["otsentry"]["asset"]["ip"]: doc for doc in docs}
