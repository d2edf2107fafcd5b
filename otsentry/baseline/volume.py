"""Traffic volume per link (``volume`` aspect).

A link is (client, server, server port). Packet time is cut into windows of ``window`` seconds
(2 s by default, aligned on multiples of the window so the same input gives the same windows),
and per link and window two measures are counted: **requests** (protocol events other than bare
responses) and **flows** (``network-flow-start``). Bytes come only with ``network-flow-end``, so
they are measured per flow as **bytes per second**: the flow's bytes over its duration, or over
one window when it was shorter (a short burst counts as one window's worth).

Learning keeps per link and measure the minimum, maximum and mean over *interior* windows only:
a window counts when the link also had traffic in the window before and the window after, so
the partial windows where a session starts or ends never set a minimum. Bytes per second are
learned over every flow, with the seconds of flow behind them.

Detection (``volume_change``, T0814 by default):
- a window's count above 2 x the learned maximum + a slack (20 requests, 5 flows) is reported
  as soon as it is passed (a flood is seen inside its first window);
- an interior window below half the learned minimum less the slack is reported when it closes
  (a fall to zero is the timing aspect's ``channel_silent``);
- a flow whose bytes per second exceed 2 x the learned maximum + 2 000 B/s, at its end.
A link and measure learned from fewer than ``min_windows`` (5) interior windows — or, for bytes,
fewer than ``min_windows`` windows' worth of flow time — is never checked (written with
``checked: false``). One report per link, measure and direction per detector run.

Bounded: ``max_links`` (4 096) links seen in two windows plus 1 024 seen once (``TieredTable``).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any, Self

from otsentry.baseline.aspect import (
    AnomalyKind,
    Aspect,
    AspectContext,
    AspectDataError,
    Deviation,
    ReportedOnce,
    iso,
)
from otsentry.baseline.items import parse_iso
from otsentry.baseline.tiered import TieredTable
from otsentry.model import Direction, Event

__all__ = ["Measure", "VolumeAspect"]

Link = tuple[str, str, int]

NS = 1_000_000_000
WINDOW = 2.0
MIN_WINDOWS = 5
MAX_LINKS = 4_096
SLACK = {"requests": 20.0, "flows": 5.0, "bytes_per_second": 2_000.0}
MEASURES = ("requests", "flows")
FLOW_END = "network-flow-end"
_REQUESTS, _FLOWS = 0, 1


def number(value: float) -> int | float:
    """``value`` as written to the file: rounded to 3 decimals, an integer when it is one
    (``42``, ``10368.391``). Reading it back with ``float`` and writing it again gives the same
    text."""
    r = round(float(value), 3)
    return int(r) if r.is_integer() else r


class Measure:
    """Minimum, maximum and mean of one measure of one link, and the bounds checked."""

    __slots__ = ("high", "low", "max", "min", "n", "name", "total")

    def __init__(self, name: str) -> None:
        self.name = name
        self.n = 0
        self.min = self.max = self.total = 0.0
        self.high = self.low = 0.0

    def add(self, value: float, weight: int = 1) -> None:
        """One interior window (or, for bytes, a flow of ``weight`` windows)."""
        if self.n == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.n += weight
        self.total += value * weight

    def settle(self, min_windows: int) -> None:
        """The checked bounds (0 = not checked), from the minimum and maximum as the file
        holds them (rounded), so a baseline read back gives the same bounds."""
        slack = SLACK[self.name]
        self.min, self.max = float(number(self.min)), float(number(self.max))
        if self.n < min_windows:
            self.high = self.low = 0.0
            return
        self.high = round(2 * self.max + slack, 3)
        self.low = round(max(0.0, self.min / 2 - slack), 3)

    @property
    def checked(self) -> bool:
        """Whether enough windows were learned for a check."""
        return self.high > 0

    def to_data(self) -> dict[str, Any]:
        """Plain data."""
        out: dict[str, Any] = {
            "windows": self.n,
            "min": number(self.min),
            "max": number(self.max),
            "mean": number(self.total / self.n) if self.n else 0,
            "checked": self.checked,
        }
        if self.checked:
            out["high"] = number(self.high)
            out["low"] = number(self.low)
        return out

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any], where: str) -> Measure:
        """Rebuild from ``to_data``'s output."""
        m = cls(name)
        try:
            m.n = int(data.get("windows", 0))
            m.min, m.max = float(data.get("min", 0)), float(data.get("max", 0))
            m.total = float(data.get("mean", 0)) * m.n
            if data.get("checked"):
                m.high, m.low = float(data["high"]), float(data.get("low", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise AspectDataError(where, f"bad measure: {exc}") from None
        if m.n < 0 or m.min > m.max or (data.get("checked") and m.high <= 0):
            raise AspectDataError(where, "windows, min/max or high out of order")
        return m


class _LinkState:
    """A link's open window (learning and detection)."""

    __slots__ = ("counts", "first", "last", "prev_busy", "window")

    def __init__(self, window: int, ts: int) -> None:
        self.window = window
        self.counts = [0, 0]
        self.prev_busy = False  # the window before the open one had traffic
        self.first = self.last = ts


class _LinkModel:
    """What was learned of one link."""

    __slots__ = ("bytes", "first", "last", "measures")

    def __init__(self) -> None:
        self.measures = [Measure("requests"), Measure("flows")]
        self.bytes = Measure("bytes_per_second")
        self.first = self.last = 0


def _label(link: Link) -> str:
    client, server, port = link
    return f"{client} to {server}:{port}"


def _ip(text: str) -> tuple[int, int, str]:
    try:
        a = ip_address(text)
    except ValueError:
        return (9, 0, text)
    return (a.version, int(a), text)


class VolumeAspect(Aspect):
    """Learns requests and flows per link and window and bytes per second per flow; reports
    ``volume_change``.

    Options (``baseline.volume``): ``window`` (2 s), ``min_windows`` (5), ``max_links``
    (4 096).
    """

    name = "volume"
    protocols = None

    def __init__(self, context: AspectContext | None = None) -> None:
        super().__init__(context)
        opts = self.context.options
        self.window = float(opts.get("window", WINDOW))
        self.min_windows = int(opts.get("min_windows", MIN_WINDOWS))
        self.max_links = int(opts.get("max_links", MAX_LINKS))
        self._window_ns = int(self.window * NS)
        self._states: TieredTable[Link, _LinkState] = TieredTable(
            self.max_links, self.max_links // 4
        )
        self.links: dict[Link, _LinkModel] = {}
        self._reported = ReportedOnce(16_384)
        self._learning = True
        self.deviations = 0
        self.loaded_dropped = 0

    # -- shared -----------------------------------------------------------------------------
    def _measure_of(self, event: Event) -> int:
        """Which count ``event`` adds to: requests, flows, or -1."""
        env = event.envelope
        if env.protocol == "network":
            return _FLOWS if event.action == "network-flow-start" else -1
        return -1 if env.direction is Direction.RESPONSE else _REQUESTS

    def _advance(
        self, link: Link, ts: int
    ) -> tuple[_LinkState, tuple[tuple[list[int], bool], ...]]:
        """The link's state with its window moved to ``ts``; the closed window's counts and
        whether it was interior."""
        w = ts // self._window_ns
        states = self._states
        state = states.main.get(link)
        if state is None:
            state = states.touch(link, lambda: _LinkState(w, ts))
        else:  # what touch does for a link in the main tier, without making a maker
            states.main.move_to_end(link)
        closed: tuple[tuple[list[int], bool], ...] = ()
        if w > state.window:
            interior = state.prev_busy and w == state.window + 1
            closed = ((state.counts, interior),)
            state.prev_busy = w == state.window + 1
            state.window = w
            state.counts = [0, 0]
        if ts > state.last:
            state.last = ts
        return state, closed

    # -- learning ---------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        env = event.envelope
        conn = env.conn
        link = (conn.client_ip, conn.server_ip, conn.server_port)
        if event.action == "network-flow-end":
            self._learn_bytes(link, event)
            return
        measure = self._measure_of(event)
        if measure < 0:
            return
        state, closed = self._advance(link, env.ts)
        for counts, interior in closed:
            if interior:
                model = self._model(link)
                for m, c in zip(model.measures, counts, strict=True):
                    m.add(c)
        state.counts[measure] += 1

    def _model(self, link: Link) -> _LinkModel:
        model = self.links.get(link)
        if model is None:
            model = self.links[link] = _LinkModel()
            state = self._states.get(link)
            if state is not None:
                model.first = state.first
        return model

    def _rate(self, event: Event) -> tuple[float, int] | None:
        f = event.fields
        try:
            nbytes = int(f.get("bytes_to_server", 0)) + int(f.get("bytes_to_client", 0))
            duration = float(f.get("duration", 0.0))
        except (TypeError, ValueError):
            return None
        seconds = max(duration, self.window)
        return nbytes / seconds, max(1, int(seconds / self.window))

    def _learn_bytes(self, link: Link, event: Event) -> None:
        rate = self._rate(event)
        if rate is None:
            return
        model = self._model(link)
        model.bytes.add(rate[0], rate[1])
        model.last = max(model.last, event.envelope.ts)
        if not model.first:
            model.first = event.envelope.ts

    def end_learning(self, ts: int) -> None:
        for link, state in self._states.items():
            if link in self.links:
                model = self.links[link]
                model.first = model.first or state.first
                model.last = max(model.last, state.last)
        self._settle()

    def _settle(self) -> None:
        for model in self.links.values():
            for m in model.measures:
                m.settle(self.min_windows)
            model.bytes.settle(self.min_windows)

    def to_data(self) -> dict[str, Any]:
        if self._learning:  # a baseline read back keeps its bounds as written
            self._settle()
        rows = []
        for link in sorted(self.links, key=lambda k: (_ip(k[0]), _ip(k[1]), k[2])):
            model = self.links[link]
            client, server, port = link
            row: dict[str, Any] = {
                "client": client,
                "server": server,
                "port": port,
                "label": _label(link),
            }
            for m in model.measures:
                row[m.name] = m.to_data()
            row["bytes_per_second"] = model.bytes.to_data()
            row["first_seen"] = iso(model.first)
            row["last_seen"] = iso(model.last)
            rows.append(row)
        return {
            "window": float(self.window),
            "min_windows": self.min_windows,
            "dropped": self._states.dropped + self._states.evicted + self.loaded_dropped,
            "links": rows,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        aspect = cls(context)
        try:
            aspect.window = float(data.get("window", WINDOW))
            aspect.min_windows = int(data.get("min_windows", MIN_WINDOWS))
            aspect.loaded_dropped = int(data.get("dropped", 0))
        except (TypeError, ValueError) as exc:
            raise AspectDataError("", f"bad settings: {exc}") from None
        if aspect.window <= 0:
            raise AspectDataError("window", "must be positive")
        aspect._window_ns = int(aspect.window * NS)
        rows = data.get("links") or []
        if not isinstance(rows, list):
            raise AspectDataError("links", "not a list")
        for i, row in enumerate(rows):
            where = f"links[{i}]"
            if not isinstance(row, Mapping):
                raise AspectDataError(where, "not a mapping")
            try:
                link = (str(row["client"]), str(row["server"]), int(row["port"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise AspectDataError(where, f"bad link: {exc}") from None
            model = _LinkModel()
            model.measures = [
                Measure.from_data(name, row.get(name) or {}, f"{where}.{name}") for name in MEASURES
            ]
            model.bytes = Measure.from_data(
                "bytes_per_second", row.get("bytes_per_second") or {}, f"{where}.bytes_per_second"
            )
            model.first = parse_iso(row.get("first_seen"), f"{where}.first_seen")
            model.last = parse_iso(row.get("last_seen"), f"{where}.last_seen")
            aspect.links[link] = model
        aspect._learning = False
        return aspect

    # -- detection --------------------------------------------------------------------------
    def check(self, event: Event) -> list[Deviation]:
        env = event.envelope
        conn = env.conn
        link = (conn.client_ip, conn.server_ip, conn.server_port)
        model = self.links.get(link)
        if model is None:
            return []
        if self._learning:  # checked right after learning, without a file in between
            self._settle()
            self._learning = False
            self._states = TieredTable(self.max_links, self.max_links // 4)
        # which count the event adds to (``_measure_of``)
        if env.protocol == "network":
            if event.action != "network-flow-start":
                return self._check_bytes(link, model, event) if event.action == FLOW_END else []
            measure = _FLOWS
        elif env.direction is Direction.RESPONSE:
            return []
        else:
            measure = _REQUESTS
        ts = env.ts
        states = self._states
        state = states.main.get(link)
        closed: tuple[tuple[list[int], bool], ...] = ()
        if state is not None and ts // self._window_ns <= state.window:
            # ``_advance``'s common case: a busy link, its window still open
            states.main.move_to_end(link)
            if ts > state.last:
                state.last = ts
        else:
            state, closed = self._advance(link, ts)
        out: list[Deviation] = []
        for counts, interior in closed:
            if not interior:
                continue
            for m, c in zip(model.measures, counts, strict=True):
                if m.checked and c < m.low:
                    dev = self._deviation(link, m, c, "low", event)
                    if dev is not None:
                        out.append(dev)
        counts = state.counts
        count = counts[measure] = counts[measure] + 1
        m = model.measures[measure]
        if count > m.high and m.checked:
            dev = self._deviation(link, m, count, "high", event)
            if dev is not None:
                out.append(dev)
        return out

    def _check_bytes(self, link: Link, model: _LinkModel, event: Event) -> list[Deviation]:
        m = model.bytes
        rate = self._rate(event)
        if not m.checked or rate is None or rate[0] <= m.high:
            return []
        dev = self._deviation(link, m, rate[0], "high", event)
        return [dev] if dev is not None else []

    def _deviation(
        self, link: Link, m: Measure, value: float, side: str, event: Event
    ) -> Deviation | None:
        if not self._reported.first((link, m.name, side)):
            return None
        self.deviations += 1
        per = "per flow" if m.name == "bytes_per_second" else f"per {self.window:g} s window"
        unit = "bytes/s" if m.name == "bytes_per_second" else m.name
        bound = m.high if side == "high" else m.low
        mean = m.total / m.n if m.n else 0.0
        reason = (
            f"{_label(link)} carried {m.min:,.0f}-{m.max:,.0f} {unit} {per} "
            f"(mean {mean:,.1f}, {m.n:,} windows); now {value:,.0f} "
            f"({'above' if side == 'high' else 'below'} {bound:,.0f})"
        )
        client, server, port = link
        return Deviation(
            kind=AnomalyKind.VOLUME_CHANGE,
            aspect=self.name,
            item={
                "client": client,
                "server": server,
                "port": port,
                "measure": m.name,
                "side": side,
                "value": round(value, 3),
            },
            reason=reason,
            expected={"min": m.min, "max": m.max, "low": m.low, "high": m.high, "windows": m.n},
            observed={"measure": m.name, "value": round(value, 3), "side": side},
            level="medium" if side == "high" else "low",
            event=event,
            hosts=(client, server),
        )

    def accept(self, item: Mapping[str, Any]) -> bool:
        try:
            link = (str(item["client"]), str(item["server"]), int(item["port"]))
            name, value = str(item["measure"]), float(item["value"])
        except (KeyError, TypeError, ValueError):
            return False
        model = self.links.get(link)
        if model is None:
            return False
        if name == "bytes_per_second":
            m = model.bytes
        elif name in MEASURES:
            m = model.measures[MEASURES.index(name)]
        else:
            return False
        m.max = max(m.max, value)
        m.min = min(m.min, value)
        m.settle(self.min_windows)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "links": len(self.links),
            "tracked": len(self._states),
            "dropped": self._states.dropped + self._states.evicted,
            "deviations": self.deviations,
        }
