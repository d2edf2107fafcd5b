"""Per-PDU records of a capture, for ``otsentry dissect`` (a forensic dump like ``tshark -T fields``).

Each record is written at the frame in which the PDU's last byte arrived; ``frame`` is the 1-based
number of that packet record in the file, as Wireshark numbers frames.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from otsentry.capture import open_capture
from otsentry.config import Config, DecodeAs
from otsentry.dissect.base import FlowContext
from otsentry.ecs import iso_time
from otsentry.model import Event
from otsentry.stages import configured_registry, decoder_for, flow_table_for

#: keys every record of a protocol carries (null when absent), in this order
BASE_FIELDS: dict[str, tuple[str, ...]] = {
    "modbus": (
        "transaction_id",
        "unit_id",
        "function_code",
        "function",
        "exception_code",
        "address",
        "quantity",
        "values",
        "sub_function",
        "mei_type",
    ),
    "s7comm": (
        "rosctr",
        "pdu_reference",
        "function",
        "item_count",
        "error_class",
        "error_code",
        "userdata_group",
        "userdata_subfunction",
        "szl_id",
    ),
    "s7comm-plus": ("version", "opcode", "function", "sequence"),
    "cotp": ("cotp_type", "cotp_type_name", "src_tsap", "dst_tsap", "connection_type"),
    "opcua": (
        "message_type",
        "secure_channel_id",
        "security_policy_uri",
        "request_id",
        "service_id",
        "service",
        "request_handle",
        "service_result",
    ),
}


def endpoint(ip: str, port: int) -> str:
    """``10.0.0.5:502`` or ``[fe80::1]:502``."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class _Collector:
    """The tracer: turns each PDU into a record and queues it for the current frame."""

    def __init__(self, protocols: Collection[str] | None) -> None:
        self.protocols = protocols
        self.ts = 0
        self.out: list[dict[str, Any]] = []

    def __call__(
        self,
        ctx: FlowContext,
        protocol: str,
        direction: str,
        record: Mapping[str, Any],
        anomalies: tuple[str, ...],
    ) -> None:
        if self.protocols is not None and protocol not in self.protocols:
            return
        conn = ctx.conn
        client = endpoint(conn.client_ip, conn.client_port)
        server = endpoint(conn.server_ip, conn.server_port)
        body: dict[str, Any] = dict.fromkeys(BASE_FIELDS.get(protocol, ()))
        body.update(record)
        body["anomalies"] = list(anomalies)
        self.out.append(
            {
                "frame": ctx.frame,
                "ts": iso_time(self.ts),
                "protocol": protocol,
                "direction": direction,
                "src": client if direction == "request" else server,
                "dst": server if direction == "request" else client,
                protocol: body,
            }
        )


def _ignore(event: Event) -> None:
    """Events are not part of the dump."""


def iter_records(
    path: str | os.PathLike[str],
    protocols: Collection[str] | None = None,
    decode_as: Sequence[DecodeAs] = (),
    config: Config | None = None,
) -> Iterator[dict[str, Any]]:
    """One record per PDU of one capture file, in frame order.

    Raises ``CaptureError`` (file and offset) where the capture is damaged, after yielding every
    record before the damage.
    """
    config = config if config is not None else Config()
    collector = _Collector(protocols)
    registry = configured_registry(config, decode_as)
    table = flow_table_for(config, registry, _ignore, tracer=collector)
    decoder = decoder_for(config)
    out = collector.out
    frame = 0
    ts = 0
    packet = table.fast_packet()
    reader = open_capture(path)
    try:
        for ts, linktype, data in reader:
            frame += 1
            pkt = decoder.decode(linktype, data, ts)
            if pkt is None:
                continue
            table.frame = frame
            collector.ts = ts
            packet(pkt, ts, data)
            if out:
                yield from out
                out.clear()
    finally:
        reader.close()
    table.close_all(ts)
    yield from out
    out.clear()
