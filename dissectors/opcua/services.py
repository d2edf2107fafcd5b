"""OPC UA service bodies (Part 4 services, Part 6 encoding) → field records. Standard library
only.

:func:`decode_body` reads one whole message body — what follows the sequence header of an OPN /
MSG / CLO message, put back together from its chunks — into a record dict and returns the
anomaly ids found. The body is an encodeable object: the NodeId of its binary encoding (e.g.
``i=631`` ReadRequest_Encoding_DefaultBinary), then the request or response header, then the
service's fields. ``end`` may run past the body (a Sign-only chunk's signature and padding when
the caller does not know their length): bytes after the decoded structure are not looked at.

* Every service of :data:`SERVICE_NAMES` gets ``service_id``, ``service`` (Wireshark's name),
  ``is_response`` and its header: ``request_handle``, ``timestamp``; requests ``timeout_hint``
  (and ``audit_entry_id``, ``return_diagnostics`` when set), responses ``service_result`` and
  ``service_result_name`` (and ``service_diagnostics`` when present). The request header's
  authentication token is a session secret: it is read over, never recorded.
* The services a SOC cares about have their fields decoded (see ``_DECODERS``); any other has
  ``body_decoded: False``. A type id that is not a known service encoding gives ``service``
  "Unknown" (with ``service_id`` when it is numeric in namespace 0, else ``type_id``) and
  ``opcua.unknown_service``.
* A body that does not decode as its type says (truncated, a bad length, an unknown NodeId
  encoding, limits exceeded) gives ``opcua.decode_error`` with a short ``decode_error`` reason;
  the fields read before the fault are kept, a list only when it was read whole.
* Passwords are never recorded, encrypted or not: of a UserNameIdentityToken only the policy id,
  the user name and whether the password is encrypted (``password_encrypted``, and the
  algorithm) are kept. Nonces, signatures and the session's authentication token are skipped;
  certificates are kept as SHA-1 thumbprints (hex), as the transport records them.

Caps: lists at most :data:`LIST_CAP` entries (``*_count`` gives the real number), at most
:data:`~binary.VALUE_CAP` values and target node ids listed per message, strings at 256
characters, arrays at 10,000 elements, nesting at 16 (see :mod:`.binary`); ``truncated: True``
when a cap left something out. Arbitrary bytes never raise.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import sha1
from struct import Struct
from typing import Any

from .binary import _I32, _NODEID_SIZES, _U32, MAX_ARRAY, DecodeError, Reader, Record, ticks_to_iso
from .statuscodes import status_name

Anomalies = tuple[str, ...]

DECODE_ERROR = "opcua.decode_error"
UNKNOWN_SERVICE = "opcua.unknown_service"

LIST_CAP = 64  # entries kept in any list of a record

#: binary encoding NodeId (namespace 0) of each service message → its name, as Wireshark shows
#: it. From the OPC Foundation's NodeIds.csv (``<Name>_Encoding_DefaultBinary``); TestStack and
#: TestStackEx (410-419) left NodeIds.csv after 1.02, Wireshark still names them.
SERVICE_NAMES: dict[int, str] = {
    397: "ServiceFault",
    410: "TestStackRequest",
    413: "TestStackResponse",
    416: "TestStackExRequest",
    419: "TestStackExResponse",
    422: "FindServersRequest",
    425: "FindServersResponse",
    428: "GetEndpointsRequest",
    431: "GetEndpointsResponse",
    437: "RegisterServerRequest",
    440: "RegisterServerResponse",
    446: "OpenSecureChannelRequest",
    449: "OpenSecureChannelResponse",
    452: "CloseSecureChannelRequest",
    455: "CloseSecureChannelResponse",
    461: "CreateSessionRequest",
    464: "CreateSessionResponse",
    467: "ActivateSessionRequest",
    470: "ActivateSessionResponse",
    473: "CloseSessionRequest",
    476: "CloseSessionResponse",
    479: "CancelRequest",
    482: "CancelResponse",
    488: "AddNodesRequest",
    491: "AddNodesResponse",
    494: "AddReferencesRequest",
    497: "AddReferencesResponse",
    500: "DeleteNodesRequest",
    503: "DeleteNodesResponse",
    506: "DeleteReferencesRequest",
    509: "DeleteReferencesResponse",
    527: "BrowseRequest",
    530: "BrowseResponse",
    533: "BrowseNextRequest",
    536: "BrowseNextResponse",
    554: "TranslateBrowsePathsToNodeIdsRequest",
    557: "TranslateBrowsePathsToNodeIdsResponse",
    560: "RegisterNodesRequest",
    563: "RegisterNodesResponse",
    566: "UnregisterNodesRequest",
    569: "UnregisterNodesResponse",
    615: "QueryFirstRequest",
    618: "QueryFirstResponse",
    621: "QueryNextRequest",
    624: "QueryNextResponse",
    631: "ReadRequest",
    634: "ReadResponse",
    664: "HistoryReadRequest",
    667: "HistoryReadResponse",
    673: "WriteRequest",
    676: "WriteResponse",
    700: "HistoryUpdateRequest",
    703: "HistoryUpdateResponse",
    712: "CallRequest",
    715: "CallResponse",
    751: "CreateMonitoredItemsRequest",
    754: "CreateMonitoredItemsResponse",
    763: "ModifyMonitoredItemsRequest",
    766: "ModifyMonitoredItemsResponse",
    769: "SetMonitoringModeRequest",
    772: "SetMonitoringModeResponse",
    775: "SetTriggeringRequest",
    778: "SetTriggeringResponse",
    781: "DeleteMonitoredItemsRequest",
    784: "DeleteMonitoredItemsResponse",
    787: "CreateSubscriptionRequest",
    790: "CreateSubscriptionResponse",
    793: "ModifySubscriptionRequest",
    796: "ModifySubscriptionResponse",
    799: "SetPublishingModeRequest",
    802: "SetPublishingModeResponse",
    826: "PublishRequest",
    829: "PublishResponse",
    832: "RepublishRequest",
    835: "RepublishResponse",
    841: "TransferSubscriptionsRequest",
    844: "TransferSubscriptionsResponse",
    847: "DeleteSubscriptionsRequest",
    850: "DeleteSubscriptionsResponse",
    12208: "FindServersOnNetworkRequest",
    12209: "FindServersOnNetworkResponse",
    12211: "RegisterServer2Request",
    12212: "RegisterServer2Response",
    15903: "SessionlessInvokeRequestType",
    21001: "SessionlessInvokeResponseType",
}

#: session-less invocations (Part 6 6.5) carry namespace and server tables, not a header
_NO_HEADER = frozenset((15903, 21001))

SECURITY_MODES: dict[int, str] = {0: "Invalid", 1: "None", 2: "Sign", 3: "SignAndEncrypt"}
REQUEST_TYPES: dict[int, str] = {0: "issue", 1: "renew"}
APPLICATION_TYPES: dict[int, str] = {
    0: "Server",
    1: "Client",
    2: "ClientAndServer",
    3: "DiscoveryServer",
}
#: UserTokenType (endpoint token policies) and the identity token encodings of ActivateSession
USER_TOKEN_TYPES: dict[int, str] = {0: "anonymous", 1: "username", 2: "x509", 3: "issued"}
IDENTITY_TOKENS: dict[int, str] = {321: "anonymous", 324: "username", 327: "x509", 940: "issued"}
TIMESTAMPS_TO_RETURN: dict[int, str] = {
    0: "Source",
    1: "Server",
    2: "Both",
    3: "Neither",
    4: "Invalid",
}
BROWSE_DIRECTIONS: dict[int, str] = {0: "Forward", 1: "Inverse", 2: "Both", 3: "Invalid"}
MONITORING_MODES: dict[int, str] = {0: "Disabled", 1: "Sampling", 2: "Reporting"}
FILTER_TYPES: dict[int, str] = {
    724: "DataChangeFilter",
    727: "EventFilter",
    730: "AggregateFilter",
}
#: attribute ids (Part 6 A.1)
ATTRIBUTES: dict[int, str] = {
    1: "NodeId",
    2: "NodeClass",
    3: "BrowseName",
    4: "DisplayName",
    5: "Description",
    6: "WriteMask",
    7: "UserWriteMask",
    8: "IsAbstract",
    9: "Symmetric",
    10: "InverseName",
    11: "ContainsNoLoops",
    12: "EventNotifier",
    13: "Value",
    14: "DataType",
    15: "ValueRank",
    16: "ArrayDimensions",
    17: "AccessLevel",
    18: "UserAccessLevel",
    19: "MinimumSamplingInterval",
    20: "Historizing",
    21: "Executable",
    22: "UserExecutable",
    23: "DataTypeDefinition",
    24: "RolePermissions",
    25: "UserRolePermissions",
    26: "AccessRestrictions",
    27: "AccessLevelEx",
}
#: standard reference types (namespace 0), for relative paths as text (Part 4 A.2)
REFERENCE_TYPES: dict[str, str] = {
    "i=31": "References",
    "i=32": "NonHierarchicalReferences",
    "i=33": "HierarchicalReferences",
    "i=34": "HasChild",
    "i=35": "Organizes",
    "i=36": "HasEventSource",
    "i=37": "HasModellingRule",
    "i=38": "HasEncoding",
    "i=39": "HasDescription",
    "i=40": "HasTypeDefinition",
    "i=41": "GeneratesEvent",
    "i=44": "Aggregates",
    "i=45": "HasSubtype",
    "i=46": "HasProperty",
    "i=47": "HasComponent",
    "i=48": "HasNotifier",
    "i=49": "HasOrderedComponent",
}
_HIERARCHICAL, _AGGREGATES = "i=33", "i=44"
_PATH_RESERVED = str.maketrans({c: "&" + c for c in "/.<>:#!&"})

# notification data of a PublishResponse
DATA_CHANGE, STATUS_CHANGE, EVENT_LIST = 811, 820, 916
#: RemainingPathIndex of a fully resolved BrowsePathTarget (UInt32 max)
_RESOLVED = 0xFFFFFFFF

Decoder = Callable[[Reader, Record], None]


def _enum(names: dict[int, str], value: int) -> str | int:
    return names.get(value, value)


def _thumbprint(cert: bytes | None) -> str | None:
    return sha1(cert, usedforsecurity=False).hexdigest() if cert else None


_GOOD = status_name(0)


def _put(rec: Record, key: str, value: Any) -> None:
    if value is not None:
        rec[key] = value


def _status(code: int) -> Record:
    return {"status": code, "status_name": status_name(code)}


def _list(r: Reader, read: Callable[[Reader], Any]) -> tuple[list[Any], int]:
    """An array of structures: the first :data:`LIST_CAP` kept, all read; and the count."""
    n = r.array_length()
    out: list[Any] = []
    append = out.append  # (a loop, not a comprehension: most lists are short, often empty)
    for _ in range(n if n <= LIST_CAP else LIST_CAP):
        append(read(r))
    if n > LIST_CAP:
        for _ in range(n - LIST_CAP):
            read(r)
        r.truncated = True
    return out, n


def _strings(r: Reader) -> list[str]:
    strings = _list(r, Reader.string)[0]
    return [s for s in strings if s is not None] if strings else strings


def _statuses(r: Reader) -> list[Record]:
    codes = _list(r, Reader.status)[0]
    return [_status(code) for code in codes] if codes else []


def _skip_extension_object(r: Reader) -> tuple[str, int | None, int]:
    """Read over an ExtensionObject; its type id (text, number) and body length (-1: none)."""
    text, number, _encoding, n = r.extension_header()
    if n > 0:
        r.skip(n)
    return text, number, n


def _skip_signature(r: Reader) -> None:
    """SignatureData: algorithm, signature."""
    r.skip_bytestring()
    r.skip_bytestring()


def _skip_software_certificates(r: Reader) -> None:
    for _ in range(r.array_length()):
        _skip_signature(r)  # SignedSoftwareCertificate: certificate data, signature


#: the fixed fields of a request header after its token: timestamp, request handle, return
#: diagnostics, audit entry id length, timeout hint (when the audit entry id is null or empty)
_REQUEST_HEADER = Struct("<qIIiI")
#: a response header's timestamp, request handle, service result, diagnostic info encoding
#: byte and string table length
_RESPONSE_HEADER = Struct("<qIIBi")
#: a BrowseResult's status code, continuation point length and reference count
_BROWSE_RESULT_HEAD = Struct("<Iii")
#: a ReadValueId after its node: attribute id, index range length, data encoding namespace and
#: name length
_READ_VALUE_ID_TAIL = Struct("<IiHi")


# -- headers ---------------------------------------------------------------------------------------
def _skip_additional_header(r: Reader, at: int) -> None:
    """Read over a header's additional header at ``at``: mostly the null ExtensionObject (type
    id i=0 as a two-byte NodeId, no body: three zero bytes)."""
    data = r.data
    if at + 3 <= r.end and data[at] == 0 and data[at + 1] == 0 and data[at + 2] == 0:
        r.pos = at + 3
        return
    r.pos = at
    _skip_extension_object(r)


def _request_header(r: Reader, rec: Record) -> None:
    r.skip_nodeid()  # authentication token: a session secret, never recorded
    at = r.pos
    if at + _REQUEST_HEADER.size <= r.end:  # no audit entry id: the fields in one unpack
        ticks, handle, diagnostics, audit, timeout = _REQUEST_HEADER.unpack_from(r.data, at)
        if audit == -1 or audit == 0:
            if ticks > 0:
                rec["timestamp"] = ticks_to_iso(ticks)
            rec["request_handle"] = handle
            if diagnostics:
                rec["return_diagnostics"] = diagnostics
            rec["timeout_hint"] = timeout
            _skip_additional_header(r, at + _REQUEST_HEADER.size)
            return
    _put(rec, "timestamp", r.datetime())
    rec["request_handle"] = r.uint32()
    diagnostics = r.uint32()
    if diagnostics:
        rec["return_diagnostics"] = diagnostics
    audit = r.string()
    if audit:
        rec["audit_entry_id"] = audit
    rec["timeout_hint"] = r.uint32()
    _skip_extension_object(r)  # additional header


def _response_header(r: Reader, rec: Record) -> None:
    at = r.pos
    if at + _RESPONSE_HEADER.size <= r.end:  # no diagnostics, no string table: one unpack
        ticks, handle, code, diagnostics, strings = _RESPONSE_HEADER.unpack_from(r.data, at)
        if diagnostics == 0 and (strings == -1 or strings == 0):
            if ticks > 0:
                rec["timestamp"] = ticks_to_iso(ticks)
            rec["request_handle"] = handle
            rec["service_result"] = code
            rec["service_result_name"] = status_name(code)
            _skip_additional_header(r, at + _RESPONSE_HEADER.size)
            return
    _put(rec, "timestamp", r.datetime())
    rec["request_handle"] = r.uint32()
    code = r.status()
    rec["service_result"] = code
    rec["service_result_name"] = status_name(code)
    _put(rec, "service_diagnostics", r.diagnostic_info())
    for _ in range(r.array_length()):  # string table
        r.skip_bytestring()
    _skip_extension_object(r)  # additional header


# -- common structures -----------------------------------------------------------------------------
def _application(r: Reader) -> Record:
    """ApplicationDescription."""
    out: Record = {}
    _put(out, "application_uri", r.string())
    _put(out, "product_uri", r.string())
    _put(out, "application_name", r.localized_text())
    out["application_type"] = _enum(APPLICATION_TYPES, r.uint32())
    gateway = r.string()
    if gateway:
        out["gateway_server_uri"] = gateway
    profile = r.string()
    if profile:
        out["discovery_profile_uri"] = profile
    urls = _strings(r)
    if urls:
        out["discovery_urls"] = urls
    return out


def _endpoint(r: Reader) -> Record:
    """EndpointDescription."""
    out: Record = {}
    _put(out, "endpoint_url", r.string())
    out["server"] = _application(r)
    _put(out, "server_certificate_thumbprint", _thumbprint(r.bytestring()))
    out["security_mode"] = _enum(SECURITY_MODES, r.uint32())
    _put(out, "security_policy_uri", r.string())
    types: list[str | int] = []
    for _ in range(r.array_length()):  # UserTokenPolicy
        r.skip_bytestring()  # policy id
        token = _enum(USER_TOKEN_TYPES, r.uint32())
        r.skip_bytestring()  # issued token type
        r.skip_bytestring()  # issuer endpoint url
        r.skip_bytestring()  # security policy uri
        if token not in types and len(types) < LIST_CAP:
            types.append(token)
    out["user_token_types"] = types
    _put(out, "transport_profile_uri", r.string())
    out["security_level"] = r.byte()
    return out


def _read_value_id(r: Reader) -> Record:
    """ReadValueId: node, attribute, index range, data encoding."""
    node = r.nodeid()
    at = r.pos
    if at + _READ_VALUE_ID_TAIL.size <= r.end:  # no index range, no data encoding: one unpack
        attribute, index_range, ns, name = _READ_VALUE_ID_TAIL.unpack_from(r.data, at)
        if -1 <= index_range <= 0 and ns == 0 and -1 <= name <= 0:
            r.pos = at + _READ_VALUE_ID_TAIL.size
            return {
                "node_id": node,
                "attribute_id": attribute,
                "attribute": ATTRIBUTES.get(attribute, attribute),
            }
    out: Record = {"node_id": node}
    attribute = r.uint32()
    out["attribute_id"] = attribute
    out["attribute"] = _enum(ATTRIBUTES, attribute)
    index_range = r.string()
    if index_range:
        out["index_range"] = index_range
    encoding = r.qualified_name()
    if encoding:
        out["data_encoding"] = encoding
    return out


def _browse_result(r: Reader) -> Record:
    """BrowseResult: status, continuation point, references (target node ids listed)."""
    at = r.pos
    end = r.end
    first = at + _BROWSE_RESULT_HEAD.size
    fast = False
    if first <= end:
        # no continuation point and a reference count within every limit: one unpack (what
        # status(), skip_bytestring() and array_length() read, with the same checks)
        code, point, n = _BROWSE_RESULT_HEAD.unpack_from(r.data, at)
        fast = -1 <= point <= 0 and -1 <= n <= MAX_ARRAY and n <= r.elements and n <= end - first
    if fast:
        r.pos = first
        if n > 0:
            r.elements -= n
        else:
            n = 0
        out: Record = {"status": code, "status_name": _GOOD if code == 0 else status_name(code)}
    else:
        out = _status(r.status())
        if r.skip_bytestring() > 0:
            out["continuation_point"] = True
        n = r.array_length()
    targets: list[str] = []
    for _ in range(n):
        target = _reference_target(r)
        if r.budget > 0:  # (keep(), inline)
            r.budget -= 1
            targets.append(target)
        else:
            r.truncated = True
    out["reference_count"] = n
    out["targets"] = targets
    return out


def _reference_target(r: Reader) -> str:
    """A ReferenceDescription's target node id; its reference type, direction, browse name,
    display name, node class and type definition read over."""
    data = r.data
    at = r.pos
    end = r.end
    size = _NODEID_SIZES.get(data[at]) if at < end else None
    if size is not None and at + size < end:  # a fixed-size reference type, is forward
        at += size + 1
        r.pos = at
    else:
        r.skip_nodeid()
        r.boolean()
        at = r.pos
    target = r.nodeid() if at < end and data[at] <= 2 else r.expanded_nodeid()
    # browse name, display name, node class, type definition: in place when each length and
    # encoding is plain and in the bytes, else read over step by step from the browse name
    at = r.pos
    if at + 6 <= end:
        n: int = _I32(data, at + 2)[0]  # browse name: namespace, then the name's length
        if -1 <= n <= end - at - 6:
            pos = at + 6 + n if n > 0 else at + 6
            if pos < end:
                mask = data[pos]  # display name: locale and text, each when flagged
                pos += 1
                if mask & 0x01:
                    n = _I32(data, pos)[0] if pos + 4 <= end else -2
                    pos = pos + 4 + (n if n > 0 else 0) if -1 <= n <= end - pos - 4 else end + 1
                if mask & 0x02 and pos <= end:
                    n = _I32(data, pos)[0] if pos + 4 <= end else -2
                    pos = pos + 4 + (n if n > 0 else 0) if -1 <= n <= end - pos - 4 else end + 1
                if pos + 4 < end:  # node class, then the type definition's encoding byte
                    size = _NODEID_SIZES.get(data[pos + 4])
                    if size is not None and pos + 4 + size <= end:
                        r.pos = pos + 4 + size
                        return target
    r.pos = at
    r.skip_qualified_name()
    r.skip_localized_text()
    r.uint32()  # node class
    r.skip_expanded_nodeid()  # type definition
    return target


def _browse_results(r: Reader, rec: Record) -> None:
    results, n = _list(r, _browse_result)
    rec["result_count"] = n
    rec["reference_count"] = sum(result["reference_count"] for result in results)
    rec["results"] = results
    r.skip_diagnostic_infos()


# -- discovery -------------------------------------------------------------------------------------
def _get_endpoints_request(r: Reader, rec: Record) -> None:
    _put(rec, "endpoint_url", r.string())
    locales = _strings(r)
    if locales:
        rec["locale_ids"] = locales
    profiles = _strings(r)
    if profiles:
        rec["profile_uris"] = profiles


def _find_servers_request(r: Reader, rec: Record) -> None:
    _put(rec, "endpoint_url", r.string())
    locales = _strings(r)
    if locales:
        rec["locale_ids"] = locales
    uris = _strings(r)
    if uris:
        rec["server_uris"] = uris


def _get_endpoints_response(r: Reader, rec: Record) -> None:
    rec["endpoints"] = _list(r, _endpoint)[0]


def _find_servers_response(r: Reader, rec: Record) -> None:
    rec["servers"] = _list(r, _application)[0]


# -- secure channel and session --------------------------------------------------------------------
def _open_secure_channel_request(r: Reader, rec: Record) -> None:
    rec["client_protocol_version"] = r.uint32()
    rec["request_type"] = _enum(REQUEST_TYPES, r.uint32())
    rec["security_mode"] = _enum(SECURITY_MODES, r.uint32())
    r.skip_bytestring()  # client nonce
    rec["requested_lifetime"] = r.uint32()


def _open_secure_channel_response(r: Reader, rec: Record) -> None:
    rec["server_protocol_version"] = r.uint32()
    rec["secure_channel_id"] = r.uint32()
    rec["token_id"] = r.uint32()
    _put(rec, "token_created_at", r.datetime())
    rec["revised_lifetime"] = r.uint32()
    r.skip_bytestring()  # server nonce


def _create_session_request(r: Reader, rec: Record) -> None:
    rec["client"] = _application(r)
    _put(rec, "server_uri", r.string())
    _put(rec, "endpoint_url", r.string())
    _put(rec, "session_name", r.string())
    r.skip_bytestring()  # client nonce
    _put(rec, "client_certificate_thumbprint", _thumbprint(r.bytestring()))
    rec["requested_session_timeout"] = r.double()
    rec["max_response_message_size"] = r.uint32()


def _create_session_response(r: Reader, rec: Record) -> None:
    rec["session_id"] = r.nodeid()
    r.nodeid()  # authentication token: a session secret, never recorded
    rec["revised_session_timeout"] = r.double()
    r.skip_bytestring()  # server nonce
    _put(rec, "server_certificate_thumbprint", _thumbprint(r.bytestring()))
    rec["endpoints"] = _list(r, _endpoint)[0]
    _skip_software_certificates(r)
    _skip_signature(r)
    rec["max_request_message_size"] = r.uint32()


def _identity_token(r: Reader, rec: Record) -> None:
    """ActivateSession's user identity token. The password is read over, never recorded."""
    text, number, encoding, n = r.extension_header()
    kind = IDENTITY_TOKENS.get(number) if number is not None else None
    rec["identity_token_type"] = kind if kind is not None else text  # a null token: "i=0"
    body = r.sub(r.pos + max(n, 0))
    if encoding != 1 or kind is None:
        r.join(body)
        return
    _put(rec, "policy_id", body.string())
    if kind == "username":
        _put(rec, "user_name", body.string())
        body.skip_bytestring()  # the password: never recorded, encrypted or not
        algorithm = body.string()
        rec["password_encrypted"] = bool(algorithm)
        if algorithm:
            rec["encryption_algorithm"] = algorithm
    elif kind == "x509":
        _put(rec, "user_certificate_thumbprint", _thumbprint(body.bytestring()))
    elif kind == "issued":
        body.skip_bytestring()  # token data
        algorithm = body.string()
        if algorithm:
            rec["encryption_algorithm"] = algorithm
    r.join(body)


