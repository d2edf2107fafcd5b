"""S7 records → normalized events: one per job/ack pair (or unmatched half), per COTP
connection step, per S7comm-plus PDU."""

from __future__ import annotations

from functools import partial
from typing import Any

from otsentry.dissect.support import standalone
from otsentry.model import Conn, Direction, Envelope, Event

from .constants import FUNCTIONS, PI_SERVICES
from .userdata import identity_of

PROTOCOL = "s7comm"
PLUS_PROTOCOL = "s7comm_plus"

#: ``event.action`` of job / ack_data PDUs by parameter function
FUNCTION_ACTIONS = {code: "s7comm-" + name.replace("_", "-") for code, name in FUNCTIONS.items()}
PI_ACTIONS = {name: "s7comm-" + what.replace("_", "-") for name, what in PI_SERVICES.items()}


def action_of(rec: dict[str, Any]) -> str:
    """``s7comm-read-var``, ``s7comm-plc-stop``, ``s7comm-insert-block``, ``s7comm-read-szl``…"""
    fn = rec.get("function")
    if fn == 0x04 or fn == 0x05:
        return FUNCTION_ACTIONS[fn]
    if rec.get("rosctr") == 7:
        name = rec.get("userdata_subfunction_name")
        return "s7comm-" + name.replace("_", "-") if name else "s7comm-userdata"
    service = rec.get("pi_service")
    if fn == 0x28 and service:
        return PI_ACTIONS.get(service, "s7comm-pi-service")
    if fn is None:
        return "s7comm-" + str(rec.get("rosctr_name", "unknown")).replace("_", "-")
    return FUNCTION_ACTIONS.get(fn, "s7comm-unknown-function")


def _identity(rec: dict[str, Any]) -> dict[str, Any] | None:
    if "szl_records" not in rec:
        return None
    return identity_of(rec)


_USERDATA_KEYS = (
    "userdata_type",
    "userdata_type_name",
    "userdata_group",
    "userdata_group_name",
    "userdata_subfunction",
    "userdata_subfunction_name",
)


#: the keys whose differing answer is kept as ``response_<key>``
_ANSWER_KEYS = frozenset(("userdata_group", "userdata_subfunction"))


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
) -> Event:
    """A job and its ack / ack_data (or a userdata request and response) as one event."""
    fields = req | resp
    fields["rosctr"] = req["rosctr"]
    fields["rosctr_name"] = req["rosctr_name"]
    fields["response_rosctr"] = resp["rosctr"]
    if "userdata_type" in req:
        # a refused request is answered under another group / sub-function: the event keeps
        # what was asked, and the answer's as ``response_userdata_*``
        for key in _USERDATA_KEYS:
            if key in req:
                if key in resp and resp[key] != req[key] and key in _ANSWER_KEYS:
                    fields[f"response_{key}"] = resp[key]
                fields[key] = req[key]
    fields["request_frame"] = req_frame
    fields["response_frame"] = resp_frame
    anomalies = req_anomalies + tuple(a for a in resp_anomalies if a not in req_anomalies)
    failed = resp.get("error_class") or resp.get("userdata_error_code")
    return Event(
        Envelope(req_ts, conn, PROTOCOL, Direction.TRANSACTION),
        action_of(req),
        fields,
        anomalies,
        "failure" if failed else "success",
        resp_ts - req_ts,
        _identity(resp),
    )


def half(
    conn: Conn,
    rec: dict[str, Any],
    anomalies: tuple[str, ...],
    ts: int,
    frame: int,
    direction: Direction,
) -> Event:
    """An unanswered request, a response without request, or a push."""
    fields = dict(rec)
    fields["request_frame" if direction is Direction.REQUEST else "response_frame"] = frame
    outcome = "failure" if rec.get("error_class") else "unknown"
    return Event(
        Envelope(ts, conn, PROTOCOL, direction),
        action_of(rec),
        fields,
        anomalies,
        outcome,
        None,
        _identity(rec) if direction is Direction.RESPONSE else None,
    )


def plus(
    conn: Conn,
    rec: dict[str, Any],
    anomalies: tuple[str, ...],
    ts: int,
    frame: int,
    from_client: bool,
) -> Event:
    """One S7comm-plus PDU (requests and responses are not paired: sequence numbers are per
    direction and integrity-protected sessions hide much of the body)."""
    direction = Direction.REQUEST if from_client else Direction.RESPONSE
    fields = {**rec, "request_frame" if from_client else "response_frame": frame}
    name = rec.get("function_name") or rec.get("opcode_name") or "pdu"
    action = "s7comm-plus-" + str(name).replace("_", "-")
    return Event(Envelope(ts, conn, PLUS_PROTOCOL, direction), action, fields, anomalies, None)


#: bytes that are no decodable PDU (and other one-way records), as one event
malformed = partial(standalone, PROTOCOL)
#: a COTP connection step (request, confirm, disconnect, error)
cotp = malformed
