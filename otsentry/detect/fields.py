"""Field accessors: a field name of docs/rules.md → a function reading it from an ``Event``.

Envelope fields go by their ECS names (``source.ip``, ``event.action``), plus ``direction`` and
``anomalies``; ``otsentry.<protocol>.<key>`` reads the protocol record of events of that protocol;
any other name is a key of the event's own protocol record, dotted for nested values
(``items.area``). Where a path crosses a list, the values of every element are collected, and a
rule matches a list if any element matches. An absent value is ``MISSING`` (never ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from otsentry.model import Event

__all__ = [
    "CONN_ATTRIBUTES",
    "ENVELOPE_FIELDS",
    "ENVELOPE_PREFIXES",
    "FLOW_FIELDS",
    "MISSING",
    "PROTOCOLS",
    "Accessor",
    "FieldError",
    "accessor",
    "record_path",
]

#: protocols an event (``network.protocol``) or ``otsentry.<protocol>.*`` may name
PROTOCOLS: Final = ("modbus", "s7comm", "s7comm_plus", "opcua", "network")


class _Missing:
    """The value of a field the event does not have."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

Accessor = Callable[[Event], Any]


class FieldError(ValueError):
    """A field name no event can have (``event.nope``, ``otsentry.dnp3.x``)."""


def _opt(value: Any) -> Any:
    return MISSING if value is None else value


#: envelope fields by their names in rules
ENVELOPE_FIELDS: Final[Mapping[str, Accessor]] = {
    "event.action": lambda e: e.action,
    "event.outcome": lambda e: _opt(e.outcome),
    "event.duration": lambda e: _opt(e.duration_ns),
    "network.protocol": lambda e: e.envelope.protocol,
    "network.transport": lambda e: e.envelope.conn.transport,
    "network.community_id": lambda e: e.envelope.conn.community_id,
    "network.vlan.id": lambda e: _opt(e.envelope.conn.vlan),
    "source.ip": lambda e: e.envelope.conn.client_ip,
    "source.port": lambda e: e.envelope.conn.client_port,
    "source.mac": lambda e: _opt(e.envelope.conn.client_mac),
    "destination.ip": lambda e: e.envelope.conn.server_ip,
    "destination.port": lambda e: e.envelope.conn.server_port,
    "destination.mac": lambda e: _opt(e.envelope.conn.server_mac),
    "labels.segment": lambda e: e.envelope.conn.segment or MISSING,
    "direction": lambda e: e.envelope.direction,
    "anomalies": lambda e: e.anomalies or MISSING,
}

#: the envelope fields that are an attribute of the flow's ``Conn`` as they are (their readers
#: above give MISSING where the attribute is None)
CONN_ATTRIBUTES: Final[Mapping[str, str]] = {
    "network.transport": "transport",
    "network.community_id": "community_id",
    "network.vlan.id": "vlan",
    "source.ip": "client_ip",
    "source.port": "client_port",
    "source.mac": "client_mac",
    "destination.ip": "server_ip",
    "destination.port": "server_port",
    "destination.mac": "server_mac",
}

#: envelope fields read from the flow's ``Conn``: the same for every event of a flow
FLOW_FIELDS: Final = frozenset(
    (
        "network.transport",
        "network.community_id",
        "network.vlan.id",
        "source.ip",
        "source.port",
        "source.mac",
        "destination.ip",
        "destination.port",
        "destination.mac",
        "labels.segment",
    )
)

#: names starting with these are envelope fields (and must be one of ``ENVELOPE_FIELDS``)
ENVELOPE_PREFIXES: Final = ("event.", "network.", "source.", "destination.", "labels.")


def record_path(name: str) -> tuple[str | None, tuple[str, ...]]:
    """For a protocol-record field: (protocol or None for the event's own, key path)."""
    if name.startswith("otsentry."):
        _, protocol, rest = name.split(".", 2) if name.count(".") >= 2 else (name, "", "")
        if protocol not in PROTOCOLS or not rest:
            raise FieldError(
                f"unknown field {name!r}: expected otsentry.<protocol>.<key> with a protocol "
                f"of: {', '.join(PROTOCOLS)}"
            )
        return protocol, tuple(rest.split("."))
    if name in ENVELOPE_FIELDS:
        raise FieldError(f"{name!r} is an envelope field")
    if name.startswith(ENVELOPE_PREFIXES):
        raise FieldError(f"unknown field {name!r} (envelope fields: {', '.join(ENVELOPE_FIELDS)})")
    return None, tuple(name.split("."))


def _walk(value: Any, parts: tuple[str, ...]) -> Any:
    """Follow ``parts`` from ``value``; through lists, collect from every element."""
    for i, part in enumerate(parts):
        if isinstance(value, Mapping):
            value = value.get(part, MISSING)
            if value is MISSING or value is None:
                return MISSING
        elif isinstance(value, list | tuple):
            rest = parts[i:]
            out: list[Any] = []
            for item in value:
                got = _walk(item, rest)
                if got is MISSING:
                    continue
                if isinstance(got, list | tuple):
                    out.extend(got)
                else:
                    out.append(got)
            return out if out else MISSING
        else:
            return MISSING
    return value


def accessor(name: str) -> Accessor:
    """The reader of field ``name`` (FieldError if no event can have it)."""
    envelope = ENVELOPE_FIELDS.get(name)
    if envelope is not None:
        return envelope
    protocol, parts = record_path(name)
    if protocol is None and len(parts) == 1:
        key = parts[0]

        def own_key(e: Event) -> Any:
            value = e.fields.get(key, MISSING)
            return MISSING if value is None else value

        return own_key
    if protocol is None:

        def own_path(e: Event) -> Any:
            return _walk(e.fields, parts)

        return own_path

    def other(e: Event) -> Any:
        if e.envelope.protocol != protocol:
            return MISSING
        return _walk(e.fields, parts)

    return other
