"""Capture sources: pcap, pcapng and gzip-compressed files (live capture comes later)."""

from otsentry.capture.base import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    CaptureError,
    CaptureReader,
    FileSource,
    Frame,
)
from otsentry.capture.open import (
    CAPTURE_MAGICS,
    capture_magic,
    expand_paths,
    merge_frames,
    open_capture,
)
from otsentry.capture.pcap import PcapReader
from otsentry.capture.pcapng import PcapngReader

__all__ = [
    "CAPTURE_MAGICS",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "CaptureError",
    "CaptureReader",
    "FileSource",
    "Frame",
    "PcapReader",
    "PcapngReader",
    "capture_magic",
    "expand_paths",
    "merge_frames",
    "open_capture",
]
