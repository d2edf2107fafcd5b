"""OPC UA records → normalized events: one per service call (request + response, or an unmatched
half), per handshake, per encrypted message."""

from __future__ import annotations

import re
from functools import lru_cache, partial
from typing import Any

from otsentry.dissect.support import standalone
from otsentry.model import Conn, Direction, Envelope, Event

from .services import client_identity, server_identity
from .statuscodes import status_name

__all__ = ["half", "malformed", "status_name", "transaction"]

PROTOCOL = "opcua"
#: response fields always kept as response_<key> (the request's own stay as they are)
_PREFIXED = ("message_type", "service_id", "service", "sequence_number", "nodes")
#: fields where the response's value is the one that counts
_RESPONSE_WINS = frozenset(("service_result", "service_result_name", "channel"))
_PREFIXED_AS = tuple((key, "response_" + key) for key in _PREFIXED)
_NOT_COMPARED = _RESPONSE_WINS.union(_PREFIXED)

_MESSAGE_ACTIONS = {
    "HEL": "opcua-hello",
    "ACK": "opcua-acknowledge",
    "ERR": "opcua-error",
    "RHE": "opcua-reverse-hello",
    "OPN": "opcua-open-secure-channel",
    "CLO": "opcua-close-secure-channel",
    "MSG": "opcua-message",
}


@lru_cache(maxsize=512)
def service_action(service: str) -> str:
    """``ReadRequest`` → ``opcua-read``, ``ActivateSessionResponse`` → ``opcua-activate-session``."""
    base = re.sub(r"(Request|Response)$", "", service)
    return "opcua-" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", base).lower()


def action_of(rec: dict[str, Any]) -> str:
    """The event action of a message record."""
    service = rec.get("service")
    if service and service not in ("ServiceFault", "Unknown"):
        return service_action(service)
    mtype = rec.get("message_type", "")
    if mtype == "MSG" and rec.get("encrypted"):
        return "opcua-encrypted-message"
    return _MESSAGE_ACTIONS.get(mtype, "opcua-message")


def transaction(
    conn: Conn,
    req: dict[str, Any],
    req_anomalies: tuple[str, ...],
    req_ts: int,
    req_frame: int,
    resp: dict[str, Any],
    resp_anomalies: tuple[str, ...],
    resp_ts: int,
    resp_frame: int,
    security: dict[str, Any] | None = None,
) -> Event:
    """A request and its response (or a HEL and its ACK / ERR) as one event; ``security`` adds
    to the server's facts (the security used on a channel, the first time it is known)."""
    # the response's fields join the request's; what both have and disagree on is kept twice
    # (the response's as response_<key>), except the result and the channel, the response's
    fields = req | resp
    for key, renamed in _PREFIXED_AS:
        if key in resp:
            fields[renamed] = resp[key]
            if key in req:
                fields[key] = req[key]
            else:
                del fields[key]
    for key in req:  # the request's order: a set's would change with the hash seed
        if key in resp and key not in _NOT_COMPARED:
            value = req[key]
            other = resp[key]
            if value != other:
                fields["response_" + key] = other
                fields[key] = value
    fields["request_frame"] = req_frame
    fields["response_frame"] = resp_frame
    anomalies = req_anomalies
    if resp_anomalies:
        anomalies += tuple(a for a in resp_anomalies if a not in req_anomalies)
    result = resp.get("service_result")
    failed = resp.get("message_type") == "ERR" or resp.get("service") == "ServiceFault"
    failed = failed or (isinstance(result, int) and result & 0x80000000 != 0)
    return Event(
        Envelope(req_ts, conn, PROTOCOL, Direction.TRANSACTION),
        action_of(req),
        fields,
        anomalies,
        "failure" if failed else "success",
        resp_ts - req_ts,
        _server_facts(req, resp, security),
        client_identity(req) if "client" in req else None,  # (a CreateSession request's)
    )


def _server_facts(
    req: dict[str, Any], resp: dict[str, Any], security: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """What the server said about itself, the security it offers (GetEndpoints / CreateSession
    endpoints) and, when a secure channel opens, the security used on it."""
    endpoints = resp.get("endpoints")
    if endpoints is None and not security and resp.get("service") != "ReadResponse":
        return None  # the common case: nothing said about the server (see server_identity)
    identity = server_identity(resp)
    if identity is None and endpoints is None and not security:
        return None
    facts: dict[str, Any] = dict(identity or {})
    if isinstance(endpoints, list):
        offered = []
        for endpoint in endpoints:
            if isinstance(endpoint, dict) and endpoint.get("security_policy_uri"):
                policy = str(endpoint["security_policy_uri"]).rsplit("#", 1)[-1]
                mode = f"{policy}/{endpoint.get('security_mode')}"
                if mode not in offered:
                    offered.append(mode)
        if offered:
            facts["security_offered"] = offered
    if security:
        facts.update(security)
    return facts or None


def half(
    conn: Conn,
    rec: dict[str, Any],
    anomalies: tuple[str, ...],
    ts: int,
    frame: int,
    direction: Direction,
    security: dict[str, Any] | None = None,
) -> Event:
    """An unanswered request, a response without request, or an encrypted message."""
    fields = dict(rec)
    fields["request_frame" if direction is Direction.REQUEST else "response_frame"] = frame
    result = rec.get("service_result")
    failed = isinstance(result, int) and result & 0x80000000 != 0
    return Event(
        Envelope(ts, conn, PROTOCOL, direction),
        action_of(rec),
        fields,
        anomalies,
        "failure" if failed else "unknown",
        None,
        _server_facts({}, rec, security) if direction is Direction.RESPONSE else security,
    )


#: bytes that are no decodable PDU (and other one-way records), as one event
malformed = partial(standalone, PROTOCOL)
