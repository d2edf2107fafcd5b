"""MAC address → the organisation its OUI is registered to.

The registry is read from text files, never held in memory: a lookup takes a batch of addresses
and makes one pass over the files for the prefixes it has not seen yet (assets are written a few
times per run, so a pass of a few tens of milliseconds is cheaper than tens of megabytes of
dictionaries held for the whole run). What was found stays in a small bounded cache.

Sources, in order of preference (the first that knows a prefix names it; a longer registered
block beats a shorter one):

- the IEEE registry bundled with ``netaddr`` (MA-L ``oui.txt`` and the 36-bit IAB ``iab.txt``),
  read from the installed package's files without importing it;
- Wireshark's ``manuf`` file where tshark is installed, which adds the MA-M (28-bit) and MA-S
  (36-bit) blocks the IEEE lists as "IEEE Registration Authority" in MA-L.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

WIRESHARK_MANUF = Path("/usr/share/wireshark/manuf")
_CACHE_SIZE = 3 * 4096  # prefixes remembered between lookups, found or not (3 per MAC)
_HEX = frozenset("0123456789ABCDEF")


class Format(StrEnum):
    """Layouts of a registry file."""

    IEEE_MAL = "ieee-mal"  # ``001B1B     (base 16)\t\tSiemens AG,``
    IEEE_IAB = "ieee-iab"  # ``00-50-C2 (hex) …`` then ``0D7000-0D7FFF (base 16) Avant …``
    WIRESHARK = "wireshark"  # ``00:1B:1B\tSiemens\tSiemens AG,`` and ``00:50:C2:0D:70:00/36\t…``


@dataclass(frozen=True, slots=True)
class Source:
    """One registry file and its layout."""

    path: Path
    format: Format


def default_sources() -> list[Source]:
    """The registries installed on this machine, best first (none when neither is there)."""
    sources: list[Source] = []
    spec = importlib.util.find_spec("netaddr")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "eui"
        for name, fmt in (("iab.txt", Format.IEEE_IAB), ("oui.txt", Format.IEEE_MAL)):
            if (folder / name).is_file():
                sources.append(Source(folder / name, fmt))
    if WIRESHARK_MANUF.is_file():
        sources.append(Source(WIRESHARK_MANUF, Format.WIRESHARK))
    return sources


def mac_digits(mac: str) -> str | None:
    """``00-1b-1b-3f-30-06`` (or with ``:`` / ``.``) → ``001B1B3F3006``; None when it is not a
    globally unique unicast address (locally administered, group, all zeros) or not a MAC."""
    digits = mac.upper().replace("-", "").replace(":", "").replace(".", "")
    if len(digits) != 12 or not _HEX.issuperset(digits):
        return None
    first = int(digits[:2], 16)
    if first & 0x03 or digits == "000000000000":  # group bit, locally administered bit
        return None
    return digits


def _is_registry(org: str) -> bool:
    return org.lower().startswith("ieee registration authority")


def _clean(org: str) -> str:
    return " ".join(org.split()).rstrip(",").strip()


def _scan_ieee_mal(path: Path, wanted: set[str]) -> Iterator[tuple[str, str]]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line[6:16] == "     (base" and line[:6] in wanted:
                yield line[:6], _clean(line.partition(")")[2])


def _scan_ieee_iab(path: Path, wanted: set[str]) -> Iterator[tuple[str, str]]:
    oui = ""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if "(hex)" in line:
                oui = line[:8].replace("-", "")
            elif "(base 16)" in line and line[6:7] == "-":
                key = oui + line[:3]  # a 36-bit block: the OUI and the top 12 bits of the rest
                if key in wanted:
                    yield key, _clean(line.partition(")")[2])


def _scan_wireshark(path: Path, wanted: set[str]) -> Iterator[tuple[str, str]]:
    # every entry starts with its OUI: lines of other OUIs are passed over before any splitting
    starts: set[str] = set()
    for key in wanted:
        for sep in (":", "-"):
            text = sep.join((key[:2], key[2:4], key[4:6]))
            starts.update((text, text.lower()))
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line[:8] not in starts:
                continue
            fields = line.rstrip("\n").split("\t")
            prefix, _, bits = fields[0].partition("/")
            digits = prefix.replace(":", "").replace("-", "").upper()
            key = digits[: int(bits) // 4] if bits else digits[:6]
            if key in wanted and len(fields) >= 2:
                yield key, _clean(fields[2] if len(fields) > 2 and fields[2] else fields[1])


_SCANNERS = {
    Format.IEEE_MAL: _scan_ieee_mal,
    Format.IEEE_IAB: _scan_ieee_iab,
    Format.WIRESHARK: _scan_wireshark,
}


class OuiRegistry:
    """Vendor names for MAC addresses, from registry files read on demand."""

    def __init__(self, sources: Sequence[Source] | None = None) -> None:
        self.sources = list(default_sources() if sources is None else sources)
        #: prefix (6, 7 or 9 hex digits) → organisation, or None when registered to nobody
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self.passes = 0  # passes over the registry files so far

    def vendors(self, macs: Iterable[str]) -> dict[str, str | None]:
        """The registered organisation of each address (None: unknown, local or group)."""
        digits = {mac: mac_digits(mac) for mac in set(macs)}
        missing = {d for d in digits.values() if d is not None and not self._known(d)}
        if missing:
            self._load(missing)
        return {mac: self._resolve(d) if d else None for mac, d in digits.items()}

    def vendor(self, mac: str) -> str | None:
        """The registered organisation of one address."""
        return self.vendors((mac,))[mac]

    def _known(self, digits: str) -> bool:
        cache = self._cache
        if digits[:6] not in cache:
            return False
        # only an OUI the IEEE holds itself is split into MA-M / MA-S / IAB blocks
        org = cache[digits[:6]]
        return (org is not None and not _is_registry(org)) or (
            digits[:9] in cache and digits[:7] in cache
        )

    def _resolve(self, digits: str) -> str | None:
        # the longest registered block wins: MA-S / IAB (36 bits), MA-M (28), MA-L (24)
        for size in (9, 7, 6):
            found = self._cache.get(digits[:size])
            if found is not None:
                return found
        return None

    def _load(self, missing: set[str]) -> None:
        wanted = {d[:size] for d in missing for size in (9, 7, 6)}
        found: dict[str, str] = {}
        for source in self.sources:
            try:
                for key, org in _SCANNERS[source.format](source.path, wanted - found.keys()):
                    found.setdefault(key, org)
            except OSError:
                continue
        self.passes += 1
        for key in sorted(wanted):
            self._cache[key] = found.get(key)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)


_DEFAULT: OuiRegistry | None = None


def default_registry() -> OuiRegistry:
    """The process-wide registry over :func:`default_sources`."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = OuiRegistry()
    return _DEFAULT
