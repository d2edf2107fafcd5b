"""Building blocks of the tuple-set aspects: bounded item tables with first/last seen and counts,
address-range sets, and the reading helpers their ``from_data`` share."""

from __future__ import annotations

import calendar
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from otsentry.baseline.aspect import AspectDataError, iso

K = TypeVar("K", bound=tuple[Any, ...])

#: items one table keeps unless configured otherwise; beyond, new items are counted, not kept
DEFAULT_CAP = 20_000


class Seen:
    """When an item was first and last seen (packet time, ns) and how often."""

    __slots__ = ("count", "first", "last")

    def __init__(self, first: int, last: int, count: int = 1) -> None:
        self.first = first
        self.last = last
        self.count = count

    def hit(self, ts: int) -> None:
        """One more occurrence at ``ts``."""
        self.count += 1
        if ts > self.last:
            self.last = ts
        elif ts < self.first:
            self.first = ts

    def as_data(self) -> dict[str, Any]:
        """``first_seen``, ``last_seen`` (ISO) and ``count``; an item never seen (accepted from
        an alert) is ``accepted: true`` with count 0."""
        if self.count == 0:
            return {"accepted": True, "count": 0}
        return {"first_seen": iso(self.first), "last_seen": iso(self.last), "count": self.count}

    @classmethod
    def accepted(cls) -> Seen:
        """An item folded back from an alert (never seen while learning)."""
        return cls(0, 0, 0)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], key: str) -> Seen:
        """Read ``as_data``'s output (``key`` names the place for errors)."""
        if data.get("accepted") is True and not data.get("count"):
            return cls.accepted()
        try:
            first = parse_iso(data.get("first_seen"), "first_seen")
            last = parse_iso(data.get("last_seen"), "last_seen")
        except AspectDataError as exc:
            raise AspectDataError(f"{key}.{exc.key}", exc.problem) from None
        count = data.get("count", 1)
        if type(count) is not int and (not isinstance(count, int) or isinstance(count, bool)):
            raise AspectDataError(f"{key}.count", "must be a non-negative integer")
        if count < 0:
            raise AspectDataError(f"{key}.count", "must be a non-negative integer")
        return cls(first, last, count)


class ItemTable(Generic[K]):
    """Items keyed by a tuple, each with its ``Seen``; at most ``cap`` (new ones beyond are
    counted in ``dropped``, never kept: a baseline keeps what it learned first)."""

    __slots__ = ("cap", "dropped", "items")

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.items: dict[K, Seen] = {}
        self.cap = cap
        self.dropped = 0

    def add(self, key: K, ts: int) -> bool:
        """Count ``key`` at ``ts``; True when it was new (and kept)."""
        seen = self.items.get(key)
        if seen is not None:
            seen.hit(ts)
            return False
        if len(self.items) >= self.cap:
            self.dropped += 1
            return False
        self.items[key] = Seen(ts, ts)
        return True

    def put(self, key: K, seen: Seen) -> None:
        """Keep ``key`` as read from a file (or accepted)."""
        self.items[key] = seen

    def __contains__(self, key: object) -> bool:
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)

    def sorted(self) -> Iterator[tuple[K, Seen]]:
        """Items in key order (keys must be comparable: use "" and -1 rather than None)."""
        return iter(sorted(self.items.items(), key=lambda kv: _order(kv[0])))


def _order(key: Any) -> Any:
    """A sort key tolerant of mixed types inside tuples (ints before strings)."""
    if isinstance(key, tuple):
        return tuple(_order(k) for k in key)
    if isinstance(key, bool):
        return (0, int(key), "")
    if isinstance(key, int | float):
        return (0, key, "")
    return (1, 0, str(key))