def _activate_session_request(r: Reader, rec: Record) -> None:
    _skip_signature(r)  # client signature
    _skip_software_certificates(r)
    locales = _strings(r)
    if locales:
        rec["locale_ids"] = locales
    _identity_token(r, rec)
    _skip_signature(r)  # user token signature


def _activate_session_response(r: Reader, rec: Record) -> None:
    r.skip_bytestring()  # server nonce
    rec["results"] = _statuses(r)
    r.skip_diagnostic_infos()


def _close_session_request(r: Reader, rec: Record) -> None:
    rec["delete_subscriptions"] = r.boolean()


# -- attributes ------------------------------------------------------------------------------------
def _read_request(r: Reader, rec: Record) -> None:
    rec["max_age"] = r.double()
    rec["timestamps_to_return"] = _enum(TIMESTAMPS_TO_RETURN, r.uint32())
    nodes, n = _list(r, _read_value_id)
    rec["node_count"] = n
    rec["nodes"] = nodes


def _read_response(r: Reader, rec: Record) -> None:
    results, n = _list(r, Reader.data_value)
    rec["result_count"] = n
    rec["results"] = results
    r.skip_diagnostic_infos()


def _write_value(r: Reader) -> Record:
    out: Record = {"node_id": r.nodeid()}
    attribute = r.uint32()
    out["attribute_id"] = attribute
    out["attribute"] = _enum(ATTRIBUTES, attribute)
    index_range = r.string()
    if index_range:
        out["index_range"] = index_range
    out.update(r.data_value())
    return out


