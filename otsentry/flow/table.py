"""The bidirectional flow table: roles, TCP state, dissector binding, idle expiry and caps.

Keys are (src ip, src port, dst ip, dst port, vlan, transport) as seen in a packet; each flow is
stored under both orientations with a flag saying whether that orientation is client → server, so
a packet's flow and direction cost one dict lookup. Client and server come from the handshake,
else from the well-known port, else from the first sender.

A flow that leaves the table knows why (``Flow.end_reason``) and how far its TCP handshake got
(``Flow.state``); both come from flags set on SYN, FIN and RST packets only.
"""

from __future__ import annotations

import socket
from binascii import b2a_base64
from collections import Counter
from collections.abc import Callable
from hashlib import sha1
from struct import Struct
from typing import TYPE_CHECKING

from otsentry.accel import SPEEDUPS
from otsentry.decode import ACK, FIN, RST, SYN, TCP, UDP, Packet, vlan_ids
from otsentry.flow.reassembly import ReassemblyStats, TcpStream
from otsentry.model import Conn

if TYPE_CHECKING:
    from otsentry.dissect.base import Dissector, DissectorSpec, Tracer
    from otsentry.dissect.registry import DissectorRegistry
    from otsentry.model import Event

_CID_TAIL = Struct("!BxHH")  # protocol, padding, ports
_PROBE_PACKETS = 4  # payload-bearing packets a flow on an unknown port is probed with
_EPHEMERAL_START = 32768
#: why the table ended a flow that had not closed → ``Flow.end_reason``
_END_REASONS = {"end_of_capture": "end"}


def community_id(src: bytes, dst: bytes, sport: int, dport: int, proto: int) -> str:
    """Community ID v1 (seed 0) of a TCP/UDP flow: the spec's hash, computed directly (the
    reference library takes fifty times as long, and every flow needs one)."""
    if src > dst or (src == dst and sport > dport):
        src, dst, sport, dport = dst, src, dport, sport
    digest = sha1(b"\x00\x00" + src + dst + _CID_TAIL.pack(proto, sport, dport)).digest()
    return "1:" + b2a_base64(digest, newline=False).decode()


def mac_text(raw: bytes | None) -> str | None:
    """Six MAC bytes in ECS form: ``00-1D-9C-AA-BB-01``."""
    if not raw or len(raw) != 6:
        return None
    return raw.hex("-").upper()


