"""Live capture on veth pairs between network namespaces that the tests build and delete.

Frames are sent from the peer namespace through AF_PACKET sockets made there; the capture runs
on the other end of the veth pair in the sensor namespace. Root and ``ip netns`` are needed:
without them these tests skip (the filter-compiler and option tests run anywhere).
"""

from __future__ import annotations

import ast
import multiprocessing as mp
import os
import pwd
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from otsentry.capture import bpf
from otsentry.capture.live import (
    LiveCapture,
    LiveCaptureError,
    LiveOptions,
    compile_bpf,
    drop_privileges,
)
from tests.capture.live_helpers import (
    Netns,
    inside,
    link_counters,
    namespaces_unavailable,
    promiscuity,
    raw_sender,
    run,
)

ETHERTYPE_TEST = 0x88B5  # IEEE local experimental
SRC_MAC = bytes.fromhex("020000000001")
PEER_IP, SENSOR_IP = "10.213.0.1", "10.213.0.2"


# --- namespaces ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    """Peer and sensor namespaces: lcp0-lcs0 and lcp1-lcs1 veth pairs, addresses on the second
    pair for TCP, lo up in the sensor namespace."""
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    netns = Netns()
    try:
        netns.link("lcp0", "lcs0")
        netns.link("lcp1", "lcs1")
        run("ip", "-n", netns.peer, "addr", "add", f"{PEER_IP}/24", "dev", "lcp1")
        run("ip", "-n", netns.sensor, "addr", "add", f"{SENSOR_IP}/24", "dev", "lcs1")
        run("ip", "-n", netns.sensor, "link", "set", "lo", "up")
        yield netns
    finally:
        netns.close()


def open_live(net: Netns, *interfaces: str, **options: object) -> LiveCapture:
    """A LiveCapture opened in the sensor namespace (short block timeout: fast tests)."""
    options.setdefault("block_timeout_ms", 20)
    with inside(net.sensor):
        return LiveCapture(LiveOptions(interfaces, **options))  # type: ignore[arg-type]


def marked_frame(token: bytes, i: int, size: int = 80) -> bytes:
    """An Ethernet frame of ``size`` bytes carrying ``token`` and its number ``i``."""
    head = bytes.fromhex("ffffffffffff") + SRC_MAC + struct.pack("!H", ETHERTYPE_TEST)
    body = token + struct.pack("!I", i)
    return head + body + bytes((i + k) % 256 for k in range(size - len(head) - len(body)))


def has_token(token: bytes) -> Callable[[bytes], bool]:
    """Whether a captured frame (802.1Q/802.1ad tag or not) carries ``token``."""
    return lambda data: token in data[12:40]


def collect(
    cap: LiveCapture, want: int, keep: Callable[[bytes], bool], timeout: float = 3.0
) -> list[tuple[int, int, bytes]]:
    """Frames that ``keep`` accepts, until ``want`` of them or ``timeout`` seconds."""
    got: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += [frame for frame in cap.read(timeout=0.1) if keep(frame[2])]
    return got


def drain(cap: LiveCapture, quiet: float = 0.15) -> list[tuple[int, int, bytes]]:
    """Everything until nothing more comes for ``quiet`` seconds."""
    got: list[tuple[int, int, bytes]] = []
    while frames := cap.read(timeout=quiet):
        got += frames
    return got


# --- frames, timestamps, VLAN tags ---------------------------------------------------------------


def test_frames_arrive_byte_for_byte_in_order(net: Netns) -> None:
    token = os.urandom(8)
    sent = [marked_frame(token, i, size=60 + (i * 97) % 1455) for i in range(60)]
    sender = raw_sender(net.peer, "lcp0")
    with open_live(net, "lcs0") as cap:
        for frame in sent:
            sender.send(frame)
        got = collect(cap, len(sent), has_token(token))
    sender.close()
    assert [data for _, _, data in got] == sent
    assert {linktype for _, linktype, _ in got} == {1}


def test_timestamps_are_nanoseconds_of_the_wall_clock_and_ordered(net: Netns) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp0")
    with open_live(net, "lcs0") as cap:
        before = time.time_ns()
        for i in range(40):
            sender.send(marked_frame(token, i))
            time.sleep(0.001)
        after = time.time_ns()
        got = collect(cap, 40, has_token(token))
    sender.close()
    stamps = [ts for ts, _, _ in got]
    assert len(stamps) == 40
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] >= 39_000_000  # the 1 ms pauses show
    assert any(ts % 1000 for ts in stamps)  # finer than microseconds


def tagged(frame: bytes, *tags: tuple[int, int]) -> bytes:
    """``frame`` with (tpid, tci) tags inserted after the MAC addresses, outermost first."""
    return frame[:12] + b"".join(struct.pack("!HH", *tag) for tag in tags) + frame[12:]


def test_vlan_tags_the_kernel_stripped_are_restored(net: Netns) -> None:
    # the receiving kernel moves the outer tag of any 802.1Q/802.1ad frame into metadata
    token = os.urandom(8)
    sent = [
        tagged(marked_frame(token, 0), (0x8100, 100)),
        tagged(marked_frame(token, 1), (0x8100, 5 << 13 | 4094)),  # priority 5, VID 4094
        tagged(marked_frame(token, 2), (0x8100, 0)),  # priority tag, VID 0
        tagged(marked_frame(token, 3), (0x88A8, 200)),
        tagged(marked_frame(token, 4), (0x88A8, 300), (0x8100, 10)),  # QinQ
        marked_frame(token, 5),
    ]
    sender = raw_sender(net.peer, "lcp0")
    with open_live(net, "lcs0") as cap:
        for frame in sent:
            sender.send(frame)
        got = collect(cap, len(sent), has_token(token))
    sender.close()
    assert [data for _, _, data in got] == sent


def test_vlan_subinterface_traffic_carries_its_tag(net: Netns) -> None:
    peer = ("ip", "-n", net.peer)
    try:
        run(*peer, "link", "add", "link", "lcp0", "name", "lcp0.100", "type", "vlan", "id", "100")
    except RuntimeError as err:
        pytest.skip(f"no VLAN interfaces in this kernel: {err}")
    try:
        run(*peer, "link", "set", "lcp0.100", "up")
        token = os.urandom(8)
        sender = raw_sender(net.peer, "lcp0.100")
        with open_live(net, "lcs0") as cap:
            sender.send(marked_frame(token, 0))
            got = collect(cap, 1, has_token(token))
        sender.close()
    finally:
        run(*peer, "link", "del", "lcp0.100")
    assert [data for _, _, data in got] == [tagged(marked_frame(token, 0), (0x8100, 100))]


def test_vlan_filter_matches_the_restored_tag(net: Netns) -> None:
    token = os.urandom(8)
    sent = [
        marked_frame(token, 0),
        tagged(marked_frame(token, 1), (0x8100, 100)),
        tagged(marked_frame(token, 2), (0x8100, 101)),
        tagged(marked_frame(token, 3), (0x88A8, 100)),
    ]
    sender = raw_sender(net.peer, "lcp0")
    with open_live(net, "lcs0", bpf="vlan 100") as cap:
        for frame in sent:
            sender.send(frame)
        got = [f for f in drain(cap) if has_token(token)(f[2])]
    sender.close()
    assert [data for _, _, data in got] == [sent[1], sent[3]]


# --- filters and snaplen -------------------------------------------------------------------------


def udp_frame(dport: int, token: bytes) -> bytes:
    """An Ethernet/IPv4/UDP frame to ``dport`` with ``token`` as its payload."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(token), 1, 0, 64, 17, 0,
                     bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2]))  # fmt: skip
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(token), 0)
    return bytes(6) + SRC_MAC + b"\x08\x00" + ip + udp + token


