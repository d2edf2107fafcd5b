"""Types of the compiled pcap record loop (otsentry/_speedups.c)."""

def scan(
    buf: bytes,
    pos: int,
    linktype: int,
    big_endian: bool,
    frac_ns: int,
    limit: int,
    worker: int,
    workers: int,
    number: int,
    frames: list[tuple[int, int, bytes]],
    numbers: list[int] | None,
    /,
) -> tuple[int, int]: ...
def share(linktype: int, data: bytes, workers: int, /) -> int: ...
def ethernet_ipv4_tcp(
    data: bytes, /
) -> tuple[tuple[bytes, int, bytes, int, int, int], int, int, bytes, int] | None: ...
def uuid5(head: bytes, tail: bytes, /) -> bytes: ...

class FlowPath:
    """``FlowTable.packet`` with its commonest TCP case compiled (otsentry/_flowpath.c)."""

    fast: int
    handed_on: int
    def __init__(self, table: object, flow_type: type, stream_type: type) -> None: ...
    def __call__(
        self,
        pkt: tuple[tuple[bytes, int, bytes, int, int, int], int, int, bytes, int],
        ts: int,
        frame: bytes,
        /,
    ) -> None: ...

def run_frames(
    frames: object,
    numbers: object,
    limit: int,
    keep: object,
    mark: object,
    decode_fast: bool,
    decode: object,
    packet: object,
    table: object,
    pipeline: object,
    state: list[int],
    /,
) -> int: ...

class EventLines:
    """``ecs.event_line`` with its commonest case compiled (otsentry/_eventline.c)."""

    fast: int
    handed_on: int
    def __init__(self, **pieces: object) -> None: ...
    def __call__(self, event: object, observer: object, ids: object, /) -> bytes: ...
