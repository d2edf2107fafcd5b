"""Events, alerts and assets → Elastic Common Schema documents.

The very same documents go to the local NDJSON files and to Elasticsearch.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from binascii import hexlify
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from otsentry import __version__
from otsentry.accel import SPEEDUPS
from otsentry.assets.identity import device_fields
from otsentry.model import Alert, Asset, Conn, Direction, Envelope, Event

try:  # CPython's own SHA-1: for a name this short, no OpenSSL context to set up per call
    from _sha1 import sha1 as _sha1  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import sha1 as _sha1

ECS_VERSION = "8.17.0"
THREAT_FRAMEWORK = "MITRE ATT&CK for ICS"
_ID_NAMESPACE = uuid.UUID("6a0b7c53-52f4-4b8f-9f38-5d6c4f0e7a11")
_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
#: the clock_seq high nibble → with the RFC 4122 variant bits (10xx)
_VARIANT = {f"{n:x}".encode(): f"{(n & 0x3) | 0x8:x}".encode() for n in range(16)}
#: a SHA-1 hex digest → the groups of a UUID but the version nibble (h[12], skipped)
_UUID_GROUPS = struct.Struct("8s4sx3s1s3s12s").unpack_from
#: ``DocumentIds``' hash and formatting in one compiled call (otsentry/_speedups.c), or None
_UUID5: Callable[[bytes, bytes], bytes] | None = SPEEDUPS.uuid5 if SPEEDUPS is not None else None


_SECONDS: dict[int, str] = {}  # whole seconds already formatted (packet time and wall time)


def iso_time(ts_ns: int) -> str:
    """Nanoseconds since the epoch → ``2023-11-14T22:13:20.010123Z`` (microseconds, UTC)."""
    secs, ns = divmod(ts_ns, 1_000_000_000)
    text = _SECONDS.get(secs)
    if text is None:
        if len(_SECONDS) >= 256:
            _SECONDS.clear()
        text = _SECONDS[secs] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{text}.{ns // 1000:06d}Z"


_NOW: list[Any] = [-1, ""]  # [the millisecond, its text]


def now_iso() -> str:
    """The wall clock as :func:`iso_time` gives it, formatted at most once per millisecond
    (``event.created``: when the sensor made the document)."""
    now = time.time_ns()
    ms = now // 1_000_000
    if ms != _NOW[0]:
        _NOW[0] = ms
        _NOW[1] = iso_time(now)
    text: str = _NOW[1]
    return text


def observer_doc(
    name: str, interface: str | None = None, zone: str | None = None
) -> dict[str, Any]:
    """The ``observer.*`` block describing this sensor."""
    doc: dict[str, Any] = {
        "type": "sensor",
        "vendor": "otsentry",
        "product": "otsentry",
        "version": __version__,
        "name": name,
        "hostname": socket.gethostname(),
    }
    ingress: dict[str, Any] = {}
    if interface:
        ingress["interface"] = {"name": interface}
    if zone:
        ingress["zone"] = zone
    if ingress:
        doc["ingress"] = ingress
    return doc


class DocumentIds:
    """Deterministic ``event.id`` values: the same input replayed gives the same ids, so a
    resend to Elasticsearch is a harmless duplicate rather than a second copy."""

    __slots__ = ("_heads", "_n", "_sensor")

    def __init__(self, sensor: str) -> None:
        self._sensor = sensor
        self._n = 0
        #: kind → the hashed name's start (namespace, sensor and kind), made once per kind
        self._heads: dict[str, bytes] = {}

    def next(self, kind: str, ts: int, flow: str) -> str:
        """A UUID for the next document of this run (a name-based UUID v5, as ``uuid.uuid5``)."""
        return self.next_bytes(kind, ts, flow).decode()

    def next_bytes(self, kind: str, ts: int, flow: str) -> bytes:
        """:meth:`next`, as ASCII bytes (for a line under construction)."""
        self._n += 1
        head = self._heads.get(kind)
        if head is None:
            head = self._heads[kind] = _NAMESPACE_BYTES + f"{self._sensor}|{kind}|".encode()
        tail = f"{flow}|{ts}|{self._n}".encode()
        if _UUID5 is not None:
            return _UUID5(head, tail)  # the same, compiled
        h = hexlify(_sha1(head + tail).digest())
        # version 5 in the time_hi nibble, RFC 4122 variant in the clock_seq high bits
        a, b, c, variant, d, e = _UUID_GROUPS(h)
        return b"".join((a, b"-", b, b"-5", c, b"-", _VARIANT[variant], d, b"-", e))


def _endpoint(ip: str, port: int, mac: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"ip": ip, "port": port}
    if mac:
        doc["mac"] = mac
    return doc


def _network(conn: Conn, protocol: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "transport": conn.transport,
        "protocol": protocol,
        "community_id": conn.community_id,
    }
    if conn.vlan is not None:
        doc["vlan"] = {"id": str(conn.vlan)}
        if conn.inner_vlan is not None:
            doc["inner"] = {"vlan": {"id": str(conn.inner_vlan)}}
    return doc


#: id(conn) → (conn, protocol, observer, value): holding conn and observer keeps their ids
#: from being reused while cached
_FlowCache = dict[int, tuple[Conn, str, Mapping[str, Any], Any]]
_COMMON_CACHE: _FlowCache = {}
#: entries per cache (cleared when full): enough for the flows active at once; each keeps its
#: Conn alive, so 4,096 here and in correlation held ~9 MB more on a 10M-packet capture
_COMMON_CACHE_MAX = 1024


def _per_flow(
    cache: _FlowCache,
    conn: Conn,
    protocol: str,
    observer: Mapping[str, Any],
    build: Callable[[Conn, str, Mapping[str, Any]], Any],
) -> Any:
    """``build(conn, protocol, observer)``, built once per flow. Keyed by identity: hashing a
    Conn costs more than building a document."""
    hit = cache.get(id(conn))
    if hit is not None and hit[0] is conn and hit[1] == protocol and hit[2] is observer:
        return hit[3]
    if len(cache) >= _COMMON_CACHE_MAX:
        cache.clear()
    value = build(conn, protocol, observer)
    cache[id(conn)] = (conn, protocol, observer, value)
    return value


def _common_cached(conn: Conn, protocol: str, observer: Mapping[str, Any]) -> dict[str, Any]:
    """``_common`` for a flow's events, built once per flow (the nested values are shared: the
    documents are read-only once built)."""
    common: dict[str, Any] = _per_flow(_COMMON_CACHE, conn, protocol, observer, _common)
    return common


def _common(conn: Conn, protocol: str, observer: Mapping[str, Any]) -> dict[str, Any]:
    obs = dict(observer)
    if conn.segment:
        obs["ingress"] = {**obs.get("ingress", {}), "zone": conn.segment}
    return {
        "source": _endpoint(conn.client_ip, conn.client_port, conn.client_mac),
        "destination": _endpoint(conn.server_ip, conn.server_port, conn.server_mac),
        "network": _network(conn, protocol),
        "observer": obs,
        "related": {"ip": sorted({conn.client_ip, conn.server_ip})},
        "labels": {"segment": conn.segment},
        "tags": ["ics", protocol, "otsentry"],
    }


def _event_parts(ev: Event, ids: DocumentIds) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``event`` block and the protocol record of an event document."""
    env = ev.envelope
    event: dict[str, Any] = {
        "kind": "event",
        "category": ["network"],
        "type": ["protocol"],
        "action": ev.action,
        "dataset": f"otsentry.{env.protocol}",
        "module": "otsentry",
        "id": ids.next("event", env.ts, env.conn.community_id),
        "created": now_iso(),
    }
    if ev.outcome:
        event["outcome"] = ev.outcome
    if ev.duration_ns is not None:
        event["duration"] = ev.duration_ns
    return event, _record(ev)


