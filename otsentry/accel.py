"""The optional compiled accelerators.

``otsentry._speedups`` (``otsentry/_speedups.c``) runs the record loop of classic pcap files, the
``--workers`` share test, the decoder's commonest case and the SHA-1 name-based UUIDs of
``event.id``; the Python modules that use it keep a pure-Python path that gives the same
results. It is built at install time when a C compiler is at hand and used unless
``OTSENTRY_PURE_PYTHON`` is set to a non-empty value other than ``0``.
"""

from __future__ import annotations

import os
from types import ModuleType


def _pure_python_forced() -> bool:
    return os.environ.get("OTSENTRY_PURE_PYTHON", "") not in ("", "0")


def _load() -> ModuleType | None:
    if _pure_python_forced():
        return None
    try:
        from otsentry import _speedups
    except ImportError:
        return None
    return _speedups


#: the compiled module, or None
SPEEDUPS: ModuleType | None = _load()


def describe() -> str:
    """``compiled`` or ``pure Python`` (and why), for ``--version`` and the stats."""
    if SPEEDUPS is not None:
        return "compiled"
    if _pure_python_forced():
        return "pure Python (OTSENTRY_PURE_PYTHON)"
    return "pure Python (extension not built)"