def test_bpf_keeps_only_matching_frames(net: Netns) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp0")
    sent = [udp_frame(5021 + i % 3, token) for i in range(30)] + [marked_frame(token, 0)]
    with open_live(net, "lcs0", bpf="udp dst port 5021") as cap:
        for frame in sent:
            sender.send(frame)
        got = drain(cap)
        stats = cap.stats()["lcs0"]
    sender.close()
    assert [data for _, _, data in got] == [f for f in sent if f[36:38] == b"\x13\x9d"]
    assert len(got) == 10
    assert stats["received"] == 10  # filtered out in the kernel: never counted


def test_snaplen_cuts_frames_tag_included(net: Netns) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp0")
    sent = [marked_frame(token, 0, size=600), tagged(marked_frame(token, 1, 600), (0x8100, 7))]
    with open_live(net, "lcs0", snaplen=100) as cap:
        for frame in sent:
            sender.send(frame)
        got = collect(cap, 2, has_token(token))
    sender.close()
    assert [data for _, _, data in got] == [frame[:100] for frame in sent]


def test_bad_expression_is_refused_with_libpcaps_reason(net: Netns) -> None:
    with pytest.raises(LiveCaptureError, match=r"bad BPF expression 'tcp port modbus-x'.*port"):
        open_live(net, "lcs0", bpf="tcp port modbus-x")


