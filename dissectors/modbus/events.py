"""Modbus records → normalized events: one per transaction (or unmatched half)."""

from __future__ import annotations

from functools import partial
from typing import Any

from otsentry.dissect.support import standalone
from otsentry.model import Conn, Direction, Envelope, Event

from .constants import function_name

PROTOCOL = "modbus"

#: ``event.action`` per function code (exception bit cleared)
ACTIONS: tuple[str, ...] = tuple(
    "modbus-" + function_name(code).replace("_", "-") for code in range(128)
)

#: FC 43/14 objects → asset identity keys
_IDENTITY_OBJECTS = {
    "vendor_name": "vendor",
    "product_code": "product_code",
    "revision": "revision",
    "product_name": "product_name",
    "model_name": "model",
    "vendor_url": "vendor_url",
    "user_application_name": "application",
}
#: function codes whose request and response share keys of different meaning
MERGED_BY_KEY = frozenset((20, 21, 23, 90))
#: function codes whose responses may identify the device
_IDENTITY_FUNCTIONS = frozenset((17, 43))
#: response keys that would overwrite request keys of another meaning in a merged record
_RESPONSE_ONLY = {"data": "response_data", "byte_count": "response_byte_count"}


def identity_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """Device identity carried by a response (FC 43/14 objects, FC 17 server id)."""
    objects = record.get("objects")
    if objects:
        ident = {key: objects[name] for name, key in _IDENTITY_OBJECTS.items() if name in objects}
        return ident or None
    if "server_id" in record:
        ident = {"server_id": record.get("server_id_text") or record["server_id"]}
        if "run_indicator" in record:
            ident["run_indicator"] = record["run_indicator"]
        return ident
    return None


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
    """A request and its response as one event; values of reads come from the response."""
    req_code = req["function_code"]
    if resp["function_code"] == req_code and req_code not in MERGED_BY_KEY and "data" not in resp:
        # the common case: the response adds values (reads) or echoes the request (writes)
        fields = req | resp
    else:
        fields = _merge(req, resp)
    fields["request_frame"] = req_frame
    fields["response_frame"] = resp_frame
    if resp_anomalies:
        req_anomalies += tuple(a for a in resp_anomalies if a not in req_anomalies)
    return Event(
        Envelope(req_ts, conn, PROTOCOL, Direction.TRANSACTION),
        ACTIONS[req_code & 0x7F],
        fields,
        req_anomalies,
        "failure" if "exception_code" in resp else "success",
        resp_ts - req_ts,
        identity_of(resp) if req_code in _IDENTITY_FUNCTIONS else None,
    )


def _merge(req: dict[str, Any], resp: dict[str, Any]) -> dict[str, Any]:
    """Request and response fields where a key means something else on each side."""
    fields = dict(req)
    req_code = req["function_code"]
    for key, value in resp.items():
        if key in ("transaction_id", "unit_id", "function"):
            continue
        if key == "function_code":
            if value != req_code:
                fields["response_function_code"] = value
        elif key == "umas":
            fields["umas"] = {**req.get("umas", {}), **value}
        elif key == "file_records" and key in req and len(req[key]) == len(value):
            # FC 20: the request names the records, the response carries their values
            fields[key] = [{**asked, **got} for asked, got in zip(req[key], value, strict=True)]
        elif key in _RESPONSE_ONLY and key in req and req[key] != value:
            fields[_RESPONSE_ONLY[key]] = value
        else:
            fields[key] = value
    return fields


def half(
    conn: Conn,
    rec: dict[str, Any],
    anomalies: tuple[str, ...],
    ts: int,
    frame: int,
    direction: Direction,
) -> Event:
    """An unanswered request or a response without a request."""
    fields = dict(rec)
    fields["request_frame" if direction is Direction.REQUEST else "response_frame"] = frame
    return Event(
        Envelope(ts, conn, PROTOCOL, direction),
        ACTIONS[rec["function_code"] & 0x7F],
        fields,
        anomalies,
        "failure" if "exception_code" in rec else "unknown",
        None,
        identity_of(rec) if direction is Direction.RESPONSE else None,
    )


#: bytes that are no decodable PDU (and other one-way records), as one event
malformed = partial(standalone, PROTOCOL)