def _write_request(r: Reader, rec: Record) -> None:
    nodes, n = _list(r, _write_value)
    rec["node_count"] = n
    rec["nodes"] = nodes


def _status_results(r: Reader, rec: Record) -> None:
    """Write, DeleteSubscriptions, … responses: a StatusCode per operation."""
    rec["results"] = _statuses(r)
    r.skip_diagnostic_infos()


# -- view ------------------------------------------------------------------------------------------
def _browse_description(r: Reader) -> Record:
    node = r.nodeid()
    at = r.pos
    if at + 4 <= r.end:  # the browse direction in place
        direction: int = _U32(r.data, at)[0]
        r.pos = at + 4
    else:
        direction = r.uint32()
    out: Record = {
        "node_id": node,
        "browse_direction": BROWSE_DIRECTIONS.get(direction, direction),
        "reference_type_id": r.nodeid(),
    }
    at = r.pos
    if at + 9 <= r.end:  # include subtypes, and the node class and result masks read over
        out["include_subtypes"] = r.data[at] != 0
        r.pos = at + 9
        return out
    out["include_subtypes"] = r.boolean()
    r.uint32()  # node class mask
    r.uint32()  # result mask
    return out


def _browse_request(r: Reader, rec: Record) -> None:
    view = r.nodeid()
    if view != "i=0":
        rec["view_id"] = view
    r.datetime()  # view timestamp
    r.uint32()  # view version
    rec["requested_max_references_per_node"] = r.uint32()
    nodes, n = _list(r, _browse_description)
    rec["node_count"] = n
    rec["nodes"] = nodes