def _record(ev: Event) -> dict[str, Any]:
    """The protocol record of an event document: the event's fields, its direction and
    anomalies."""
    record: dict[str, Any] = dict(ev.fields)
    record["direction"] = str(ev.envelope.direction)
    if ev.anomalies:
        record["anomalies"] = list(ev.anomalies)
    return record


def event_doc(ev: Event, observer: Mapping[str, Any], ids: DocumentIds) -> dict[str, Any]:
    """A protocol event (``event.kind: event``)."""
    env = ev.envelope
    event, record = _event_parts(ev, ids)
    doc: dict[str, Any] = {"@timestamp": iso_time(env.ts), "ecs": {"version": ECS_VERSION}}
    doc["event"] = event
    doc.update(_common_cached(env.conn, env.protocol, observer))
    doc["otsentry"] = {env.protocol: record}
    return doc


_FlowLine = tuple[bytes, dict[str, bytes]]


def _flow_line(conn: Conn, protocol: str, observer: Mapping[str, Any]) -> _FlowLine:
    """What a flow's event lines share: the bytes from the end of the ``event`` block to the
    protocol record (``},"source":…,"tags":[…],"otsentry":{"modbus":``) and the protocol's
    ``event`` block starts by action."""
    members = orjson.dumps(_common(conn, protocol, observer))[1:-1]  # members, no braces
    heads = _EVENT_HEADS.get(protocol)
    if heads is None:
        if len(_EVENT_HEADS) >= _COMMON_CACHE_MAX:
            _EVENT_HEADS.clear()
        heads = _EVENT_HEADS[protocol] = {}
    return b"}," + members + b',"otsentry":{' + orjson.dumps(protocol) + b":", heads