def ip_text(raw: bytes) -> str:
    """Packed IPv4/IPv6 address → text."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


class Flow:
    """One bidirectional flow; ``c``/``s`` prefixes mean client→server / server→client."""

    __slots__ = (
        "bytes_c",
        "bytes_s",
        "client_ip",
        "client_mac",
        "client_port",
        "closed",
        "conn",
        "ctx",
        "dissector",
        "end_reason",
        "end_ts",
        "fin_c",
        "fin_s",
        "first_ts",
        "key_c",
        "key_s",
        "last_ts",
        "packets_c",
        "packets_s",
        "probe_left",
        "protocol",
        "reassemble",
        "roles_from",
        "rst_c",
        "rst_s",
        "segment",
        "seq_c",
        "seq_s",
        "server_ip",
        "server_mac",
        "server_port",
        "stream_c",
        "stream_s",
        "syn",
        "synack",
        "transport",
        "vlan",
    )

    transport: int
    vlan: int
    first_ts: int
    last_ts: int
    client_ip: bytes
    client_port: int
    server_ip: bytes
    server_port: int
    roles_from: str
    segment: str
    key_c: tuple[bytes, int, bytes, int, int, int]
    key_s: tuple[bytes, int, bytes, int, int, int]

    def __init__(self) -> None:
        self.dissector: Dissector | None = None
        self.protocol = ""
        #: TCP: the flow's bytes go to its streams (a dissector is bound, or probes are left);
        #: a direction's stream is made at its first payload (most flows never carry a byte)
        self.reassemble = False
        self.stream_c: TcpStream | None = None
        self.stream_s: TcpStream | None = None
        #: the sequence number after a direction's SYN, kept until its stream is made (-1: none)
        self.seq_c = self.seq_s = -1
        self.ctx: FlowCtx | None = None
        self.fin_c = self.fin_s = self.closed = False
        self.packets_c = self.packets_s = self.bytes_c = self.bytes_s = 0
        self.probe_left = 0
        self.client_mac: bytes | None = None
        self.server_mac: bytes | None = None
        self.conn: Conn | None = None  # built on first use (``conn_of``)
        #: TCP: the first packet was the client's SYN; the server sent a SYN-ACK; who sent a RST
        self.syn = self.synack = self.rst_c = self.rst_s = False
        #: set when the flow leaves the table: packet time, and fin / rst / idle / evicted / end
        self.end_ts = 0
        self.end_reason = ""

    @property
    def packets(self) -> int:
        """Packets in both directions."""
        return self.packets_c + self.packets_s

    @property
    def state(self) -> str:
        """How far the connection got.

        TCP: ``rejected`` (SYN answered by RST), ``unanswered`` (SYN, no reply),
        ``half_open`` (SYN, SYN-ACK, then nothing or a client RST: the half-open scan pattern),
        ``established`` (SYN-ACK seen and the client went on, or the server replied to the SYN
        with something else the capture kept) or ``midstream`` (no SYN seen). UDP:
        ``established`` when both sides sent, else ``unanswered``.
        """
        if self.transport != TCP:
            return "established" if self.packets_c and self.packets_s else "unanswered"
        if self.synack:
            if self.syn and (self.packets_c == 1 or (self.packets_c == 2 and self.rst_c)):
                return "half_open"
            return "established"
        if not self.syn:
            return "midstream"
        if self.rst_s:
            return "rejected"
        return "established" if self.packets_s else "unanswered"


class FlowCtx:
    """The ``FlowContext`` a dissector gets: the connection (built lazily) and the event sink."""

    __slots__ = ("_conn", "emit", "flow", "table")

    def __init__(self, table: FlowTable, flow: Flow) -> None:
        self.table = table
        self.flow = flow
        self._conn: Conn | None = None
        #: pass an event to the pipeline's fan-out (the table's callback itself: no extra call)
        self.emit: Callable[[Event], None] = table.on_event

    @property
    def conn(self) -> Conn:
        """The flow's identity, with its Community ID."""
        if self._conn is None:
            self._conn = self.table.conn_of(self.flow)
        return self._conn

    def count_pdus(self, n: int = 1) -> None:
        """Count parsed PDUs for the flow's protocol."""
        self.table.pdus[self.flow.protocol] += n

    @property
    def frame(self) -> int:
        """Number of the packet being processed."""
        return self.table.frame

    @property
    def max_open_transactions(self) -> int:
        """Cap on a flow's requests awaiting a response."""
        return self.table.max_open_transactions

    @property
    def transaction_timeout_ns(self) -> int:
        """When an unanswered request is given up on."""
        return self.table.transaction_timeout_ns

    @property
    def tracer(self) -> Tracer | None:
        """The per-PDU hook of ``otsentry dissect``."""
        return self.table.tracer