def _browse_next_request(r: Reader, rec: Record) -> None:
    rec["release_continuation_points"] = r.boolean()
    n = r.array_length()
    for _ in range(n):
        r.skip_bytestring()
    rec["continuation_point_count"] = n


def _path_element(r: Reader) -> str:
    """RelativePathElement as text (Part 4 A.2): ``/`` hierarchical, ``.`` aggregates, else
    ``<[#][!]reference>``, then the target name."""
    reference = r.nodeid()
    inverse = r.boolean()
    subtypes = r.boolean()
    ns = r.uint16()
    target = (f"{ns}:" if ns else "") + (r.string() or "").translate(_PATH_RESERVED)
    if not inverse and subtypes and reference == _HIERARCHICAL:
        return "/" + target
    if not inverse and subtypes and reference == _AGGREGATES:
        return "." + target
    flags = ("" if subtypes else "#") + ("!" if inverse else "")
    return f"<{flags}{REFERENCE_TYPES.get(reference, reference)}>{target}"


def _browse_path(r: Reader) -> Record:
    start = r.nodeid()
    elements, _n = _list(r, _path_element)
    return {"start_node": start, "path": "".join(elements)}


def _translate_request(r: Reader, rec: Record) -> None:
    paths, n = _list(r, _browse_path)
    rec["path_count"] = n
    rec["paths"] = paths


