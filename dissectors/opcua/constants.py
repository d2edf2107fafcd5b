"""OPC UA binary (UA TCP / UA Secure Conversation) numbers and names."""

from __future__ import annotations

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
