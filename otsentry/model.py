"""Values that flow through the pipeline: connection identity, events, alerts, assets.

All slotted; all frozen except ``Conn``, ``Envelope`` and ``Event``, which are made once per
flow or several hundred thousand times a second and are not frozen (a frozen dataclass costs
four to five times as much to build): treat them as read-only once emitted. Times are integer
nanoseconds since the epoch (packet time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    """Which side a record describes."""

    REQUEST = "request"
    RESPONSE = "response"
    TRANSACTION = "transaction"  # request and response paired in one record


@dataclass(slots=True, unsafe_hash=True)
class Conn:
    """A flow's identity, shared by every event of the flow (the envelope minus time).

    Read-only once built, compared and hashed by value as if frozen; not frozen because a frozen
    dataclass sets every field through ``object.__setattr__`` and costs four times as much to
    build, and one is built per flow.
    """

    community_id: str
    transport: str  # "tcp" | "udp"
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    client_mac: str | None = None  # "00-1D-9C-AA-BB-01" (ECS form)
    server_mac: str | None = None
    vlan: int | None = None
    inner_vlan: int | None = None
    segment: str = ""
    #: how the client/server roles were decided: "handshake", "port" or "first_sender"
    roles_from: str = "handshake"


@dataclass(slots=True)
class Envelope:
    """What every event starts with: time, flow identity, protocol and direction."""

    ts: int
    conn: Conn
    protocol: str
    direction: Direction = Direction.TRANSACTION


@dataclass(slots=True)
class Event:
    """One normalized protocol record (a transaction, or an unmatched request or response).

    ``action`` is the ECS ``event.action`` (``modbus-read-holding-registers``); ``fields`` is the
    protocol record written under ``otsentry.<protocol>``; ``anomalies`` holds stable anomaly ids
    (``modbus.invalid_length``) seen on this record.
    """

    envelope: Envelope
    action: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    anomalies: tuple[str, ...] = ()
    outcome: str | None = None  # "success" | "failure" | "unknown"
    duration_ns: int | None = None
    #: facts about the server's identity this record revealed (vendor, product, firmware…),
    #: folded into the asset inventory
    identity: Mapping[str, Any] | None = None
    #: the same for the client (an OPC UA client describes itself when it creates a session)
    client_identity: Mapping[str, Any] | None = None


class AlertKind(StrEnum):
    """A rule match or a deviation from the learned baseline."""

    RULE = "rule"
    ANOMALY = "anomaly"


@dataclass(frozen=True, slots=True)
class Technique:
    """An ATT&CK for ICS technique with its tactics."""

    id: str
    name: str
    tactic_ids: tuple[str, ...] = ()
    tactic_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule alert or a baseline anomaly, tied to the events that triggered it."""

    ts: int
    kind: AlertKind
    rule_id: str
    rule_name: str
    rule_version: str
    severity: int  # 21 / 47 / 73 / 99
    risk_score: float
    message: str
    events: tuple[Event, ...]
    techniques: tuple[Technique, ...] = ()
    attack_version: str = ""
    reason: str | None = None
    count: int = 1
    evidence_pcap: str | None = None
    anomaly: Mapping[str, Any] | None = None  # kind, baseline id/version, expected, observed…
    rule_reference: str | None = None
    rule_category: str | None = None
    #: packet time of the last event folded into an aggregated alert (``ts`` is the first's)
    last_ts: int | None = None
    #: the rule's tags (``attack.t0814``), added to the document's ``tags``
    tags: tuple[str, ...] = ()
    #: a correlation rule's group-by values, as (field, value) pairs
    group: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Asset:
    """A host seen on the wire."""

    ip: str
    segment: str
    first_seen: int
    last_seen: int
    mac: str | None = None
    vlan: int | None = None
    #: (transport, port, protocol or "") the host served
    services: tuple[tuple[str, int, str], ...] = ()
    #: protocols it spoke as a client
    client_protocols: tuple[str, ...] = ()
    peers: int = 0
    packets: int = 0
    bytes: int = 0
    #: protocol → what it revealed about the device (vendor, product, firmware…)
    identity: Mapping[str, Any] = field(default_factory=dict)
    #: organisation the MAC's OUI is registered to
    vendor: str | None = None
    #: role (``s7-plc``, ``modbus-client``…) → evidence: ``first_seen`` (ns), ``action``,
    #: ``peer`` and, for S7 clients, the ``connection_type`` that decided it
    roles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: protocols spoken, as server or client
    protocols: tuple[str, ...] = ()
    #: the lowest of the peer addresses (at most ``inventory.MAX_LISTED_PEERS``)
    peer_ips: tuple[str, ...] = ()