# -- address ranges ---------------------------------------------------------------------------
class Ranges:
    """A set of inclusive integer ranges kept merged and sorted (``[(0, 9), (40, 40)]``); at
    most ``cap`` ranges (beyond, the two closest are joined: the set only grows)."""

    __slots__ = ("cap", "hi", "lo")

    def __init__(self, cap: int = 256) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.cap = cap

    def covers(self, lo: int, hi: int) -> bool:
        """Whether ``lo..hi`` lies inside one learned range (adjacent ranges are merged)."""
        i = bisect_right(self.lo, lo) - 1
        return i >= 0 and self.hi[i] >= hi

    def add(self, lo: int, hi: int) -> bool:
        """Add ``lo..hi``; True when something new was covered."""
        if self.covers(lo, hi):
            return False
        pairs = [*zip(self.lo, self.hi, strict=True), (lo, hi)]
        pairs.sort()
        merged: list[list[int]] = []
        for a, b in pairs:
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        while len(merged) > self.cap:
            gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
            i = gaps.index(min(gaps))
            merged[i][1] = merged[i + 1][1]
            del merged[i + 1]
        self.lo = [a for a, _ in merged]
        self.hi = [b for _, b in merged]
        return True

    def pairs(self) -> list[tuple[int, int]]:
        """The ranges, in order."""
        return list(zip(self.lo, self.hi, strict=True))

    def as_data(self) -> list[int | str]:
        """``["0-9", 40]``: single addresses as numbers, ranges as text."""
        return [a if a == b else span(a, b) for a, b in self.pairs()]

    def __len__(self) -> int:
        return len(self.lo)

    def __str__(self) -> str:
        return ", ".join(span(a, b) for a, b in self.pairs()) or "none"

    @classmethod
    def from_data(cls, data: Any, key: str) -> Ranges:
        """Read ``as_data``'s output."""
        out = cls()
        for i, text in enumerate(as_list(data, key)):
            out.add(*parse_span(text, f"{key}[{i}]"))
        return out


def span(lo: int, hi: int) -> str:
    """``"5"`` or ``"500-509"``."""
    return str(lo) if lo == hi else f"{lo}-{hi}"


def parse_span(text: Any, key: str) -> tuple[int, int]:
    """``"500-509"`` → (500, 509); ``"5"`` or 5 → (5, 5)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text, text
    if not isinstance(text, str):
        raise AspectDataError(key, "must be an address or a range like 0-9")
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise AspectDataError(key, f"{text!r} is not an address or a range like 0-9") from None
    if a > b or a < 0:
        raise AspectDataError(key, f"{text!r}: the range must be ascending and non-negative")
    return a, b


# -- reading helpers --------------------------------------------------------------------------
def parse_iso(text: Any, key: str) -> int:
    """``2026-11-22T00:23:23.290152Z`` → ns since the epoch."""
    if not isinstance(text, str):
        raise AspectDataError(key, "must be an ISO time like 2026-01-01T00:00:00.000000Z")
    if len(text) == 27 and text.find(".") == 19 and text[26] == "Z":
        # what the store writes (the general path below gives the same for such text)
        try:
            return iso_seconds(text[:19]) * 1_000_000_000 + int(text[20:26]) * 1000
        except ValueError:
            raise AspectDataError(key, f"{text!r} is not an ISO time") from None
    body = text.removesuffix("Z")
    whole, _, frac = body.partition(".")
    try:
        secs = iso_seconds(whole)
        micros = int((frac + "000000")[:6]) if frac else 0
    except ValueError:
        raise AspectDataError(key, f"{text!r} is not an ISO time") from None
    return secs * 1_000_000_000 + micros * 1000


def iso_seconds(whole: str) -> int:
    """``2026-11-22T00:23:23`` → seconds since the epoch (``ValueError`` when it is not such a
    time); remembered, since a baseline's times share few seconds."""
    secs = _SECONDS.get(whole)
    if secs is None:
        secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[whole] = secs
    return secs


_SECONDS: dict[str, int] = {}


def as_list(data: Any, key: str) -> list[Any]:
    """``data`` if it is a list (None: empty), else an error naming ``key``."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise AspectDataError(key, "must be a list")
    return data


def as_map(data: Any, key: str) -> Mapping[str, Any]:
    """``data`` if it is a mapping (None: empty), else an error naming ``key``."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise AspectDataError(key, "must be a mapping")
    return data


def text_of(data: Mapping[str, Any], name: str, key: str, default: str | None = None) -> str:
    """``data[name]`` as text (numbers are accepted and turned into text)."""
    value = data.get(name, default)
    if type(value) is str:
        return value
    if value is None:
        raise AspectDataError(f"{key}.{name}", "is required")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise AspectDataError(f"{key}.{name}", "must be text")
    return str(value)


def int_of(data: Mapping[str, Any], name: str, key: str, default: int | None = None) -> int:
    """``data[name]`` as an integer."""
    value = data.get(name, default)
    if value is None:
        raise AspectDataError(f"{key}.{name}", "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise AspectDataError(f"{key}.{name}", "must be an integer")
    return value


def texts(values: Iterable[str]) -> list[str]:
    """Sorted, distinct."""
    return sorted(set(values))


def join_limited(values: Iterable[str], limit: int = 5) -> str:
    """``a, b, c and 4 more``."""
    items = list(values)
    if not items:
        return "none"
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
