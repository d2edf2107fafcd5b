"""Readers for ICSNPP's OPC UA binary baselines under ../shared/pcaps.

cisagov/icsnpp-opcua-binary @efca88a keeps, per btest (``tests/baseline/analyzer.*``, see
``../shared/pcaps/icsnpp/SCHEMAS.md``), the Zeek logs its analyzer writes for one trace, passed
through ``zeek-cut -n <link-id columns>``: the random ``*_link_id`` columns *and the header lines*
are gone, timestamps are masked by btest. The column lists below are the plugin's record order
(``scripts/types.zeek``, ``OPCUA_Binary::Info_Log`` and the per-service records) minus the
link-id columns; a reader checks every row has exactly that many cells. Only the leading columns
the comparisons use are named in the per-service logs; the others get placeholder names. The
generic Zeek log reader and ``endpoint`` come from the Modbus helpers
(``tests.dissectors.modbus.zeek_logs``).

What the logs hold, and the quirks a comparison has to know about:

* **opcua_binary.log, one row per request/response pair** (the "summary" layout, #102): the
  script keeps each OPN / MSG / CLO request in a table by request id and writes one row when the
  response with that id arrives, request columns (``req_*``) and response columns (``res_*``)
  side by side, ``total_size`` = both sizes. HEL, ACK and ERR get one row each, written at once.
  A request never answered (CloseSecureChannel; a CreateSessionRequest whose response the parser
  never sees) is written with the ``res_*`` columns unset; a response whose request was never
  seen (a capture starting mid-conversation) with the ``req_*`` columns unset — both when the
  connection ends, so such rows come last. ``read_messages`` splits each row back into its
  request and its response (``IcsnppMessage``); HEL is a request, ACK and ERR responses.
* ``msg_type`` / ``is_final`` of a pair row are the request's; ``sec_channel_id`` is a set
  (``0,3``: the OPN request's 0 and the response's new channel id).
* The service is ``req_identifier`` / ``res_identifier`` (the binary encoding node id, 631
  ReadRequest) with its name in ``*_identifier_str``; the request handle is
  ``req_hdr_request_handle`` / ``res_hdr_request_handle``.
* **Status codes** live in opcua_binary_status_code_detail.log, one row per decoded StatusCode,
  its ``source_str`` telling where it came from (``ResponseHeader`` for a response header's
  ServiceResult, ``Read``, ``Write``, ``Browse``... for operation results). This version logs the
  response header's code of *every* response, Good (0x00000000) included. The row's link to its
  message (``opcua_link_id``) is among the columns the baseline strips, so a status code can only
  be tied to its connection and direction, not to a message.
* **Per-service logs** (opcua_binary_read.log, _browse.log, ...): one row per request
  (``is_orig`` T) and per response (F) of that service, with the direction block
  (``is_orig source_h source_p destination_h destination_p``) after the connection id;
  opcua_binary_close_session.log has request rows only; opcua_binary_browse.log says which
  service in ``browse_service_type`` (BrowseRequest / BrowseNextRequest / ...). The list logs
  (``*_description``, ``*_results``, ``*_user_token``...) have one row per list element, and
  opcua_binary_write.log one row per written node in this version: not used for message counts.
* **Parsing stops** for good after the analyzer loses the byte stream: in
  ``opcua_with-gap.pcap`` the client ACKs the server's CreateSessionResponse segments before they
  are captured, the response is never parsed, and nothing after the CreateSessionRequest of that
  connection is logged (SCHEMAS / MANIFEST: "frame 26 spurious retransmission -> parser stops").
  ``opcua_with-gap_with-handshake.pcap`` adds two later connections, logged in full.
* The analyzer is attached by a DPD signature and port 4840 / 4843, so the tcp/48010 trace is
  logged like the others; a trace starting without HEL/ACK (no-handshake) is logged from its
  first message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.dissectors.modbus.zeek_logs import ZeekLog, endpoint, read_zeek_log

_CONN = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
_DIRECTION = ("is_orig", "source_h", "source_p", "destination_h", "destination_p")

#: opcua_binary.log: OPCUA_Binary::Info_Log without req_opcua_link_id, res_opcua_link_id and
#: status_code_link_id.
OPCUA_BINARY_FIELDS: tuple[str, ...] = (
    *_CONN,
    "msg_type",
    "is_final",
    "total_size",
    "error",
    "reason",
    "version",
    "rcv_buf_size",
    "snd_buf_size",
    "max_msg_size",
    "max_chunk_cnt",
    "endpoint_url",
    "sec_channel_id",
    "sec_policy_uri_len",
    "sec_policy_uri",
    "snd_cert_len",
    "snd_cert",
    "rcv_cert_len",
    "rcv_cert",
    "request_id",
    "req_msg_size",
    "req_seq_number",
    "req_encoding_mask",
    "req_namespace_idx",
    "req_identifier",
    "req_identifier_str",
    "req_hdr_node_id_type",
    "req_hdr_node_id_namespace_idx",
    "req_hdr_node_id_numeric",
    "req_hdr_node_id_string",
    "req_hdr_node_id_guid",
    "req_hdr_node_id_opaque",
    "req_hdr_timestamp",
    "req_hdr_request_handle",
    "req_hdr_return_diag",
    "req_hdr_audit_entry_id",
    "req_hdr_timeout_hint",
    "req_hdr_add_hdr_type_id",
    "req_hdr_add_hdr_enc_mask",
    "res_msg_size",
    "res_seq_number",
    "res_encoding_mask",
    "res_namespace_idx",
    "res_identifier",
    "res_identifier_str",
    "res_hdr_timestamp",
    "res_hdr_request_handle",
    "res_hdr_service_diag_encoding",
    "res_hdr_add_hdr_type_id",
    "res_hdr_add_hdr_enc_mask",
)

#: opcua_binary_status_code_detail.log (OPCUA_Binary::StatusCodeDetail without opcua_link_id).
STATUS_CODE_FIELDS: tuple[str, ...] = (
    *_CONN,
    *_DIRECTION,
    "source",
    "source_str",
    "source_level",
    "status_code",
    "severity",
    "severity_str",
    "sub_code",
    "sub_code_str",
    "structure_changed",
    "semantics_changed",
    "info_type",
    "info_type_str",
    "limit_bits",
    "limit_bits_str",
    "overflow",
    "historian_bits",
    "historian_bits_str",
    "historian_bits_partial",
    "historian_bits_extradata",
    "historian_bits_multivalue",
)

#: Per-service logs counted message by message: log → (request service id, response service
#: id or None when the log has request rows only). opcua_binary_browse.log is keyed by its
#: ``browse_service_type`` instead (``BROWSE_SERVICE_TYPES``).
SERVICE_LOGS: dict[str, tuple[int, int | None]] = {
    "opcua_binary_opensecure_channel.log": (446, 449),
    "opcua_binary_get_endpoints.log": (428, 431),
    "opcua_binary_create_session.log": (461, 464),
    "opcua_binary_activate_session.log": (467, 470),
    "opcua_binary_close_session.log": (473, None),
    "opcua_binary_create_subscription.log": (787, 790),
    "opcua_binary_create_monitored_items.log": (751, 754),
    "opcua_binary_read.log": (631, 634),
}
BROWSE_LOG = "opcua_binary_browse.log"
BROWSE_SERVICE_TYPES: dict[str, int] = {
    "BrowseRequest": 527,
    "BrowseResponse": 530,
    "BrowseNextRequest": 533,
    "BrowseNextResponse": 536,
}

#: Message types logged one row each (not as request/response pairs), with their direction.
SINGLE_TYPES: dict[str, str] = {"HEL": "request", "ACK": "response", "ERR": "response"}


def _port(v: str | None) -> int:
    assert v is not None
    return int(v.split("/")[0])


def _count(v: str | None) -> int | None:
    return None if v is None else int(v)


def read_headerless(path: Path, leading: tuple[str, ...], total: int | None = None) -> ZeekLog:
    """Read a headerless baseline whose first columns are ``leading``; the remaining columns
    (up to ``total``, or as many as the first row has) get placeholder names."""
    if total is None:
        first = next(
            (
                line
                for line in Path(path).read_text(encoding="utf-8").splitlines()
                if line and not line.startswith("#")
            ),
            None,
        )
        total = len(leading) if first is None else len(first.split("\t"))
    if total < len(leading):
        raise ValueError(f"{path}: {total} columns, fewer than the named {leading}")
    names = (*leading, *(f"_{i}" for i in range(len(leading), total)))
    return read_zeek_log(path, fields=names)


@dataclass(frozen=True)
class IcsnppMessage:
    """One message of opcua_binary.log: a HEL / ACK / ERR row, or one side of a pair row."""

    source: str  # "path:line"
    orig: str  # id.orig_h:id.orig_p — the connection originator, the OPC UA client
    resp: str
    direction: str  # request / response
    message_type: str
    service_id: int | None  # req_identifier / res_identifier
    service_name: str | None  # req_identifier_str / res_identifier_str
    request_handle: int | None  # req_hdr_request_handle / res_hdr_request_handle
    request_id: int | None
    secure_channel_ids: tuple[int, ...]  # the row's sec_channel_id set


def read_messages(path: Path) -> list[IcsnppMessage]:
    """opcua_binary.log split into messages (see module doc)."""
    log = read_zeek_log(path, fields=OPCUA_BINARY_FIELDS)
    out = []
    for lineno, row in log.rows:
        msg_type = row["msg_type"]
        assert msg_type is not None
        orig_h, resp_h = row["id.orig_h"], row["id.resp_h"]
        assert orig_h is not None and resp_h is not None
        channels = row.get("sec_channel_id")
        common = {
            "source": f"{path}:{lineno}",
            "orig": endpoint(orig_h, _port(row["id.orig_p"])),
            "resp": endpoint(resp_h, _port(row["id.resp_p"])),
            "message_type": msg_type,
            "request_id": _count(row.get("request_id")),
            "secure_channel_ids": tuple(int(c) for c in channels.split(log.set_separator))
            if channels and channels != log.empty_field
            else (),
        }
        if msg_type in SINGLE_TYPES:
            out.append(
                IcsnppMessage(
                    **common,
                    direction=SINGLE_TYPES[msg_type],
                    service_id=None,
                    service_name=None,
                    request_handle=None,
                )
            )
            continue
        for side, direction in (("req", "request"), ("res", "response")):
            if row.get(f"{side}_msg_size") is None:
                continue
            out.append(
                IcsnppMessage(
                    **common,
                    direction=direction,
                    service_id=_count(row.get(f"{side}_identifier")),
                    service_name=row.get(f"{side}_identifier_str"),
                    request_handle=_count(row.get(f"{side}_hdr_request_handle")),
                )
            )
    return out


@dataclass(frozen=True)
class DirectedRow:
    """The columns every per-service / status row starts with."""

    source: str  # "path:line"
    orig: str
    resp: str
    direction: str  # is_orig T: request (sent by the client), F: response


def _directed(log: ZeekLog, lineno: int, row: dict[str, str | None]) -> dict[str, str]:
    orig_h, resp_h, is_orig = row["id.orig_h"], row["id.resp_h"], row["is_orig"]
    assert orig_h is not None and resp_h is not None and is_orig is not None
    return {
        "source": f"{log.path}:{lineno}",
        "orig": endpoint(orig_h, _port(row["id.orig_p"])),
        "resp": endpoint(resp_h, _port(row["id.resp_p"])),
        "direction": "request" if is_orig == "T" else "response",
    }


@dataclass(frozen=True)
class StatusRow(DirectedRow):
    """An opcua_binary_status_code_detail.log row."""

    source_str: str  # ResponseHeader, Read, Write, Browse, ...
    status_code: int


def read_status_codes(path: Path) -> list[StatusRow]:
    log = read_zeek_log(path, fields=STATUS_CODE_FIELDS)
    out = []
    for lineno, row in log.rows:
        source_str, code = row["source_str"], row["status_code"]
        assert source_str is not None and code is not None
        out.append(
            StatusRow(
                **_directed(log, lineno, row), source_str=source_str, status_code=int(code, 16)
            )
        )
    return out


@dataclass(frozen=True)
class ServiceRow(DirectedRow):
    """A row of a per-service log, reduced to the message it stands for."""

    log: str  # the log's file name
    service_id: int


def read_service_log(path: Path) -> list[ServiceRow]:
    """A per-service log (``SERVICE_LOGS`` or ``BROWSE_LOG``) as one ``ServiceRow`` per row."""
    name = Path(path).name
    leading = (*_CONN, *_DIRECTION)
    if name == BROWSE_LOG:
        leading = (*leading, "browse_service_type")
    log = read_headerless(path, leading)
    out = []
    for lineno, row in log.rows:
        fields = _directed(log, lineno, row)
        if name == BROWSE_LOG:
            kind = row["browse_service_type"]
            assert kind is not None
            service_id = BROWSE_SERVICE_TYPES[kind]
        else:
            request, response = SERVICE_LOGS[name]
            chosen = request if fields["direction"] == "request" else response
            if chosen is None:
                raise ValueError(f"{path}:{lineno}: a response row in a request-only log")
            service_id = chosen
        out.append(ServiceRow(**fields, log=name, service_id=service_id))
    return out


# --- which baseline belongs to which capture -----------------------------------------------------


@dataclass(frozen=True)
class IcsnppReference:
    """ICSNPP's expected logs for one trace (paths relative to ../shared/pcaps)."""

    capture: str
    baseline: str  # the btest baseline folder
    decode_as: tuple[int, ...] = ()  # ports tshark needs -d for

    @property
    def messages_log(self) -> str:
        return f"{self.baseline}/opcua_binary.log"

    @property
    def status_log(self) -> str:
        return f"{self.baseline}/opcua_binary_status_code_detail.log"

    def service_logs(self, root: Path) -> list[str]:
        """The per-service logs of ``SERVICE_LOGS`` / ``BROWSE_LOG`` the baseline holds."""
        names = [*SERVICE_LOGS, BROWSE_LOG]
        return [f"{self.baseline}/{n}" for n in names if (root / self.baseline / n).is_file()]


_TRACES = "icsnpp/icsnpp-opcua-binary/tests/traces/"
_BASE = "icsnpp/icsnpp-opcua-binary/tests/baseline/"

ICSNPP_REFERENCES: dict[str, IcsnppReference] = {
    ref.capture: ref
    for ref in (
        IcsnppReference(
            _TRACES + "open62541_client-server_mainloop.pcap", _BASE + "analyzer.basic"
        ),
        IcsnppReference(_TRACES + "opcua_with-gap.pcap", _BASE + "analyzer.data-gap"),
        IcsnppReference(
            _TRACES + "opcua_with-gap_with-handshake.pcap",
            _BASE + "analyzer.data-gap_with-handshake",
        ),
        IcsnppReference(
            _TRACES + "open62541_client-server_mainloop-no-handshake.pcap",
            _BASE + "analyzer.no-handshake",
        ),
        IcsnppReference(
            _TRACES + "open62541_client-server_mainloop-not-localhost-non-standard-port.pcap",
            _BASE + "analyzer.non-standard-port",
            decode_as=(48010,),
        ),
    )
}