def _event_head(heads: dict[str, bytes], action: str, protocol: str) -> bytes:
    """The ``event`` block of a line up to the id's value, for one protocol and action."""
    head = heads.get(action)
    if head is None:
        if len(heads) >= _COMMON_CACHE_MAX:
            heads.clear()
        event = orjson.dumps(
            {
                "kind": "event",
                "category": ["network"],
                "type": ["protocol"],
                "action": action,
                "dataset": f"otsentry.{protocol}",
                "module": "otsentry",
                "id": "",
            },
            default=str,
        )
        head = heads[action] = event[: -len(b'""}')] + b'"'
    return head


#: protocol → action → the ``event`` block of a line up to the id's value
_EVENT_HEADS: dict[str, dict[str, bytes]] = {}
_FLOW_LINES: _FlowCache = {}

_ECS_MEMBER = b'"ecs":' + orjson.dumps({"version": ECS_VERSION})
#: what follows the timestamp's microseconds up to the ``event`` block
_AFTER_TIMESTAMP = b'Z",' + _ECS_MEMBER + b',"event":'
#: 0 → b"000" … 999 → b"999"
_DIGITS3 = [b"%03d" % n for n in range(1000)]
#: whole second → the line's start up to the fraction (``{"@timestamp":"2023-11-14T22:13:20.``)
_LINE_SECONDS: dict[int, bytes] = {}
#: ``","created":"…"`` for the last line: (now_iso()'s text, the member)
_CREATED: tuple[str | None, bytes] = (None, b"")
_DIRECTIONS = {d: b',"direction":' + orjson.dumps(str(d)) for d in Direction}
_OUTCOMES: dict[str, bytes] = {}


def _line_second(secs: int) -> bytes:
    if len(_LINE_SECONDS) >= 256:
        _LINE_SECONDS.clear()
    start = b'{"@timestamp":"' + iso_time(secs * 1_000_000_000)[:-7].encode()
    _LINE_SECONDS[secs] = start
    return start


def _created(text: str) -> bytes:
    """``","created":"…"`` for now_iso()'s text (the same text object for a millisecond)."""
    global _CREATED
    member = b'","created":' + orjson.dumps(text)
    _CREATED = (text, member)  # one swap: a reader never sees a text with another's member
    return member


def _created_now() -> None:
    """Bring ``now_iso()``'s text and its ``created`` member up to the wall clock's
    millisecond (for the compiled line maker, which reads both)."""
    text = now_iso()
    if text is not _CREATED[0]:
        _created(text)


def _outcome(outcome: Any) -> bytes:
    piece = _OUTCOMES.get(outcome) if outcome.__class__ is str else None
    if piece is None:
        piece = b',"outcome":' + orjson.dumps(outcome, default=str)
        if outcome.__class__ is str and len(_OUTCOMES) < 64:
            _OUTCOMES[outcome] = piece
    return piece


