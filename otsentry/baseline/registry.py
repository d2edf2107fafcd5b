"""The aspects every segment's baseline is made of, in the order they are written.

To add an aspect: import its class here and append it to ``ASPECTS`` (see
``otsentry.baseline.aspect``).
"""

from __future__ import annotations

from otsentry.baseline.addresses import AddressesAspect
from otsentry.baseline.aspect import Aspect
from otsentry.baseline.assets import AssetsAspect
from otsentry.baseline.functions import FunctionsAspect
from otsentry.baseline.links import LinksAspect
from otsentry.baseline.model_aspect import ModelAspect
from otsentry.baseline.security import SecurityAspect
from otsentry.baseline.timing import TimingAspect
from otsentry.baseline.values import ValuesAspect
from otsentry.baseline.volume import VolumeAspect

#: aspect classes, each with a unique ``name``
ASPECTS: list[type[Aspect]] = [
    AssetsAspect,
    LinksAspect,
    FunctionsAspect,
    AddressesAspect,
    SecurityAspect,
    ValuesAspect,
    TimingAspect,
    VolumeAspect,
    ModelAspect,
]


def aspect_classes() -> dict[str, type[Aspect]]:
    """``name`` → class, for the store and the detector (a duplicate name is a bug)."""
    out: dict[str, type[Aspect]] = {}
    for cls in ASPECTS:
        if not cls.name or cls.name in out:
            raise RuntimeError(f"aspect {cls.__qualname__}: empty or duplicate name {cls.name!r}")
        out[cls.name] = cls
    return out