def _path_target(r: Reader) -> Record:
    out: Record = {"target_id": r.expanded_nodeid()}
    remaining = r.uint32()
    if remaining != _RESOLVED:
        out["remaining_path_index"] = remaining
    return out


def _browse_path_result(r: Reader) -> Record:
    out = _status(r.status())
    out["targets"] = _list(r, _path_target)[0]
    return out


def _translate_response(r: Reader, rec: Record) -> None:
    results, n = _list(r, _browse_path_result)
    rec["result_count"] = n
    rec["results"] = results
    r.skip_diagnostic_infos()


# -- method ----------------------------------------------------------------------------------------
def _call_method(r: Reader) -> Record:
    out: Record = {"object_id": r.nodeid(), "method_id": r.nodeid()}
    out["input_arguments"] = _list(r, Reader.variant)[0]
    return out


def _call_request(r: Reader, rec: Record) -> None:
    methods, n = _list(r, _call_method)
    rec["method_count"] = n
    rec["methods"] = methods


def _call_result(r: Reader) -> Record:
    out = _status(r.status())
    arguments = _statuses(r)
    if arguments:
        out["input_argument_results"] = arguments
    r.skip_diagnostic_infos()
    out["output_arguments"] = _list(r, Reader.variant)[0]
    return out


def _call_response(r: Reader, rec: Record) -> None:
    results, n = _list(r, _call_result)
    rec["result_count"] = n
    rec["results"] = results
    r.skip_diagnostic_infos()