class FlowTable:
    """Flows by key, with caps, idle expiry and the per-flow dissector binding."""

    def __init__(
        self,
        registry: DissectorRegistry,
        on_event: Callable[[Event], None],
        segment_for: Callable[[str, int | None], str],
        *,
        on_flow_start: Callable[[Flow], None] | None = None,
        on_flow_end: Callable[[Flow], None] | None = None,
        max_flows: int = 100_000,
        max_buffer_per_direction: int = 262_144,
        max_buffer_total: int = 134_217_728,
        max_ooo_segments: int = 64,
        idle_timeout: float = 300.0,
        closed_timeout: float = 5.0,
        max_open_transactions: int = 500,
        transaction_timeout: float = 30.0,
        tracer: Tracer | None = None,
    ) -> None:
        #: number of the packet being processed; the caller sets it before ``packet``
        self.frame = 0
        self.max_open_transactions = max_open_transactions
        self.transaction_timeout_ns = int(transaction_timeout * 1e9)
        self.tracer = tracer
        self.flows: dict[tuple[bytes, int, bytes, int, int, int], tuple[Flow, bool]] = {}
        self.on_event = on_event
        self.on_flow_start = on_flow_start
        self.on_flow_end = on_flow_end
        self.segment_for = segment_for
        self.tcp_ports: dict[int, DissectorSpec] = dict(registry.port_map("tcp"))
        self.udp_ports: dict[int, DissectorSpec] = dict(registry.port_map("udp"))
        self.tcp_probes = registry.probes("tcp")
        self.udp_probes = registry.probes("udp")
        self.max_flows = max_flows
        self.max_buffer = max_buffer_per_direction
        self.max_total = max_buffer_total
        self.max_ooo = max_ooo_segments
        self.idle_ns = int(idle_timeout * 1e9)
        self.closed_ns = int(closed_timeout * 1e9)
        self.sweep_every_ns = min(self.idle_ns, 10_000_000_000)
        self.next_sweep = 0
        self.stats = ReassemblyStats()
        self.pdus: Counter[str] = Counter()
        self.flows_total = 0
        self.flows_by_protocol: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()  # why flows left the table
        self.peak_flows = 0

    def __len__(self) -> int:
        return len(self.flows) // 2

    # -- per packet -------------------------------------------------------------------------
    def packet(self, pkt: Packet, ts: int, frame: bytes) -> None:
        """Account one decoded packet to its flow and feed the flow's dissector."""
        key, flags, seq, payload, _macoff = pkt
        entry = self.flows.get(key)
        transport = key[5]
        if entry is None:
            flow, fc = self._create(pkt, ts, frame)
        else:
            flow, fc = entry
            if flags & SYN and not flags & ACK and flow.closed and transport == TCP:
                self._end(flow, ts, "reused")
                flow, fc = self._create(pkt, ts, frame)
        flow.last_ts = ts
        if fc:
            flow.packets_c += 1
            flow.bytes_c += len(frame)
        else:
            flow.packets_s += 1
            flow.bytes_s += len(frame)
        if transport == TCP:
            stream = flow.stream_c if fc else flow.stream_s
            if flags & SYN:
                if stream is not None:
                    stream.syn(seq)
                elif fc:
                    flow.seq_c = (seq + 1) & 0xFFFFFFFF
                else:
                    flow.seq_s = (seq + 1) & 0xFFFFFFFF
                if flags & ACK and not fc:
                    flow.synack = True
                seq = (seq + 1) & 0xFFFFFFFF
            if payload and not flow.closed and flow.reassemble:
                if stream is None:
                    stream = self._stream(flow, fc)
                if flow.dissector is None and flow.probe_left:
                    self._probe(flow, fc, payload, ts)
                stream.segment(seq, payload, ts)
            if flags & (FIN | RST):
                self._fin_rst(flow, fc, flags, ts)
        elif payload:
            if flow.dissector is None and flow.probe_left:
                self._probe(flow, fc, payload, ts)
            if flow.dissector is not None:
                self._datagram(flow, fc, payload, ts)
        if ts >= self.next_sweep:
            self.sweep(ts)

    def fast_packet(self) -> Callable[[Packet, int, bytes], None]:
        """``packet`` itself, or with the compiled module its commonest case compiled: a TCP
        packet without SYN, FIN or RST on a known flow, carrying nothing or the next bytes of a
        stream with nothing buffered (``otsentry/_flowpath.c``; every other packet is handed to
        ``packet``)."""
        if SPEEDUPS is None or type(self) is not FlowTable:
            return self.packet
        return SPEEDUPS.FlowPath(self, Flow, TcpStream)  # type: ignore[no-any-return]

    # -- flow lifecycle ---------------------------------------------------------------------
    def _create(self, pkt: Packet, ts: int, frame: bytes) -> tuple[Flow, bool]:
        key, flags, _seq, _payload, macoff = pkt
        src, sport, dst, dport, vlan, transport = key
        if len(self.flows) >= 2 * self.max_flows:
            self._make_room(ts)
        ports = self.tcp_ports if transport == TCP else self.udp_ports
        fc, roles_from = self._roles(transport, flags, sport, dport, ports)
        flow = Flow()
        flow.transport = transport
        flow.vlan = vlan
        flow.first_ts = flow.last_ts = ts
        smac = frame[macoff + 6 : macoff + 12] if macoff >= 0 else None
        dmac = frame[macoff : macoff + 6] if macoff >= 0 else None
        # the packet's key is one of the flow's two: kept, the other one built
        if fc:
            flow.client_ip, flow.client_port, flow.server_ip, flow.server_port = (
                src,
                sport,
                dst,
                dport,
            )
            flow.client_mac, flow.server_mac = smac, dmac
            key_c, key_s = key, (dst, dport, src, sport, vlan, transport)
        else:
            flow.client_ip, flow.client_port, flow.server_ip, flow.server_port = (
                dst,
                dport,
                src,
                sport,
            )
            flow.client_mac, flow.server_mac = dmac, smac
            key_c, key_s = (dst, dport, src, sport, vlan, transport), key
        flow.roles_from = roles_from
        flow.syn = fc and transport == TCP and flags & (SYN | ACK) == SYN
        flow.segment = self.segment_for(ip_text(flow.server_ip), vlan_ids(vlan)[0])
        flow.key_c, flow.key_s = key_c, key_s
        self.flows[key_c] = (flow, True)
        self.flows[key_s] = (flow, False)
        self.flows_total += 1
        if len(self.flows) > 2 * self.peak_flows:
            self.peak_flows = len(self.flows) // 2
        spec = ports.get(flow.server_port)
        probes = self.tcp_probes if transport == TCP else self.udp_probes
        if spec is not None:
            self._attach(flow, spec)
        elif probes:
            flow.probe_left = _PROBE_PACKETS
            flow.reassemble = transport == TCP
        if self.on_flow_start is not None:
            self.on_flow_start(flow)
        return flow, fc

    @staticmethod
    def _roles(
        transport: int, flags: int, sport: int, dport: int, ports: dict[int, DissectorSpec]
    ) -> tuple[bool, str]:
        """Is the packet's sender the client, and how do we know."""
        if transport == TCP and flags & SYN:
            sender_is_client = not flags & ACK
            if (sport in ports) != (dport in ports) and sender_is_client != (dport in ports):
                # the handshake says the protocol's port is the client's: believe the port (a
                # PLC does not dial out from 502), as tshark and Zeek decide too
                return dport in ports, "port"
            return sender_is_client, "handshake"
        s_known = sport in ports or sport < 1024
        d_known = dport in ports or dport < 1024
        if d_known != s_known:
            return d_known, "port"
        if not d_known and (sport < _EPHEMERAL_START) != (dport < _EPHEMERAL_START):
            return dport < sport, "port"
        return True, "first_sender"

    def _stream(self, flow: Flow, fc: bool) -> TcpStream:
        """Make the stream of one direction of a flow that reassembles, in the state the SYN
        seen (if any) left it."""
        stream = TcpStream(fc, self.stats, self.max_buffer, self.max_ooo, self.max_total, self)
        stream.dissector = flow.dissector
        if fc:
            stream.next_seq = flow.seq_c
            flow.stream_c = stream
        else:
            stream.next_seq = flow.seq_s
            flow.stream_s = stream
        return stream

    def _attach(self, flow: Flow, spec: DissectorSpec) -> None:
        flow.protocol = spec.name
        flow.probe_left = 0
        flow.ctx = FlowCtx(self, flow)
        try:
            flow.dissector = spec.factory(flow.ctx)
        except Exception:
            self.stats.dissector_errors += 1
            return
        self.flows_by_protocol[spec.name] += 1
        if flow.transport == TCP:
            flow.reassemble = True
            for stream in (flow.stream_c, flow.stream_s):
                if stream is not None:
                    stream.dissector = flow.dissector

    def _probe(self, flow: Flow, fc: bool, payload: bytes, ts: int) -> None:
        flow.probe_left -= 1
        for spec in self.tcp_probes if flow.transport == TCP else self.udp_probes:
            try:
                hit = spec.probe(payload, fc)  # type: ignore[misc]
            except Exception:
                self.stats.dissector_errors += 1
                hit = False
            if hit:
                self._attach(flow, spec)
                # the other direction may have sent bytes the dissector never saw
                if flow.transport == TCP:
                    other = flow.stream_s if fc else flow.stream_c
                    if other is None:
                        other = self._stream(flow, not fc)
                    if other.next_seq >= 0:
                        other._notify_gap(ts)
                return
        if not flow.probe_left and flow.reassemble:
            flow.reassemble = False
            for stream in (flow.stream_c, flow.stream_s):
                if stream is not None:
                    stream.release()
            flow.stream_c = flow.stream_s = None

    def _datagram(self, flow: Flow, fc: bool, payload: bytes, ts: int) -> None:
        try:
            flow.dissector.parse(payload, 0, fc, ts)  # type: ignore[union-attr]
        except Exception:
            self.stats.dissector_errors += 1

    def _fin_rst(self, flow: Flow, fc: bool, flags: int, ts: int) -> None:
        if flags & RST:
            if fc:
                flow.rst_c = True
            else:
                flow.rst_s = True
            self._finish(flow, ts)
            return
        if fc:
            flow.fin_c = True
        else:
            flow.fin_s = True
        if flow.fin_c and flow.fin_s:
            self._finish(flow, ts)

    def _finish(self, flow: Flow, ts: int) -> None:
        """The connection closed: flush its streams and close its dissector."""
        if flow.closed:
            return
        flow.closed = True
        for stream in (flow.stream_c, flow.stream_s):
            if stream is not None:
                stream.finish(ts)
        if flow.dissector is not None:
            try:
                flow.dissector.close(ts)
            except Exception:
                self.stats.dissector_errors += 1

    def _end(self, flow: Flow, ts: int, reason: str) -> None:
        """Remove a flow from the table (closing it first if needed)."""
        if flow.closed:
            flow.end_reason = "rst" if flow.rst_c or flow.rst_s else "fin"
        else:
            flow.end_reason = _END_REASONS.get(reason, reason)
        flow.end_ts = ts
        self._finish(flow, ts)
        for stream in (flow.stream_c, flow.stream_s):
            if stream is not None:
                stream.release()
        self.flows.pop(flow.key_c, None)
        self.flows.pop(flow.key_s, None)
        self.ended[reason] += 1
        if self.on_flow_end is not None:
            self.on_flow_end(flow)
        # flow -> context -> flow (and dissector -> context -> flow) are cycles: undone here, an
        # ended flow is freed as soon as nothing refers to it, not at the next full collection
        ctx = flow.ctx
        if ctx is not None:
            flow.ctx = None
            del ctx.flow

    def sweep(self, ts: int) -> None:
        """End flows that closed a while ago or went idle."""
        self.next_sweep = ts + self.sweep_every_ns
        idle_before = ts - self.idle_ns
        closed_before = ts - self.closed_ns
        done = [
            flow
            for flow, fc in self.flows.values()
            if fc and (flow.last_ts < idle_before or (flow.closed and flow.last_ts < closed_before))
        ]
        for flow in done:
            self._end(flow, ts, "closed" if flow.closed else "idle")

    def _make_room(self, ts: int) -> None:
        """At the flow cap: sweep, then evict the least recently active tenth."""
        self.sweep(ts)
        if len(self.flows) < 2 * self.max_flows:
            return
        flows = sorted(
            (f for f, fc in self.flows.values() if fc),
            key=lambda f: (not f.closed, f.last_ts),
        )
        for flow in flows[: max(1, len(flows) // 10)]:
            self._end(flow, ts, "evicted")

    def close_all(self, ts: int) -> None:
        """End every flow (end of capture)."""
        for flow in [f for f, fc in self.flows.values() if fc]:
            self._end(flow, ts, "end_of_capture")

    # -- identity ---------------------------------------------------------------------------
    @staticmethod
    def conn_of(flow: Flow) -> Conn:
        """A flow's ``Conn`` (see ``conn_of``)."""
        return conn_of(flow)


def conn_of(flow: Flow) -> Conn:
    """A flow's ``Conn`` (Community ID v1, text addresses, ECS MACs), built once per flow."""
    conn = flow.conn
    if conn is None:
        conn = flow.conn = _make_conn(flow)
    return conn


def _make_conn(flow: Flow) -> Conn:
    transport = flow.transport
    client_ip, client_port, server_ip, server_port = (
        flow.client_ip,
        flow.client_port,
        flow.server_ip,
        flow.server_port,
    )
    outer, inner = vlan_ids(flow.vlan)
    return Conn(  # positional (faster), in the order of Conn's fields
        community_id(client_ip, server_ip, client_port, server_port, transport),
        "tcp" if transport == TCP else "udp" if transport == UDP else "ip",
        ip_text(client_ip),
        client_port,
        ip_text(server_ip),
        server_port,
        mac_text(flow.client_mac),
        mac_text(flow.server_mac),
        outer,
        inner,
        flow.segment,
        flow.roles_from,
    )
