"""Rule fixtures (docs/rules.md): flat maps of field → value turned into ``Event`` objects.

Envelope fields go by their rule names (``source.ip``, ``event.action``, ``direction``,
``anomalies``); ``ts`` is seconds; ``otsentry.<protocol>.<key>`` and short names (``unit_id``,
``items.area``) fill the protocol record, dotted names as nested maps. What a fixture leaves out
gets a plain default (client 10.0.0.1, server 10.0.0.2 on the protocol's port, TCP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from otsentry.detect.fields import PROTOCOLS
from otsentry.model import Conn, Direction, Envelope, Event

__all__ = ["BASE_TS", "FixtureError", "fixture_event", "fixture_events", "protocol_of_action"]

#: packet time of a fixture's first event (2026-01-01T00:00:00Z), in nanoseconds
BASE_TS: Final = 1_767_225_600_000_000_000
_SECOND: Final = 1_000_000_000
_PORTS: Final = {"modbus": 502, "s7comm": 102, "s7comm_plus": 102, "opcua": 4840, "network": 0}
_ACTION_PREFIXES: Final = (
    ("s7comm-plus-", "s7comm_plus"),
    ("s7comm-", "s7comm"),
    ("modbus-", "modbus"),
    ("opcua-", "opcua"),
    ("network-", "network"),
)


class FixtureError(ValueError):
    """A fixture that is no event: ``index`` (in a sequence) and ``key`` locate it."""

    def __init__(self, problem: str, key: str | None = None, index: int | None = None) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.problem = problem
        self.key = key
        self.index = index


@dataclass(slots=True)
class _Draft:
    protocol: str | None = None
    action: str = ""
    outcome: str | None = None
    duration: int | None = None
    transport: str = "tcp"
    community_id: str = "1:fixture"
    vlan: int | None = None
    client_ip: str = "10.0.0.1"
    client_port: int = 40000
    client_mac: str | None = None
    server_ip: str = "10.0.0.2"
    server_port: int | None = None
    server_mac: str | None = None
    segment: str = "10.0.0.0/24"
    direction: Direction = Direction.TRANSACTION
    anomalies: tuple[str, ...] = ()
    ts: int | None = None


def protocol_of_action(action: str) -> str | None:
    """The protocol an ``event.action`` belongs to (``s7comm-plc-stop`` → s7comm), if known."""
    for prefix, protocol in _ACTION_PREFIXES:
        if action.startswith(prefix):
            return protocol
    return None


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FixtureError(f"expected a string, got {value!r}", key)
    return value


def _integer(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FixtureError(f"expected an integer, got {value!r}", key)
    return value


def _set_envelope(draft: _Draft, key: str, value: Any) -> bool:
    """Apply an envelope key; False if ``key`` is not one."""
    if key == "event.action":
        draft.action = _text(key, value)
    elif key == "event.outcome":
        draft.outcome = None if value is None else _text(key, value)
    elif key == "event.duration":
        draft.duration = None if value is None else _integer(key, value)
    elif key == "network.protocol":
        protocol = _text(key, value)
        if protocol not in PROTOCOLS:
            raise FixtureError(f"expected one of {', '.join(PROTOCOLS)}, got {value!r}", key)
        draft.protocol = protocol
    elif key == "network.transport":
        draft.transport = _text(key, value)
    elif key == "network.community_id":
        draft.community_id = _text(key, value)
    elif key == "network.vlan.id":
        draft.vlan = None if value is None else _integer(key, value)
    elif key == "source.ip":
        draft.client_ip = _text(key, value)
    elif key == "source.port":
        draft.client_port = _integer(key, value)
    elif key == "source.mac":
        draft.client_mac = None if value is None else _text(key, value)
    elif key == "destination.ip":
        draft.server_ip = _text(key, value)
    elif key == "destination.port":
        draft.server_port = _integer(key, value)
    elif key == "destination.mac":
        draft.server_mac = None if value is None else _text(key, value)
    elif key == "labels.segment":
        draft.segment = _text(key, value)
    elif key == "direction":
        try:
            draft.direction = Direction(_text(key, value))
        except ValueError:
            raise FixtureError(
                f"expected one of {', '.join(d.value for d in Direction)}, got {value!r}", key
            ) from None
    elif key == "anomalies":
        items = value if isinstance(value, list) else [value]
        draft.anomalies = tuple(_text(key, v) for v in items)
    elif key == "ts":
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise FixtureError(f"expected seconds (a number >= 0), got {value!r}", key)
        draft.ts = BASE_TS + round(value * _SECOND)
    else:
        return False
    return True


def _put(record: dict[str, Any], parts: Sequence[str], value: Any, key: str) -> None:
    node = record
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise FixtureError(f"{part!r} is already a value, not a map", key)
        node = child
    if parts[-1] in node and isinstance(node[parts[-1]], dict):
        raise FixtureError(f"{parts[-1]!r} already holds nested keys", key)
    node[parts[-1]] = value


def fixture_event(values: Mapping[str, Any], protocol: str, *, ts: int | None = None) -> Event:
    """The event a fixture map describes, for a rule of ``logsource.protocol`` ``protocol``.

    Under ``any`` the event's protocol is ``network.protocol``, else the one
    ``otsentry.<protocol>.*`` keys or the ``event.action`` prefix name, else ``modbus``.
    A fixture's ``ts`` is seconds after ``BASE_TS``; without one the event is at ``ts`` (ns),
    else at ``BASE_TS``.
    """
    if not isinstance(values, Mapping):
        raise FixtureError(f"expected a map of field: value, got {values!r}")
    draft = _Draft()
    record: dict[str, Any] = {}
    named: str | None = None
    for key, value in values.items():
        key = str(key)
        if _set_envelope(draft, key, value):
            continue
        if key.startswith(("event.", "network.", "source.", "destination.", "labels.")):
            raise FixtureError("unknown envelope field", key)
        parts = key.split(".")
        if parts[0] == "otsentry":
            if len(parts) < 3 or parts[1] not in PROTOCOLS:
                raise FixtureError(
                    f"expected otsentry.<protocol>.<key> with a protocol of: {', '.join(PROTOCOLS)}",
                    key,
                )
            if named is not None and named != parts[1]:
                raise FixtureError(f"an event has one protocol record, already {named}", key)
            named = parts[1]
            parts = parts[2:]
        _put(record, parts, value, key)
    if protocol not in ("any", "network"):
        chosen = draft.protocol or protocol
    else:
        chosen = (
            draft.protocol
            or named
            or protocol_of_action(draft.action)
            or ("network" if protocol == "network" else "modbus")
        )
    if named is not None and named != chosen:
        raise FixtureError(f"the event is {chosen}, not {named}", f"otsentry.{named}")
    server_port = draft.server_port if draft.server_port is not None else _PORTS.get(chosen, 0)
    conn = Conn(
        community_id=draft.community_id,
        transport=draft.transport,
        client_ip=draft.client_ip,
        client_port=draft.client_port,
        server_ip=draft.server_ip,
        server_port=server_port,
        client_mac=draft.client_mac,
        server_mac=draft.server_mac,
        vlan=draft.vlan,
        segment=draft.segment,
    )
    when = draft.ts if draft.ts is not None else (ts if ts is not None else BASE_TS)
    envelope = Envelope(ts=when, conn=conn, protocol=chosen, direction=draft.direction)
    return Event(
        envelope=envelope,
        action=draft.action,
        fields=record,
        anomalies=draft.anomalies,
        outcome=draft.outcome,
        duration_ns=draft.duration,
    )


def fixture_events(fixture: Any, protocol: str) -> list[Event]:
    """A fixture (a map, or a list of maps for a sequence) → its events, 1 s apart unless the
    maps give ``ts`` (seconds, relative to the fixture's start time)."""
    items = fixture if isinstance(fixture, list) else [fixture]
    events: list[Event] = []
    for index, item in enumerate(items):
        try:
            event = fixture_event(item, protocol, ts=BASE_TS + index * _SECOND)
        except FixtureError as exc:
            if not isinstance(fixture, list):
                raise
            raise FixtureError(exc.problem, exc.key, index) from None
        events.append(event)
    return events
