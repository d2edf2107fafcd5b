"""Fixtures of the hostile-capture suite."""

from __future__ import annotations

from pathlib import Path

from otsentry.capture import CaptureError, open_capture
from otsentry.config import Config
from otsentry.pipeline import Pipeline


def run_pipeline(capture: Path, out: Path, config: Config | None = None) -> CaptureError | None:
    """Replay ``capture`` in-process as ``otsentry replay`` does (finishing the run after a
    damaged record); return the capture error, if any. Any other exception escapes."""
    pipeline = Pipeline(config or Config(), out)
    error: CaptureError | None = None
    reader = open_capture(capture)
    try:
        pipeline.run(reader)
    except CaptureError as exc:
        error = exc
    finally:
        reader.close()
        pipeline.finish()
    return error
