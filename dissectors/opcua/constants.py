"""OPC UA binary (UA TCP / UA Secure Conversation) numbers and names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

OPCUA_PORT = 4840
HEADER_LEN = 8  # message type (3), chunk type (1), message size (4, little-endian)
MIN_CHUNK = 8
#: the largest chunk accepted before a size is taken for garbage (the spec allows any size the
#: peers negotiate; real stacks use 8 KiB to 64 KiB, some up to a few MiB)
MAX_CHUNK = 16 * 1024 * 1024
#: the largest message put back together from chunks (bytes of body kept)
MAX_MESSAGE = 4 * 1024 * 1024
MAX_CHUNKS = 4096  # chunks of one message, when the peers negotiated no limit

MESSAGE_TYPES = frozenset((b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO"))
SECURE_TYPES = frozenset((b"OPN", b"MSG", b"CLO"))
CHUNK_TYPES = frozenset((ord("F"), ord("C"), ord("A")))

POLICY_PREFIX = "http://opcfoundation.org/UA/SecurityPolicy#"
POLICY_NONE = POLICY_PREFIX + "None"

#: symmetric signature length (bytes) of each policy: what ends a Sign-only chunk
SIGNATURE_LENGTHS: dict[str, int] = {
    "None": 0,
    "Basic128Rsa15": 20,
    "Basic256": 20,
    "Basic256Sha256": 32,
    "Aes128_Sha256_RsaOaep": 32,
    "Aes256_Sha256_RsaPss": 32,
}

#: policies deprecated by the OPC Foundation (SHA-1): worth flagging in a security posture
DEPRECATED_POLICIES = frozenset(("Basic128Rsa15", "Basic256"))

#: every anomaly id the OPC UA dissector emits → what it means
ANOMALIES: Final[Mapping[str, str]] = {
    "opcua.unknown_message_type": "UA TCP chunk with an undefined message or chunk type",
    "opcua.invalid_chunk_size": "UA TCP chunk size below the header or above the accepted maximum",
    "opcua.message_too_large": "message over the negotiated (or accepted) size or chunk count",
    "opcua.chunk_aborted": "sender aborted a multi-chunk message (chunk type A)",
    "opcua.sequence_gap": "secure conversation sequence number does not follow the previous one",
    "opcua.truncated": "chunk cut short or not decodable to its end",
    "opcua.decode_error": "service body that does not decode as its binary encoding",
    "opcua.unknown_service": "message whose type id is no known service",
    "opcua.unsolicited_response": "response with no pending request of that request id",
    "opcua.flooded": "open requests at the cap: the oldest unanswered request dropped",
    "opcua.non_opcua_payload": "bytes on the connection that are no UA TCP chunk (skipped)",
}