@pytest.mark.parametrize("expression", ["", "tcp port 502", "udp and not host 10.0.0.1", "arp"])
def test_tcpdump_fallback_compiles_the_same_program(
    expression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_libpcap = compile_bpf(expression, 256)
    monkeypatch.setattr(bpf, "_libpcap", lambda: None)
    assert compile_bpf(expression, 256) == from_libpcap
    assert len(from_libpcap) % 8 == 0 and from_libpcap


@pytest.mark.parametrize("use_libpcap", [True, False])
def test_bad_expression_names_it(use_libpcap: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not use_libpcap:
        monkeypatch.setattr(bpf, "_libpcap", lambda: None)
    with pytest.raises(LiveCaptureError, match=r"'tcp and \(': .*syntax error"):
        compile_bpf("tcp and (")


def test_empty_expression_accepts_everything_up_to_snaplen() -> None:
    # one instruction: BPF_RET|BPF_K with the snaplen
    assert compile_bpf("", 128) == struct.pack("HBBI", 0x06, 0, 0, 128)


# --- drops and statistics ------------------------------------------------------------------------


def wait_received(cap: LiveCapture, iface: str, total: int) -> dict[str, int]:
    """Stats once ``received`` reaches ``total`` (the kernel may still be delivering)."""
    deadline = time.monotonic() + 3
    stats = cap.stats()[iface]
    while stats["received"] < total and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = cap.stats()[iface]
    return stats


def test_drops_are_counted_when_the_reader_stalls_and_stats_accumulate(net: Netns) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp0")
    with open_live(net, "lcs0", block_size=4096, block_count=2, bpf=f"ether proto {ETHERTYPE_TEST}") as cap:  # fmt: skip
        for i in range(500):
            sender.send(marked_frame(token, i, size=200))
        stalled = wait_received(cap, "lcs0", 500)
        got = drain(cap)
        assert stalled["received"] == 500
        assert stalled["dropped"] > 400  # two 4 KiB blocks hold a few dozen 200-byte frames
        assert stalled["freeze_queue"] >= 1
        assert len(got) == stalled["received"] - stalled["dropped"]
        assert cap.stats()["lcs0"] == stalled  # reading the counters again does not lose them
        for i in range(10):
            sender.send(marked_frame(token, 500 + i, size=200))
            got += collect(cap, 1, has_token(token), timeout=1)
        later = wait_received(cap, "lcs0", 510)
    sender.close()
    assert later == {**stalled, "received": 510}
    assert len(got) == 510 - stalled["dropped"]


# --- passivity -----------------------------------------------------------------------------------


def test_capturing_transmits_nothing(net: Netns) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp0")
    before = link_counters(net.sensor, "lcs0")
    with open_live(net, "lcs0", bpf=None) as cap:
        assert promiscuity(net.sensor, "lcs0") == 1
        for i in range(200):
            sender.send(marked_frame(token, i))
        got = collect(cap, 200, has_token(token))
        drain(cap)
        cap.stats()
    sender.close()
    after = link_counters(net.sensor, "lcs0")
    assert len(got) == 200
    assert after["rx"] - before["rx"] >= 200  # the counters are live
    assert after["tx"] == before["tx"]
    assert promiscuity(net.sensor, "lcs0") == 0  # promiscuous mode ended with the socket


_SENDING_CALLS = {"send", "sendto", "sendmsg", "sendall", "sendfile", "write", "writev"}


def test_capture_modules_never_call_a_sending_function() -> None:
    root = Path(__file__).resolve().parents[2] / "otsentry" / "capture"
    for name in ("live.py", "afpacket.py", "bpf.py"):
        tree = ast.parse((root / name).read_text())
        called = {
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
        }
        assert not called & _SENDING_CALLS, name


# --- fanout ----------------------------------------------------------------------------------------


def flow_key(data: bytes) -> tuple[tuple[bytes, int], ...] | None:
    """The direction-free (address, port) pair of an Ethernet/IPv4/TCP frame, else None."""
    if data[12:14] != b"\x08\x00" or data[23] != 6:
        return None
    ihl = (data[14] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", data, 14 + ihl)
    ends = sorted([(data[26:30], sport), (data[30:34], dport)])
    return tuple(ends)


def tcp_exchanges(net: Netns, count: int) -> None:
    """``count`` TCP connections peer → sensor, each a request, an answer and a close."""
    with inside(net.sensor):
        server = socket.create_server((SENSOR_IP, 0))
    port = server.getsockname()[1]
    for _ in range(count):
        with inside(net.peer):
            client = socket.socket()
        client.connect((SENSOR_IP, port))
        conn, _ = server.accept()
        client.sendall(b"request" * 20)
        conn.recv(4096)
        conn.sendall(b"answer" * 30)
        client.recv(4096)
        client.close()
        conn.close()
    server.close()


def test_fanout_hash_keeps_both_directions_of_a_flow_together(net: Netns) -> None:
    group = 0x4000 + os.getpid() % 0x4000
    first = open_live(net, "lcs1", fanout_group=group)
    second = open_live(net, "lcs1", fanout_group=group)
    try:
        tcp_exchanges(net, 24)
        seen: dict[tuple[tuple[bytes, int], ...], set[int]] = {}
        directions: dict[tuple[tuple[bytes, int], ...], set[bytes]] = {}
        for which, cap in enumerate((first, second)):
            for _, _, data in drain(cap, quiet=0.25):
                key = flow_key(data)
                if key is not None:
                    seen.setdefault(key, set()).add(which)
                    directions.setdefault(key, set()).add(data[26:30])
    finally:
        first.close()
        second.close()
    assert len(seen) == 24
    assert all(len(members) == 1 for members in seen.values()), seen
    assert all(len(sources) == 2 for sources in directions.values())  # both directions seen
    assert {next(iter(m)) for m in seen.values()} == {0, 1}  # and both sockets had work


def ip_fragments(token: bytes) -> list[bytes]:
    """One UDP datagram from the peer to the sensor address in two IPv4 fragments."""
    payload = struct.pack("!HHHH", 40000, 5999, 8 + 64, 0) + token * 8
    eth = bytes(6) + SRC_MAC + b"\x08\x00"
    frames = []
    for offset, part, more in ((0, payload[:40], 0x2000), (40, payload[40:], 0)):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(part), 77, more | offset // 8, 64,
                         17, 0, socket.inet_aton(PEER_IP), socket.inet_aton(SENSOR_IP))  # fmt: skip
        total = sum(struct.unpack("!10H", ip))
        checksum = ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF
        frames.append(eth + ip[:10] + struct.pack("!H", checksum) + ip[12:] + part)
    return frames


@pytest.mark.parametrize("fanout", [None, 0x7F00], ids=["alone", "fanout"])
def test_fragments_are_reassembled_only_for_fanout(net: Netns, fanout: int | None) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp1")
    with open_live(net, "lcs1", bpf="ip and udp or ip[6:2] & 0x1fff != 0", fanout_group=fanout) as cap:  # fmt: skip
        for frame in ip_fragments(token):
            sender.send(frame)
        got = [data for _, _, data in drain(cap) if token in data]
    sender.close()
    if fanout is None:
        assert got == ip_fragments(token)
    else:
        assert len(got) == 1 and got[0].endswith(token * 8)


def test_unknown_fanout_mode_is_refused() -> None:
    with pytest.raises(LiveCaptureError, match="fanout mode 'rollover'"):
        LiveCapture(LiveOptions(("lo",), fanout_group=1, fanout_mode="rollover"))


# --- interfaces ------------------------------------------------------------------------------------


def test_two_interfaces_at_once(net: Netns) -> None:
    token = os.urandom(8)
    senders = [raw_sender(net.peer, "lcp0"), raw_sender(net.peer, "lcp1")]
    with open_live(net, "lcs0", "lcs1", bpf=f"ether proto {ETHERTYPE_TEST}") as cap:
        assert len(cap.fileno()) == 2
        for i in range(40):
            senders[i % 2].send(marked_frame(token, i))
        got = collect(cap, 40, has_token(token))
        stats = cap.stats()
    for sender in senders:
        sender.close()
    numbers = sorted(struct.unpack_from("!I", data, 22)[0] for _, _, data in got)
    assert numbers == list(range(40))
    assert set(stats) == {"lcs0", "lcs1"}
    assert stats["lcs0"]["received"] == stats["lcs1"]["received"] == 20


def test_loopback_packets_are_seen_once(net: Netns) -> None:
    token = os.urandom(8)
    with inside(net.sensor):
        cap = LiveCapture(LiveOptions(("lo",), bpf="udp port 5999", block_timeout_ms=20))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with cap, sock:
        for _ in range(5):
            sock.sendto(token, ("127.0.0.1", 5999))
        got = drain(cap)
    assert len(got) == 5
    assert all(data[:14] == bytes(12) + b"\x08\x00" and data.endswith(token) for _, _, data in got)


def test_select_sees_a_ready_block(net: Netns) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp0")
    with open_live(net, "lcs0") as cap:
        assert select.select(cap.fileno(), [], [], 0)[0] == []
        sender.send(marked_frame(token, 0))
        assert select.select(cap.fileno(), [], [], 2)[0] == cap.fileno()
        assert collect(cap, 1, has_token(token))
    sender.close()


def test_read_waits_at_most_the_timeout(net: Netns) -> None:
    with open_live(net, "lcs0", bpf="ether proto 0x1234") as cap:
        start = time.monotonic()
        assert cap.read(timeout=0.3) == []
        waited = time.monotonic() - start
    assert 0.25 <= waited < 1.0
    assert cap.read() == []  # closed: nothing, at once


def _wait_until_up(namespace: str, interface: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["ip", "-n", namespace, "-o", "link", "show", interface],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "state UP" in shown:
            return
        time.sleep(0.02)
    raise AssertionError(f"{interface} did not come up in {seconds} s")


def test_capture_goes_on_after_the_link_flaps(net: Netns) -> None:
    token = os.urandom(8)
    sender = raw_sender(net.peer, "lcp0")
    with open_live(net, "lcs0") as cap:
        run("ip", "-n", net.sensor, "link", "set", "lcs0", "down")
        cpu = time.process_time()
        assert cap.read(timeout=0.3) == []
        assert time.process_time() - cpu < 0.15  # the reported ENETDOWN is not spun on
        run("ip", "-n", net.sensor, "link", "set", "lcs0", "up")
        _wait_until_up(net.sensor, "lcs0")  # frames sent before the carrier is back are lost
        sender.send(marked_frame(token, 0))
        got = collect(cap, 1, has_token(token))
    sender.close()
    assert [data for _, _, data in got] == [marked_frame(token, 0)]


def test_a_removed_interface_ends_the_capture_with_an_error(net: Netns) -> None:
    net.link("lcp9", "lcs9")
    cap = open_live(net, "lcs9")
    try:
        run("ip", "-n", net.sensor, "link", "del", "lcs9")
        with pytest.raises(LiveCaptureError, match=r"^interface lcs9 was removed while capturing$"):
            cap.read(timeout=1)
    finally:
        cap.close()


def test_missing_interface_is_named(net: Netns) -> None:
    with pytest.raises(LiveCaptureError, match=r"^interface lcnope0 does not exist$"):
        open_live(net, "lcs0", "lcnope0")


def test_non_ethernet_interface_is_refused(net: Netns) -> None:
    run("ip", "-n", net.sensor, "tuntap", "add", "dev", "lctun0", "mode", "tun")
    try:
        with pytest.raises(LiveCaptureError, match=r"lctun0 has hardware type 65534"):
            open_live(net, "lctun0")
    finally:
        run("ip", "-n", net.sensor, "link", "del", "lctun0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interfaces": ()}, "no interface"),
        ({"interfaces": ("lo", "lo")}, "named twice"),
        ({"block_size": 5000}, "not a multiple"),
        ({"snaplen": 0}, "snaplen 0"),
    ],
)
def test_bad_options_are_refused_before_opening(options: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"interfaces": ("lo",), **options}
    with pytest.raises(LiveCaptureError, match=message):
        LiveCapture(LiveOptions(**settings))  # type: ignore[arg-type]