def event_line(ev: Event, observer: Mapping[str, Any], ids: DocumentIds) -> bytes:
    """:func:`event_doc` serialised as one NDJSON line, byte for byte what ``orjson.dumps`` of
    the document gives, without building it: what a flow's lines share (connection, observer,
    tags) is serialised once per flow, the ``event`` block's constant start once per action,
    the timestamp's text once per second, and the protocol record as it is, with the
    direction and anomalies appended to its members."""
    env = ev.envelope
    protocol = env.protocol
    conn = env.conn
    ts = env.ts
    hit = _FLOW_LINES.get(id(conn))
    if hit is not None and hit[0] is conn and hit[1] == protocol and hit[2] is observer:
        flow, heads = hit[3]
    else:
        flow, heads = _per_flow(_FLOW_LINES, conn, protocol, observer, _flow_line)
    head = heads.get(ev.action)
    if head is None:
        head = _event_head(heads, ev.action, protocol)
    secs, ns = divmod(ts, 1_000_000_000)
    start = _LINE_SECONDS.get(secs)
    if start is None:
        start = _line_second(secs)
    created, last = now_iso(), _CREATED
    fields = ev.fields
    direction = _DIRECTIONS.get(env.direction)
    if (
        fields.__class__ is dict
        and direction is not None
        and "direction" not in fields
        and "anomalies" not in fields
    ):
        # the record's own members, then direction and anomalies: as the document's copy of
        # the record gets them
        if fields:
            record = orjson.dumps(fields, default=str)[:-1]
        else:
            record, direction = b"{", direction[1:]
        if ev.anomalies:
            direction += b',"anomalies":' + orjson.dumps(ev.anomalies, default=str)
    else:
        record, direction = orjson.dumps(_record(ev), default=str)[:-1], b""
    duration = ev.duration_ns
    return b"".join(
        (
            start,
            _DIGITS3[ns // 1_000_000],  # the microseconds, in two halves
            _DIGITS3[ns // 1000 % 1000],
            _AFTER_TIMESTAMP,
            head,
            ids.next_bytes("event", ts, conn.community_id),
            last[1] if created is last[0] else _created(created),
            _outcome(ev.outcome) if ev.outcome else b"",
            b"" if duration is None else b',"duration":' + orjson.dumps(duration, default=str),
            flow,
            record,
            direction,
            b"}}}\n",
        )
    )


def event_lines() -> Callable[[Event, Mapping[str, Any], DocumentIds], bytes]:
    """:func:`event_line` itself, or with the compiled module a callable that makes the
    commonest event's line from the same cached pieces and hands any other event to it
    (``otsentry/_eventline.c``)."""
    if SPEEDUPS is None:
        return event_line
    return SPEEDUPS.EventLines(  # type: ignore[no-any-return]
        fallback=event_line,
        refresh=_created_now,
        module_dict=globals(),
        now=_NOW,
        flow_lines=_FLOW_LINES,
        line_seconds=_LINE_SECONDS,
        directions=_DIRECTIONS,
        outcomes=_OUTCOMES,
        digits=_DIGITS3,
        after_timestamp=_AFTER_TIMESTAMP,
        dumps=orjson.dumps,
        event_type=Event,
        envelope_type=Envelope,
        conn_type=Conn,
        ids_type=DocumentIds,
    )


def alert_doc(alert: Alert, observer: Mapping[str, Any], ids: DocumentIds) -> dict[str, Any]:
    """An alert (``event.kind: alert``) shaped for Elastic Security's external alerts.

    ``@timestamp`` and ``event.start`` are the trigger's packet time, ``event.end`` the last
    folded event's; the trigger's flow, ``event.action`` and protocol record come along.
    """
    trigger = alert.events[0] if alert.events else None
    protocol = trigger.envelope.protocol if trigger else ""
    flow = trigger.envelope.conn.community_id if trigger else ""
    event: dict[str, Any] = {
        "kind": "alert",
        "category": ["network", "intrusion_detection"],
        "type": ["info"],
        "dataset": "otsentry.alert",
        "module": "otsentry",
        "severity": alert.severity,
        "risk_score": alert.risk_score,
        "id": ids.next("alert", alert.ts, flow),
        "created": now_iso(),
        "start": iso_time(alert.ts),
        "end": iso_time(alert.last_ts if alert.last_ts is not None else alert.ts),
    }
    if trigger is not None:
        event["action"] = trigger.action
    if alert.reason:
        event["reason"] = alert.reason
    rule: dict[str, Any] = {
        "id": alert.rule_id,
        "name": alert.rule_name,
        "version": alert.rule_version,
        "ruleset": "otsentry-ics" if alert.kind == "rule" else "otsentry-anomaly",
    }
    if alert.rule_reference:
        rule["reference"] = alert.rule_reference
    if alert.rule_category:
        rule["category"] = alert.rule_category
    doc: dict[str, Any] = {
        "@timestamp": iso_time(alert.ts),
        "ecs": {"version": ECS_VERSION},
        "message": alert.message,
        "event": event,
        "rule": rule,
    }
    if alert.techniques:
        doc["threat"] = _threat(alert)
    if trigger is not None:
        doc.update(_common(trigger.envelope.conn, protocol, observer))
        record: dict[str, Any] = dict(trigger.fields)
        record["direction"] = str(trigger.envelope.direction)
        if trigger.anomalies:
            record["anomalies"] = list(trigger.anomalies)
        doc["otsentry"] = {protocol: record}
    else:
        doc["observer"] = dict(observer)
        doc["tags"] = ["ics", "otsentry"]
    doc["tags"].extend(tag for tag in alert.tags if tag not in doc["tags"])
    summary: dict[str, Any] = {"kind": str(alert.kind), "count": alert.count}
    if alert.attack_version:
        summary["attack_version"] = alert.attack_version
    if alert.group:
        summary["group"] = dict(alert.group)
    extra: dict[str, Any] = {"alert": summary}
    if alert.anomaly is not None:
        extra["anomaly"] = dict(alert.anomaly)
    if alert.evidence_pcap:
        extra["evidence"] = {"pcap": alert.evidence_pcap}
    doc.setdefault("otsentry", {}).update(extra)
    return doc


def _threat(alert: Alert) -> dict[str, Any]:
    """``threat.*``: ATT&CK for ICS tactics (each once, in the order first met) and techniques."""
    tactics: dict[str, str] = {}
    for tech in alert.techniques:
        names = tech.tactic_names
        for i, tactic_id in enumerate(tech.tactic_ids):
            tactics.setdefault(tactic_id, names[i] if i < len(names) else "")
    return {
        "framework": THREAT_FRAMEWORK,
        "tactic": {"id": list(tactics), "name": list(tactics.values())},
        "technique": {
            "id": [t.id for t in alert.techniques],
            "name": [t.name for t in alert.techniques],
            "reference": [
                f"https://attack.mitre.org/techniques/{t.id.replace('.', '/')}/"
                for t in alert.techniques
            ],
        },
    }


def asset_doc(asset: Asset, observer: Mapping[str, Any], ids: DocumentIds) -> dict[str, Any]:
    """One asset of the passive inventory (``event.kind: state``): the ``otsentry.asset`` block,
    ECS ``device.*`` where the device said what it is, ``related.ip``; ``host.*`` stays unset
    (it describes the machine a sensor runs on)."""
    doc: dict[str, Any] = {
        "@timestamp": iso_time(asset.last_seen),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "state",
            "category": ["host", "network"],
            "type": ["info"],
            "dataset": "otsentry.asset",
            "module": "otsentry",
            "id": ids.next("asset", asset.last_seen, asset.ip),
            "created": now_iso(),
        },
        "related": {"ip": [asset.ip]},
        "labels": {"segment": asset.segment},
        "tags": ["ics", "asset", "otsentry"],
        "observer": dict(observer),
        "otsentry": {
            "asset": {
                "ip": asset.ip,
                "mac": asset.mac,
                "vendor": asset.vendor,
                "segment": asset.segment,
                "vlan": asset.vlan,
                "first_seen": iso_time(asset.first_seen),
                "last_seen": iso_time(asset.last_seen),
                "roles": sorted(asset.roles),
                "role_evidence": _role_evidence(asset.roles),
                "protocols": list(asset.protocols),
                "services": [
                    {"transport": t, "port": p, "protocol": proto or None}
                    for t, p, proto in asset.services
                ],
                "client_protocols": list(asset.client_protocols),
                "peers": {"count": asset.peers, "ip": list(asset.peer_ips)},
                "packets": asset.packets,
                "bytes": asset.bytes,
                "identity": dict(asset.identity),
            }
        },
    }
    device = device_fields(asset.identity, asset.vendor)
    if device:
        doc["device"] = device
    return doc


def stats_doc(
    stats: Mapping[str, Any], observer: Mapping[str, Any], ids: DocumentIds, ts: int
) -> dict[str, Any]:
    """The run's counters as a metric document (``metrics-otsentry.stats-*``): stats.json's
    content under ``otsentry.stats``, at packet time ``ts`` (the last packet seen)."""
    return {
        "@timestamp": iso_time(ts),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "metric",
            "category": ["network"],
            "type": ["info"],
            "dataset": "otsentry.stats",
            "module": "otsentry",
            "id": ids.next("stats", ts, ""),
            "created": now_iso(),
        },
        "tags": ["ics", "otsentry"],
        "observer": dict(observer),
        "otsentry": {"stats": dict(stats)},
    }


def _role_evidence(roles: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Why each role was given: ``[{"role", "first_seen", "action", "peer"[, "connection_type"]}]``."""
    out = []
    for role in sorted(roles):
        evidence = dict(roles[role])
        first = evidence.pop("first_seen", None)
        item: dict[str, Any] = {"role": role}
        if isinstance(first, int):
            item["first_seen"] = iso_time(first)
        item.update(evidence)
        out.append(item)
    return out
