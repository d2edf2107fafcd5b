"""A cache of parsed baseline files, keyed by the content hash of the YAML text.

Reading a large baseline's YAML costs far more than reading the same data back in Python's
``marshal`` format, and a sensor reads the same files at every start. So the data a file
parses to is kept in ``$OTSENTRY_CACHE_DIR`` (default ``$XDG_CACHE_HOME/otsentry/baselines``,
else ``~/.cache/otsentry/baselines``; an empty ``OTSENTRY_CACHE_DIR`` turns the cache off) under
the SHA-256 of the file's bytes. The YAML stays the only source of truth: an edited file has
another hash and is parsed again; nothing of the cache sits beside the baseline files or needs
committing. An entry carries the digest of its own payload and anything unreadable, damaged
or unexpected counts as a miss; failing to write one (a read-only home) is silent. At most
``MAX_ENTRIES`` entries are kept: writing one more removes the least recently written.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sys
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_ENTRIES", "cache_dir", "get", "put"]

#: entries kept at most (old versions of edited files would otherwise pile up)
MAX_ENTRIES: Final = 512

#: changes whenever what a file parses to could change (the reader, PyYAML's resolution)
_TAG: Final = b"otsentry-baseline-data 1 " + sys.version.split()[0].encode() + b"\n"
_ENV: Final = "OTSENTRY_CACHE_DIR"


def cache_dir() -> Path | None:
    """Where entries go (None: the cache is off)."""
    configured = os.environ.get(_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "otsentry" / "baselines"


def _entry(digest: str) -> Path | None:
    directory = cache_dir()
    return None if directory is None else directory / f"{digest}.marshal"


def get(digest: str) -> tuple[bool, Any]:
    """``(True, data)`` for a file whose bytes have SHA-256 ``digest`` when cached, else
    ``(False, None)``."""
    path = _entry(digest)
    if path is None:
        return False, None
    try:
        blob = path.read_bytes()
    except OSError:
        return False, None
    head = len(_TAG) + 32
    if blob[: len(_TAG)] != _TAG or hashlib.sha256(blob[head:]).digest() != blob[len(_TAG) : head]:
        return False, None
    try:
        return True, marshal.loads(blob[head:])
    except (EOFError, ValueError, TypeError):
        return False, None


def put(digest: str, data: Any) -> None:
    """Keep ``data`` (plain data: dict, list, str, numbers, bool, None) for ``digest``."""
    path = _entry(digest)
    if path is None:
        return
    try:
        payload = marshal.dumps(data)
    except ValueError:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(_TAG + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return
    _prune(path.parent, MAX_ENTRIES)


def _prune(directory: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently written entries."""
    with contextlib.suppress(OSError):
        found = [(p.stat().st_mtime_ns, p) for p in directory.glob("*.marshal")]
        if len(found) <= keep:
            return
        found.sort()
        for _, old in found[: len(found) - keep]:
            with contextlib.suppress(OSError):
                old.unlink()