# --- privileges ------------------------------------------------------------------------------------


@contextmanager
def in_child(target: Callable[[Connection], None]) -> Iterator[Connection]:
    """Run ``target`` in a forked child (privilege changes cannot be undone), talking through a
    pipe; the child is waited for (and killed if it hangs) when the block ends."""
    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=target, args=(there,))
    child.start()
    there.close()
    try:
        if not here.poll(10):
            raise TimeoutError("the child process said nothing for 10 s")
        yield here
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
        here.close()


def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")


def test_without_cap_net_raw_the_error_says_so() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    user = nobody()

    def unprivileged(pipe: Connection) -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        try:
            LiveCapture(LiveOptions(("lo",)))
            pipe.send("opened")
        except LiveCaptureError as err:
            pipe.send(str(err))

    with in_child(unprivileged) as pipe:
        message = pipe.recv()
    assert message == "capturing on lo needs root or the CAP_NET_RAW capability"


def capabilities() -> dict[str, int]:
    lines = Path("/proc/self/status").read_text().splitlines()
    return {k: int(v, 16) for k, v in (line.split(":") for line in lines if line.startswith("Cap"))}


def test_drop_privileges_keeps_the_capture_and_nothing_else(net: Netns) -> None:
    user = nobody()
    token = os.urandom(8)

    def sensor(pipe: Connection) -> None:
        cap = open_live(net, "lcs0")
        drop_privileges("nobody")
        try:
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            reopened = True
        except PermissionError:
            reopened = False
        pipe.send((os.getresuid(), os.getresgid(), os.getgroups(), capabilities(), reopened))
        pipe.recv()  # the frames are sent
        pipe.send(len(collect(cap, 5, has_token(token))))

    sender = raw_sender(net.peer, "lcp0")
    with in_child(sensor) as pipe:
        uids, gids, groups, caps, reopened = pipe.recv()
        for i in range(5):
            sender.send(marked_frame(token, i))
        pipe.send("sent")
        captured = pipe.recv()
    sender.close()
    assert uids == (user.pw_uid,) * 3 and gids == (user.pw_gid,) * 3
    assert set(groups) <= {user.pw_gid}
    assert caps == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": caps["CapBnd"], "CapAmb": 0}
    assert not reopened
    assert captured == 5


def test_drop_privileges_to_an_unknown_user() -> None:
    with pytest.raises(LiveCaptureError, match="user 'ots-no-such-user' does not exist"):
        drop_privileges("ots-no-such-user")