# -- subscriptions and monitored items -------------------------------------------------------------
def _create_subscription_request(r: Reader, rec: Record) -> None:
    rec["requested_publishing_interval"] = r.double()
    rec["requested_lifetime_count"] = r.uint32()
    rec["requested_max_keep_alive_count"] = r.uint32()
    rec["max_notifications_per_publish"] = r.uint32()
    rec["publishing_enabled"] = r.boolean()
    rec["priority"] = r.byte()


def _create_subscription_response(r: Reader, rec: Record) -> None:
    rec["subscription_id"] = r.uint32()
    rec["revised_publishing_interval"] = r.double()
    rec["revised_lifetime_count"] = r.uint32()
    rec["revised_max_keep_alive_count"] = r.uint32()


def _monitored_item_request(r: Reader) -> Record:
    out = _read_value_id(r)
    out["monitoring_mode"] = _enum(MONITORING_MODES, r.uint32())
    out["client_handle"] = r.uint32()
    out["sampling_interval"] = r.double()
    _text, number, n = _skip_extension_object(r)  # filter
    if number is not None and number in FILTER_TYPES:
        out["filter"] = FILTER_TYPES[number]
    elif n >= 0 and number != 0:
        out["filter"] = _text
    out["queue_size"] = r.uint32()
    out["discard_oldest"] = r.boolean()
    return out


