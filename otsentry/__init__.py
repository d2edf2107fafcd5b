"""otsentry: a passive OT network security monitoring sensor."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__version__ = "0.1.0"

# dissectors/ and rules/ sit at the top of the source tree. A wheel installs them as
# otsentry/dissectors and otsentry/rules (setup.py maps them); an editable install maps them with
# setuptools' finder. Running straight from a checkout needs the same mapping, done here.
_MAPPED = ("dissectors", "rules")
_HERE = Path(__file__).resolve().parent


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Resolve ``otsentry.dissectors`` / ``otsentry.rules`` to the checkout's top-level folders."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.partition(".")
        if prefix != __name__ or name not in _MAPPED:
            return None
        folder = _HERE.parent / name
        init = folder / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(folder)]
        )


if not all((_HERE / name).is_dir() for name in _MAPPED) and not any(
    isinstance(f, _CheckoutFinder) for f in sys.meta_path
):
    sys.meta_path.append(_CheckoutFinder())