def _create_monitored_items_request(r: Reader, rec: Record) -> None:
    rec["subscription_id"] = r.uint32()
    rec["timestamps_to_return"] = _enum(TIMESTAMPS_TO_RETURN, r.uint32())
    items, n = _list(r, _monitored_item_request)
    rec["item_count"] = n
    rec["items"] = items


def _monitored_item_result(r: Reader) -> Record:
    out = _status(r.status())
    out["monitored_item_id"] = r.uint32()
    out["revised_sampling_interval"] = r.double()
    out["revised_queue_size"] = r.uint32()
    _skip_extension_object(r)  # filter result
    return out


def _create_monitored_items_response(r: Reader, rec: Record) -> None:
    results, n = _list(r, _monitored_item_result)
    rec["result_count"] = n
    rec["results"] = results
    r.skip_diagnostic_infos()


def _acknowledgement(r: Reader) -> Record:
    return {"subscription_id": r.uint32(), "sequence_number": r.uint32()}


def _publish_request(r: Reader, rec: Record) -> None:
    acks, n = _list(r, _acknowledgement)
    rec["acknowledgement_count"] = n
    if acks:
        rec["acknowledgements"] = acks


def _data_change(r: Reader, values: list[Record]) -> None:
    for _ in range(r.array_length()):  # MonitoredItemNotification
        item: Record = {"client_handle": r.uint32()}
        item.update(r.data_value())
        if len(values) < LIST_CAP:
            values.append(item)
        else:
            r.truncated = True
    r.skip_diagnostic_infos()


def _event_list(r: Reader, events: list[Record]) -> None:
    for _ in range(r.array_length()):  # EventFieldList
        item: Record = {"client_handle": r.uint32()}
        item["fields"] = _list(r, Reader.variant)[0]
        if len(events) < LIST_CAP:
            events.append(item)
        else:
            r.truncated = True


def _publish_response(r: Reader, rec: Record) -> None:
    rec["subscription_id"] = r.uint32()
    available = _list(r, Reader.uint32)[0]
    if available:
        rec["available_sequence_numbers"] = available
    rec["more_notifications"] = r.boolean()
    rec["notification_sequence_number"] = r.uint32()
    _put(rec, "publish_time", r.datetime())
    n = r.array_length()
    values: list[Record] = []
    events: list[Record] = []
    for _ in range(n):  # NotificationData extension objects
        _text, number, encoding, length = r.extension_header()
        body = r.sub(r.pos + max(length, 0))
        if encoding == 1 and number == DATA_CHANGE:
            _data_change(body, values)
        elif encoding == 1 and number == EVENT_LIST:
            _event_list(body, events)
        elif encoding == 1 and number == STATUS_CHANGE:
            code = body.status()
            rec["subscription_status"] = code
            rec["subscription_status_name"] = status_name(code)
            body.diagnostic_info()
        r.join(body)
    rec["notification_count"] = n
    if values:
        rec["values"] = values
    if events:
        rec["event_count"] = len(events)
        rec["events"] = events
    rec["results"] = _statuses(r)
    r.skip_diagnostic_infos()


def _delete_subscriptions_request(r: Reader, rec: Record) -> None:
    rec["subscription_ids"] = _list(r, Reader.uint32)[0]


def _header_only(r: Reader, rec: Record) -> None:
    """CloseSecureChannel, CloseSession response, ServiceFault: nothing after the header."""


_DECODERS: dict[int, Decoder] = {
    397: _header_only,
    422: _find_servers_request,
    425: _find_servers_response,
    428: _get_endpoints_request,
    431: _get_endpoints_response,
    446: _open_secure_channel_request,
    449: _open_secure_channel_response,
    452: _header_only,
    455: _header_only,
    461: _create_session_request,
    464: _create_session_response,
    467: _activate_session_request,
    470: _activate_session_response,
    473: _close_session_request,
    476: _header_only,
    527: _browse_request,
    530: _browse_results,
    533: _browse_next_request,
    536: _browse_results,
    554: _translate_request,
    557: _translate_response,
    631: _read_request,
    634: _read_response,
    673: _write_request,
    676: _status_results,
    712: _call_request,
    715: _call_response,
    751: _create_monitored_items_request,
    754: _create_monitored_items_response,
    787: _create_subscription_request,
    790: _create_subscription_response,
    826: _publish_request,
    829: _publish_response,
    847: _delete_subscriptions_request,
    850: _status_results,
}


def _is_response(name: str) -> bool:
    return name == "ServiceFault" or name.endswith(("Response", "ResponseType"))


_RESPONSES = frozenset(number for number, name in SERVICE_NAMES.items() if _is_response(name))

#: service encoding id → (name, is a response, header reader or None, body decoder or None)
_SERVICES: dict[int, tuple[str, bool, Decoder | None, Decoder | None]] = {
    number: (
        name,
        number in _RESPONSES,
        None
        if number in _NO_HEADER
        else (_response_header if number in _RESPONSES else _request_header),
        _DECODERS.get(number),
    )
    for number, name in SERVICE_NAMES.items()
}


def decode_body(
    data: bytes | bytearray, pos: int, end: int, rec: Record | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Decode one OPC UA message body: the type id (NodeId of the encoding, e.g. i=631
    ReadRequest_Encoding_DefaultBinary), the request or response header, and the service's
    fields; into ``rec`` when given (as ``rec.update`` would, returning ``rec``)."""
    if rec is None:
        rec = {}
    r = Reader(data, pos, end)
    at = r.pos
    number: int | None
    if at + 4 <= r.end and data[at] == 1 and data[at + 1] == 0:
        # the usual type id, a four-byte NodeId in namespace 0: its number, no text needed
        number = data[at + 2] | data[at + 3] << 8
        r.pos = at + 4
    else:
        try:
            text, number = r.numeric_nodeid()
        except DecodeError as exc:
            rec["decode_error"] = str(exc)
            return rec, (DECODE_ERROR,)
        if number is None:
            rec["service"] = "Unknown"
            rec["type_id"] = text
            return rec, (UNKNOWN_SERVICE,)
    rec["service_id"] = number
    service = _SERVICES.get(number)
    if service is None:
        rec["service"] = "Unknown"
        return rec, (UNKNOWN_SERVICE,)
    name, response, header, decoder = service
    rec["service"] = name
    rec["is_response"] = response
    try:
        if header is not None:
            header(r, rec)
        if decoder is None:
            rec["body_decoded"] = False
        else:
            decoder(r, rec)
    except DecodeError as exc:
        rec["decode_error"] = str(exc)
        if r.truncated:
            rec["truncated"] = True
        return rec, (DECODE_ERROR,)
    if r.truncated:
        rec["truncated"] = True
    return rec, ()


# -- identities ------------------------------------------------------------------------------------
_APPLICATION_KEYS = ("application_uri", "product_uri", "application_name")
_BUILD_KEYS = (
    "product_uri",
    "manufacturer_name",
    "product_name",
    "software_version",
    "build_number",
)


def _build_info(value: Any) -> Record | None:
    """The BuildInfo of a Variant value that is a BuildInfo or ServerStatusDataType."""
    if not isinstance(value, dict):
        return None
    body = value.get("body")
    if not isinstance(body, dict):
        return None
    if value.get("type") == "BuildInfo":
        return body
    if value.get("type") == "ServerStatusDataType":
        info = body.get("build_info")
        return info if isinstance(info, dict) else None
    return None


def server_identity(rec: dict[str, Any]) -> dict[str, str] | None:
    """The server's application URI, product URI and application name (GetEndpoints and
    CreateSession responses: the first endpoint's server description) and its software version,
    manufacturer, product name and build number where a Read response carries a BuildInfo (or a
    ServerStatusDataType): what a server says about itself."""
    out: dict[str, str] = {}
    endpoints = rec.get("endpoints")
    if isinstance(endpoints, list):
        for endpoint in endpoints:
            server = endpoint.get("server") if isinstance(endpoint, dict) else None
            if isinstance(server, dict) and server.get("application_uri"):
                for key in _APPLICATION_KEYS:
                    value = server.get(key)
                    if isinstance(value, str) and value:
                        out[key] = value
                break
    results = rec.get("results") if rec.get("service") == "ReadResponse" else None
    if isinstance(results, list):
        for result in results:
            value = result.get("value") if isinstance(result, dict) else None
            info = _build_info(value) if isinstance(value, dict) else None  # (mostly numbers)
            if info is None:
                continue
            for key in _BUILD_KEYS:
                value = info.get(key)
                if isinstance(value, str) and value:
                    out.setdefault(key, value)
            break
    return out or None


def client_identity(rec: dict[str, Any]) -> dict[str, str] | None:
    """The client's application URI, product URI, application name and type, from a
    CreateSession request's client description."""
    client = rec.get("client") if rec.get("service") == "CreateSessionRequest" else None
    if not isinstance(client, dict):
        return None
    out = {
        key: str(client[key])
        for key in (*_APPLICATION_KEYS, "application_type")
        if client.get(key) not in (None, "")
    }
    return out or None


__all__ = [
    "DECODE_ERROR",
    "SERVICE_NAMES",
    "UNKNOWN_SERVICE",
    "client_identity",
    "decode_body",
    "server_identity",
]
