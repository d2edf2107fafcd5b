"""S7comm / S7comm-plus conformance: our per-PDU dump (``otsentry.dissect.dump.iter_records``,
protocols ``s7comm`` and ``s7comm-plus``) against tshark 4.0, against our own TPKT/COTP walk of
the TCP payloads, and against ICSNPP's expected Zeek logs.

Captures: the lab captures ``pcaps/*s7*.pcap`` and every shared capture whose ``MANIFEST.tsv``
column ``s7comm_pdus`` is > 0 (``S7_CAPTURES``); for S7comm-plus also every shared capture whose
notes give "S7comm-plus PDUs (raw TPKT/COTP count ...): N" (``PLUS_CAPTURES``; the S7comm-only
captures are in that list too, expecting none). Everything skips when ../shared/pcaps or tshark
is absent, and the tests that need our dump skip while no S7comm dissector is registered.

How an S7comm PDU is compared with tshark (``ws_key`` / ``our_key``)
--------------------------------------------------------------------
Per frame, the multiset of keys must be equal — every frame, every PDU:

  (direction, rosctr, pdu_reference, function, item_count, error_class, error_code,
   userdata_group, userdata_subfunction, szl_id)

==========================  ===============================================================
ours                        tshark
==========================  ===============================================================
direction                   by TCP port: to 102 = request, from 102 = response (tshark does
                            not tag it; a Job the PLC sends during a download is a
                            "response" by transport, on both sides)
rosctr, pdu_reference       ``s7comm.header.rosctr``, ``s7comm.header.pduref`` (big-endian)
function                    ``s7comm.param.func`` (absent for User-Data and a bare Ack)
item_count                  ``s7comm.param.itemcount`` (tshark shows it for Read / Write Var
                            only, in every capture of the corpus)
error_class, error_code     ``s7comm.header.errcls`` / ``errcod`` (Ack and Ack-Data headers)
userdata_group / _subfn.    ``s7comm.param.userdata.funcgroup`` / ``.subfunc``
szl_id                      ``s7comm.data.userdata.szl_id``: tshark reads the SZL header of a
                            fragmented answer from the data it reassembles, i.e. only in the
                            last fragment's frame (first fragments show none)
==========================  ===============================================================

Attribution: a frame's PDUs are all ``s7comm`` trees tshark prints for it, in order (several
TPKTs per TCP segment are duplicate JSON keys; see ``wireshark.py``). A PDU that tshark
reassembles from several COTP DT TPDUs (or from several TCP segments) belongs to the frame
holding its last DT, where tshark prints it with a ``cotp.segments`` tree; ours reports a PDU at
the frame where its last byte arrived, so both name the same frame.

What is left out of the per-frame comparison, and checked apart
---------------------------------------------------------------
* Frames tshark marks malformed (``_ws.malformed``): ours must flag an anomaly on a PDU of that
  frame, or of that flow when ours has no PDU in the frame (``pcaps/s7comm_engineering.pcap``:
  python-snap7's SZL 0x0011 answer with 26-byte records where the list defines 28, Read Var
  Jobs with a 1-byte parameter (no item count), a PI-Service Job whose parameter block length
  runs past its parameter; what tshark decoded of them before giving up is not compared).
* Segments tshark flags as a TCP (spurious / fast) retransmission and dissects nothing in,
  although they carry sequence numbers no earlier segment of their direction covered
  (``wireshark.retransmitted_new_data``; ``s7comm_clean.pcap``: 12 frames such as 398 — the
  client ACKed the server's segment before its first copy was captured). Their bytes are S7comm
  only our walk and ours decode: there ours must equal the walk's S7 headers (direction,
  rosctr, pdu reference, function, error class and code).
* S7comm-plus is not in it (tshark 4.0 has no S7comm-plus dissector: it prints the TSDU as
  ``data``). Reference: our TPKT/COTP walk (``wireshark.walk_tpkt``), checked against tshark's
  ``data`` per frame and against the MANIFEST's raw counts, and ICSNPP's s7comm_plus.log.

The walk itself is held to tshark (``test_walk_agrees_with_tshark``): per frame the same number
of S7comm TSDUs as tshark's PDUs and of 0x72 TSDUs as tshark's ``data`` starting with 0x72,
except in the retransmitted-new-bytes frames above. One MANIFEST count is wrong and pinned in
``MANIFEST_PLUS_MISCOUNT``.

COTP (``test_cotp_*``): tshark's ``cotp.type`` per frame is kept; our dump lists no COTP-only
TPDU (CR, CC, DR, DT without EOT) as a PDU, so a frame showing only such TPDUs must hold no PDU
of ours, and every PDU tshark reassembles from several DT TPDUs must be ours at the frame of
its last DT.

ICSNPP (``icsnpp_logs.py`` lists its quirks): s7comm.log, s7comm_read_szl.log,
s7comm_upload_download.log and s7comm_plus.log of snap7.pcap, s7ident.pcap and
s7comm_plus.pcap. The plugin parses one TPKT per TCP delivery and drops PDUs it fails to
parse, so where it and tshark (or the walk) disagree the difference is pinned exactly in
``ICSNPP_DISAGREEMENT`` and ours must equal one of the two there; elsewhere ours equals ICSNPP.

Every failure lists the first ``SHOW`` mismatching frames as "only tshark" / "only ours".
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LAB_PCAPS, SHARED_PCAPS, capture_path, lab_pcaps
from tests.dissectors.s7comm.icsnpp_logs import (
    ICSNPP_REFERENCES,
    IcsnppReference,
    read_plus_log,
    read_s7comm_log,
    read_szl_log,
    read_upload_download_log,
    swap16,
)
from tests.dissectors.s7comm.wireshark import (
    COTP_TYPES,
    S7COMM_ID,
    S7COMM_PLUS_ID,
    Walk,
    WsCapture,
    WsPdu,
    cached_tshark,
    cached_walk,
    retransmitted_new_data,
)

#: How many mismatching frames a failure prints.
SHOW = 15

# --- which captures ----------------------------------------------------------------------------

_PLUS_NOTE = re.compile(r"S7comm-plus PDUs \(raw TPKT/COTP count[^)]*\): (\d+)")


def _manifest_rows() -> tuple[list[str], list[list[str]]]:
    manifest = SHARED_PCAPS / "MANIFEST.tsv"
    if not manifest.is_file():
        return [], []
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], rows[1:]


def _manifest_s7() -> list[str]:
    header, rows = _manifest_rows()
    col = header.index("s7comm_pdus") if "s7comm_pdus" in header else 8
    return sorted(row[0] for row in rows if len(row) > col and int(row[col] or 0) > 0)


def _manifest_plus() -> dict[str, int]:
    """Shared capture → the MANIFEST's raw S7comm-plus count (from its notes column)."""
    header, rows = _manifest_rows()
    col = header.index("notes") if "notes" in header else 10
    out = {}
    for row in rows:
        m = _PLUS_NOTE.search(row[col]) if len(row) > col else None
        if m:
            out[row[0]] = int(m.group(1))
    return out


MANIFEST_PLUS = {f"shared/{rel}": n for rel, n in _manifest_plus().items()}


def _capture_ids() -> list[str]:
    ids = [f"lab/{p.name}" for p in lab_pcaps() if "s7" in p.name]
    shared = _manifest_s7()
    ids += [f"shared/{rel}" for rel in shared] if shared else ["shared/(absent)"]
    return ids


S7_CAPTURES = _capture_ids()
PLUS_CAPTURES = sorted(set(S7_CAPTURES) | set(MANIFEST_PLUS))

#: Where the MANIFEST's raw S7comm-plus count is wrong: capture → (MANIFEST, walk = tshark).
#: S7-1511-opc-request-all-types.pcap holds every frame twice (the copies are TCP
#: retransmissions to tshark); 9 request/response pairs travel, 18 TSDUs start with 0x72 in
#: both tshark's ``data`` and our walk (frames 9, 11, 14, 16, 20, 22, 29, 31, 35, 37, 41, 43,
#: 47, 49, 53, 55, 62, 64).
MANIFEST_PLUS_MISCOUNT: dict[str, tuple[int, int]] = {
    "shared/iti-ics-security-tools/pcaps/s7/S7-1511-opc-request-all-types.pcap": (12, 18),
}


# --- our dump ----------------------------------------------------------------------------------

PROTOCOLS = ("s7comm", "s7comm-plus")


@dataclass(frozen=True, slots=True)
class OurPdu:
    """The fields of one dump record the comparisons need."""

    frame: int
    protocol: str
    direction: str | None
    src: str
    dst: str
    rosctr: int | None = None
    pdu_reference: int | None = None
    function: int | None = None
    item_count: int | None = None
    error_class: int | None = None
    error_code: int | None = None
    userdata_group: int | None = None
    userdata_subfunction: int | None = None
    szl_id: int | None = None
    version: int | None = None  # S7comm-plus
    opcode: int | None = None  # S7comm-plus
    plus_function: int | None = None  # S7comm-plus ``function``
    anomalies: tuple[str, ...] = ()

    @property
    def client_server(self) -> tuple[str, str]:
        return (self.dst, self.src) if self.direction == "response" else (self.src, self.dst)


@functools.cache
def our_records(path: Path) -> tuple[OurPdu, ...]:
    """Our dump of ``path`` (S7comm and S7comm-plus records), memoised."""
    from otsentry.dissect.dump import iter_records

    out = []
    for rec in iter_records(path, protocols=PROTOCOLS, decode_as=()):
        protocol = rec["protocol"]
        body = rec.get(protocol) or {}
        common: dict[str, Any] = {
            "frame": int(rec["frame"]),
            "protocol": protocol,
            "direction": rec.get("direction"),
            "src": str(rec.get("src")),
            "dst": str(rec.get("dst")),
            "anomalies": tuple(body.get("anomalies") or ()),
        }
        if protocol == "s7comm":
            out.append(
                OurPdu(
                    **common,
                    rosctr=body.get("rosctr"),
                    pdu_reference=body.get("pdu_reference"),
                    function=body.get("function"),
                    item_count=body.get("item_count"),
                    error_class=body.get("error_class"),
                    error_code=body.get("error_code"),
                    userdata_group=body.get("userdata_group"),
                    userdata_subfunction=body.get("userdata_subfunction"),
                    szl_id=body.get("szl_id"),
                )
            )
        else:
            out.append(
                OurPdu(
                    **common,
                    version=body.get("version"),
                    opcode=body.get("opcode"),
                    plus_function=body.get("function"),
                )
            )
    return tuple(out)


def our_s7(path: Path) -> list[OurPdu]:
    return [p for p in our_records(path) if p.protocol == "s7comm"]


def our_plus(path: Path) -> list[OurPdu]:
    return [p for p in our_records(path) if p.protocol == "s7comm-plus"]


def _by_frame(pdus: Iterable[OurPdu]) -> dict[int, list[OurPdu]]:
    frames: dict[int, list[OurPdu]] = {}
    for p in pdus:
        frames.setdefault(p.frame, []).append(p)
    return frames


# --- the PDU key -------------------------------------------------------------------------------

Key = tuple[
    str | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
]


def ws_key(p: WsPdu) -> Key:
    return (
        p.direction,
        p.rosctr,
        p.pdu_reference,
        p.function,
        p.item_count,
        p.error_class,
        p.error_code,
        p.userdata_group,
        p.userdata_subfunction,
        p.szl_id,
    )


def our_key(p: OurPdu) -> Key:
    return (
        p.direction,
        p.rosctr,
        p.pdu_reference,
        p.function,
        p.item_count,
        p.error_class,
        p.error_code,
        p.userdata_group,
        p.userdata_subfunction,
        p.szl_id,
    )


def _h(v: int | None, width: int = 2) -> str:
    return "-" if v is None else f"0x{v:0{width}x}"


def show_key(key: Key) -> str:
    direction, rosctr, ref, fn, items, ecls, ecod, group, sub, szl = key
    text = f"{(direction or '?')[:4]} rosctr={rosctr} ref={ref}"
    if fn is not None:
        text += f" fn={_h(fn)}"
    if items is not None:
        text += f" items={items}"
    if ecls is not None or ecod is not None:
        text += f" err={_h(ecls)}/{_h(ecod)}"
    if group is not None or sub is not None:
        text += f" ud={group}/{sub}"
    if szl is not None:
        text += f" szl={_h(szl, 4)}"
    return text


def _counter_text(c: Counter[Any], show: Any = str) -> str:
    return "; ".join(
        f"{show(k)}" + (f" x{n}" if n > 1 else "") for k, n in sorted(c.items(), key=repr)
    )


def excluded_frames(ws: WsCapture) -> set[int]:
    """Frames left out of the per-frame comparison (see module doc)."""
    return ws.malformed_frames | retransmitted_new_data(ws)


FrameDiff = list[tuple[int, Counter[Any], Counter[Any]]]


def frame_diff(ws: WsCapture, ours: Sequence[OurPdu]) -> FrameDiff:
    """Frames (not excluded) whose key multisets differ: (frame, only tshark, only ours)."""
    mine = _by_frame(ours)
    skip = excluded_frames(ws)
    out: FrameDiff = []
    for frame in sorted(set(ws.pdus) | set(mine)):
        if frame in skip:
            continue
        theirs = Counter(ws_key(p) for p in ws.pdus.get(frame, []))
        ours_c = Counter(our_key(p) for p in mine.get(frame, []))
        if theirs != ours_c:
            out.append((frame, theirs - ours_c, ours_c - theirs))
    return out


def render_frame_diff(
    path: Path,
    diff: FrameDiff,
    totals: str,
    show: Any = show_key,
    left: str = "tshark",
) -> str:
    lines = [f"{path}: {len(diff)} frame(s) differ ({totals}); first {min(SHOW, len(diff))}:"]
    for frame, only_ref, only_ours in diff[:SHOW]:
        lines.append(f"  frame {frame}:")
        if only_ref:
            lines.append(f"    only {left}: {_counter_text(only_ref, show)}")
        if only_ours:
            lines.append(
                f"    only ours:{' ' * max(1, len(left) - 3)}{_counter_text(only_ours, show)}"
            )
    return "\n".join(lines)


def _load(capture: str, request: pytest.FixtureRequest, tshark: str) -> tuple[Path, WsCapture]:
    path = capture_path(capture, request)
    return path, cached_tshark(tshark, path)


# --- 1. S7comm per frame against tshark ---------------------------------------------------------


@pytest.mark.parametrize("capture", S7_CAPTURES)
def test_pdus_per_frame_equal_tshark(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Per frame, the multiset of S7comm PDU keys (see module doc) equals tshark's."""
    path, ws = _load(capture, request, tshark)
    ours = our_s7(path)
    diff = frame_diff(ws, ours)
    assert not diff, render_frame_diff(path, diff, f"tshark {ws.total} PDUs, ours {len(ours)}")


@pytest.mark.parametrize("capture", S7_CAPTURES)
def test_pdu_total_equals_tshark(capture: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """Total S7comm PDUs are equal outside the excluded frames (malformed, retransmitted new
    bytes)."""
    path, ws = _load(capture, request, tshark)
    ours = our_s7(path)
    skip = excluded_frames(ws)
    theirs = sum(len(v) for f, v in ws.pdus.items() if f not in skip)
    mine = sum(1 for p in ours if p.frame not in skip)
    by_rosctr = Counter(p.rosctr for p in ours)
    assert mine == theirs, (
        f"{path}: tshark {theirs} S7comm PDUs, ours {mine} (outside {len(skip)} excluded"
        f" frames; ours in all: {len(ours)}, by rosctr {dict(by_rosctr)})"
    )


@pytest.mark.parametrize("capture", S7_CAPTURES)
def test_malformed_frames_carry_anomalies(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Where tshark marks a frame malformed, ours flags an anomaly on a PDU of that frame, or of
    that flow if ours has none in the frame."""
    path, ws = _load(capture, request, tshark)
    if not ws.malformed_frames:
        return
    ours = our_records(path)
    mine = _by_frame(ours)
    missing = []
    for frame in sorted(ws.malformed_frames):
        here = mine.get(frame, [])
        if any(p.anomalies for p in here):
            continue
        seg = ws.segments.get(frame)
        flows = {frozenset((p.src, p.dst)) for p in ws.pdus.get(frame, [])}
        if seg is not None:
            flows.add(frozenset((seg.src, seg.dst)))
        if not here and any(p.anomalies for p in ours if frozenset((p.src, p.dst)) in flows):
            continue
        theirs = "; ".join(show_key(ws_key(p)) for p in ws.pdus.get(frame, []))
        mine_text = "; ".join(f"{show_key(our_key(p))} anomalies={list(p.anomalies)}" for p in here)
        missing.append(f"  frame {frame}: tshark [{theirs}] ours [{mine_text or 'no PDU'}]")
    assert not missing, (
        f"{path}: tshark-malformed frames without an anomaly of ours:\n" + "\n".join(missing[:SHOW])
    )


HeaderKey = tuple[str | None, int | None, int | None, int | None, int | None, int | None]


def _show_header(k: HeaderKey) -> str:
    direction, rosctr, ref, fn, ecls, ecod = k
    text = f"{(direction or '?')[:4]} rosctr={rosctr} ref={ref} fn={_h(fn)}"
    if ecls is not None:
        text += f" err={_h(ecls)}/{_h(ecod)}"
    return text


@pytest.mark.parametrize("capture", S7_CAPTURES)
def test_retransmitted_new_bytes_equal_walk(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """In segments tshark flags as retransmissions but which carry bytes never captured before
    (see module doc), ours reports exactly the S7comm PDUs our TPKT/COTP walk finds there:
    same direction, rosctr, PDU reference, function and header error fields."""
    path, ws = _load(capture, request, tshark)
    frames = retransmitted_new_data(ws)
    if not frames:
        return
    walk = cached_walk(tshark, path)
    mine = _by_frame(our_s7(path))
    diff: FrameDiff = []
    for frame in sorted(frames):
        theirs: Counter[HeaderKey] = Counter()
        for t in walk.tsdus:
            header = t.s7_header() if t.frame == frame else None
            if header is not None:
                theirs[(t.direction, *header)] += 1
        ours_c: Counter[HeaderKey] = Counter(
            (p.direction, p.rosctr, p.pdu_reference, p.function, p.error_class, p.error_code)
            for p in mine.get(frame, [])
        )
        if theirs != ours_c:
            diff.append((frame, theirs - ours_c, ours_c - theirs))
    assert not diff, render_frame_diff(
        path, diff, f"{len(frames)} retransmitted frames with new bytes", _show_header, "walk"
    )


# --- 2. COTP -------------------------------------------------------------------------------------


def _cotp_names(types: Iterable[int]) -> str:
    return ",".join(COTP_TYPES.get(t, f"0x{t:02x}") for t in types)


@pytest.mark.parametrize("capture", S7_CAPTURES)
def test_cotp_reassembled_pdus_reported_at_completing_frame(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Every S7comm PDU tshark reassembles from several COTP DT TPDUs is ours at the frame of
    its last DT (with the same key)."""
    path, ws = _load(capture, request, tshark)
    ours = our_s7(path)
    mine = _by_frame(ours)
    skip = excluded_frames(ws)
    problems = []
    checked = 0
    for frame, pdus in sorted(ws.pdus.items()):
        if frame in skip:
            continue
        pool = Counter(our_key(p) for p in mine.get(frame, []))
        for p in pdus:
            if not p.reassembled:
                continue
            checked += 1
            key = ws_key(p)
            if pool[key] > 0:
                pool[key] -= 1
                continue
            elsewhere = sorted({o.frame for o in ours if our_key(o) == key})
            problems.append(
                f"  frame {frame} (DTs in frames {list(p.cotp_segments)}): only tshark"
                f" {show_key(key)}; ours has it at {elsewhere or 'no frame'}"
            )
    assert not problems, (
        f"{path}: {len(problems)} of {checked} PDUs tshark reassembles from several DT TPDUs"
        f" are not ours at the completing frame; first {SHOW}:\n" + "\n".join(problems[:SHOW])
    )


@pytest.mark.parametrize("capture", S7_CAPTURES)
def test_cotp_only_frames_hold_no_pdu_of_ours(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """A frame whose TPDUs are all COTP-only to tshark (CR, CC, DR, ER, a DT without EOT: no
    S7comm PDU and no complete TSDU in it) holds no PDU of ours, S7comm or S7comm-plus."""
    path, ws = _load(capture, request, tshark)
    mine = _by_frame(our_records(path))
    skip = excluded_frames(ws)
    problems = []
    for frame, types in sorted(ws.cotp_types.items()):
        if frame in skip or frame in ws.pdus or frame in ws.cotp_data:
            continue
        here = mine.get(frame, [])
        if here:
            text = "; ".join(
                show_key(our_key(p)) if p.protocol == "s7comm" else f"s7comm-plus v{p.version}"
                for p in here
            )
            problems.append(f"  frame {frame} (COTP {_cotp_names(types)}): only ours: {text}")
    assert not problems, (
        f"{path}: PDUs of ours in frames holding only COTP TPDUs; first {SHOW}:\n"
        + "\n".join(problems[:SHOW])
    )


# --- 3. the walk, S7comm-plus ----------------------------------------------------------------------


def _walk_counts(walk: Walk, protocol_id: int) -> Counter[int]:
    return Counter(t.frame for t in walk.by_protocol(protocol_id))


@pytest.mark.parametrize("capture", PLUS_CAPTURES)
def test_walk_agrees_with_tshark(capture: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """The reference walk is itself held to tshark: per frame, as many S7comm TSDUs as tshark
    has S7comm PDUs and as many 0x72 TSDUs as tshark shows undissected TSDUs starting with 0x72
    (outside malformed frames); where tshark skips retransmitted new bytes, tshark has none."""
    path, ws = _load(capture, request, tshark)
    walk = cached_walk(tshark, path)
    retrans = retransmitted_new_data(ws)
    problems = []
    pairs = (
        ("S7comm", _walk_counts(walk, S7COMM_ID), Counter({f: len(v) for f, v in ws.pdus.items()})),
        ("S7comm-plus", _walk_counts(walk, S7COMM_PLUS_ID), Counter(ws.plus_per_frame())),
    )
    for what, walked, theirs in pairs:
        for frame in sorted(set(walked) | set(theirs)):
            if frame in ws.malformed_frames or walked[frame] == theirs[frame]:
                continue
            if frame in retrans and theirs[frame] == 0:
                continue
            problems.append(f"  frame {frame}: {what} walk {walked[frame]}, tshark {theirs[frame]}")
    where = f" (walk stopped: not TPKT {walk.broken}, unfilled holes {walk.holes})"
    assert not problems, f"{path}: walk vs tshark{where}:\n" + "\n".join(problems[:SHOW])


@pytest.mark.parametrize("capture", PLUS_CAPTURES)
def test_plus_walk_equals_manifest(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """The walk's S7comm-plus TSDU count is the MANIFEST's raw count (0 where it names none),
    but where ``MANIFEST_PLUS_MISCOUNT`` pins the MANIFEST wrong."""
    path = capture_path(capture, request)
    walked = len(cached_walk(tshark, path).by_protocol(S7COMM_PLUS_ID))
    expected = MANIFEST_PLUS.get(capture, 0)
    if capture in MANIFEST_PLUS_MISCOUNT:
        assert (expected, walked) == MANIFEST_PLUS_MISCOUNT[capture], path
        return
    assert walked == expected, f"{path}: walk {walked} S7comm-plus TSDUs, MANIFEST {expected}"


PlusKey = tuple[str | None, int | None]


def _show_plus(k: PlusKey) -> str:
    return f"{(k[0] or '?')[:4]} v{k[1]}"


def _plus_diff(walk: Walk, ours: Sequence[OurPdu]) -> FrameDiff:
    walked: dict[int, Counter[PlusKey]] = {}
    for t in walk.by_protocol(S7COMM_PLUS_ID):
        walked.setdefault(t.frame, Counter())[(t.direction, t.version)] += 1
    mine: dict[int, Counter[PlusKey]] = {}
    for p in ours:
        mine.setdefault(p.frame, Counter())[(p.direction, p.version)] += 1
    out: FrameDiff = []
    for frame in sorted(set(walked) | set(mine)):
        a, b = walked.get(frame, Counter()), mine.get(frame, Counter())
        if a != b:
            out.append((frame, a - b, b - a))
    return out


def _fragments(walk: Walk) -> int:
    return sum(1 for t in walk.by_protocol(S7COMM_PLUS_ID) if not t.plus_whole)


@pytest.mark.parametrize("capture", PLUS_CAPTURES)
def test_plus_count_equals_walk(capture: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """Ours reports one S7comm-plus record per COTP TSDU starting with 0x72, as many as the walk
    counts (the MANIFEST's raw count)."""
    path = capture_path(capture, request)
    walk = cached_walk(tshark, path)
    ours = our_plus(path)
    walked = len(walk.by_protocol(S7COMM_PLUS_ID))
    if len(ours) != walked:
        diff = _plus_diff(walk, ours)
        totals = (
            f"walk {walked} S7comm-plus TSDUs ({_fragments(walk)} of them S7comm-plus fragments"
            f" without trailer), ours {len(ours)} records"
        )
        pytest.fail(render_frame_diff(path, diff, totals, _show_plus, "walk"))


@pytest.mark.parametrize("capture", PLUS_CAPTURES)
def test_plus_pdus_per_frame_equal_walk(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Per frame, ours' S7comm-plus (direction, version) multiset equals the walk's (the frame
    delivering a TSDU's last byte; version = the byte after 0x72)."""
    path = capture_path(capture, request)
    walk = cached_walk(tshark, path)
    ours = our_plus(path)
    diff = _plus_diff(walk, ours)
    totals = f"walk {len(walk.by_protocol(S7COMM_PLUS_ID))}, ours {len(ours)}"
    assert not diff, render_frame_diff(path, diff, totals, _show_plus, "walk")


@pytest.mark.parametrize(
    "name", sorted(p.name for p in lab_pcaps() if "s7" not in p.name) or ["(none)"]
)
def test_no_s7_in_other_lab_captures(name: str, tshark: str) -> None:
    """Negative control: the lab's Modbus / OPC UA captures hold no S7comm and no S7comm-plus,
    for tshark, for the walk, and for ours."""
    path = LAB_PCAPS / name
    if not path.is_file():
        pytest.skip("no non-S7 lab capture")
    ws = cached_tshark(tshark, path)
    assert ws.total == 0 and not ws.cotp_types, f"{path}: tshark shows ISO-on-TCP"
    assert cached_walk(tshark, path).tsdus == [], f"{path}: the walk finds COTP TSDUs"
    assert our_records(path) == ()


# --- 4. ICSNPP expected logs ---------------------------------------------------------------------

#: s7comm.log key: (client, server, direction, rosctr, PDU reference as on the wire, function,
#: userdata group, userdata subfunction, header error (class, code) of Ack / Ack-Data)
IKey = tuple[str, str, str | None, int | None, int | None, int | None, int | None, int | None, Any]
#: s7comm_read_szl.log key: (client, server, direction, PDU reference, SZL id)
SKey = tuple[str, str, str | None, int | None, int | None]
#: s7comm_upload_download.log key: (client, server, direction, rosctr, PDU reference, function)
UKey = tuple[str, str, str | None, int | None, int | None, int | None]
#: s7comm_plus.log key: (client, server, direction, version, opcode, function); against the
#: walk only (client, server, direction, version) is known, the rest is None
PKey = tuple[str, str, str | None, int | None, int | None, int | None]

UPLOAD_DOWNLOAD = frozenset(range(0x1A, 0x20))


def _ikey(client: str, server: str, p: WsPdu | OurPdu) -> IKey:
    userdata = p.rosctr == 7
    return (
        client,
        server,
        p.direction,
        p.rosctr,
        p.pdu_reference,
        None if userdata else p.function,
        p.userdata_group if userdata else None,
        p.userdata_subfunction if userdata else None,
        (p.error_class, p.error_code) if p.rosctr in (2, 3) else None,
    )


def _client_server(p: WsPdu | OurPdu) -> tuple[str, str]:
    return (p.dst, p.src) if p.direction == "response" else (p.src, p.dst)


def pdu_counts(pdus: Iterable[WsPdu | OurPdu]) -> dict[str, Counter[Any]]:
    """tshark's or ours' S7comm PDUs projected on the keys of the three S7comm logs."""
    s7: Counter[IKey] = Counter()
    szl: Counter[SKey] = Counter()
    updown: Counter[UKey] = Counter()
    for p in pdus:
        client, server = _client_server(p)
        s7[_ikey(client, server, p)] += 1
        if p.rosctr == 7 and p.szl_id is not None:
            szl[(client, server, p.direction, p.pdu_reference, p.szl_id)] += 1
        if p.rosctr in (1, 3) and p.function in UPLOAD_DOWNLOAD:
            updown[(client, server, p.direction, p.rosctr, p.pdu_reference, p.function)] += 1
    return {"s7comm": s7, "read_szl": szl, "upload_download": updown}


def icsnpp_counts(ref: IcsnppReference, root: Path) -> dict[str, Counter[Any]]:
    """ICSNPP's rows on the same keys (PDU references swapped back to wire order)."""
    out: dict[str, Counter[Any]] = {}
    out["s7comm"] = Counter(
        (
            r.orig,
            r.resp,
            r.direction,
            r.rosctr,
            r.wire_pdu_reference,
            r.function,
            r.userdata_group,
            r.userdata_subfunction,
            r.header_error,
        )
        for r in read_s7comm_log(root / ref.s7comm_log)
    )
    if ref.szl_log:
        out["read_szl"] = Counter(
            (r.orig, r.resp, r.direction, r.wire_pdu_reference, r.szl_id)
            for r in read_szl_log(root / ref.szl_log)
        )
    if ref.upload_download_log:
        out["upload_download"] = Counter(
            (r.orig, r.resp, r.direction, r.rosctr, r.wire_pdu_reference, r.function)
            for r in read_upload_download_log(root / ref.upload_download_log)
        )
    if ref.plus_log:
        out["s7comm_plus"] = Counter(
            (r.orig, r.resp, r.direction, r.version, r.opcode, r.function_code)
            for r in read_plus_log(root / ref.plus_log)
        )
    return out


def _walk_plus_counts(walk: Walk) -> Counter[PKey]:
    out: Counter[PKey] = Counter()
    for t in walk.by_protocol(S7COMM_PLUS_ID):
        client, server = (t.dst, t.src) if t.direction == "response" else (t.src, t.dst)
        out[(client, server, t.direction, t.version, None, None)] += 1
    return out


def _drop_opcode(c: Counter[PKey]) -> Counter[PKey]:
    out: Counter[PKey] = Counter()
    for (client, server, direction, version, _op, _fn), n in c.items():
        out[(client, server, direction, version, None, None)] += n
    return out


def _show_ikey(key: Any) -> str:
    return " ".join("-" if v is None else str(v) for v in key)


_SNAP7 = ("134.217.61.131:51212", "134.217.61.211:102")
_S7IDENT = ("172.17.0.2:33028", "172.17.0.2:102")

#: Where ICSNPP and tshark (for S7comm-plus: the walk) disagree, pinned exactly:
#: capture → {(log, key): (ICSNPP count, tshark count)}. Keys as in ``pdu_counts`` (PDU
#: references in wire order: tshark's). Reasons, all from the plugin's parsing (see
#: ``icsnpp_logs``):
#:
#: * snap7.pcap, frame 44: the Ack (ROSCTR 2, error class 0xd2 code 0x0c) answering the fifth
#:   Start Upload has no parameter; the plugin's ROSCTR_ACK record wants a function code byte,
#:   fails and logs nothing (so s7comm_upload_download.log has no row for it either, and the
#:   Job of ref 5376 stays alone).
#: * snap7.pcap, frames 6 and 7: the SZL 0x001c answer comes in two User-Data fragments.
#:   Frame 6 (first fragment, ref 512) declares more SZL data than the PDU holds and frame 7
#:   (the client's follow-up request, ref 768, return code 0x0a and no SZL header) has no
#:   complete Read-SZL header: the plugin logs neither. In s7comm_read_szl.log the answer is
#:   missing too: ICSNPP logs first fragments only (where parsing failed), tshark shows the
#:   SZL id in the last fragment (frame 8, ref 768).
#: * s7ident.pcap: the four Acks (ROSCTR 2, no parameter) answering Start Upload: not logged,
#:   as in snap7.pcap.
ICSNPP_DISAGREEMENT: dict[str, dict[tuple[str, Any], tuple[int, int]]] = {
    "icsnpp/icsnpp-s7comm/tests/traces/snap7.pcap": {
        ("s7comm", (*_SNAP7, "response", 2, 5376, None, None, None, (0xD2, 0x0C))): (0, 1),
        ("s7comm", (*_SNAP7, "response", 7, 512, None, 4, 1, None)): (0, 1),
        ("s7comm", (*_SNAP7, "request", 7, 768, None, 4, 1, None)): (0, 1),
        ("read_szl", (*_SNAP7, "response", 768, 0x001C)): (0, 1),
    },
    "icsnpp/icsnpp-s7comm/tests/traces/s7ident.pcap": {
        ("s7comm", (*_S7IDENT, "response", 2, ref, None, None, None, (0xD2, 0x41))): (0, 1)
        for ref in (1536, 1792, 2048, 2304)
    },
}

ICSNPP_CAPTURES = sorted(ICSNPP_REFERENCES)


def _icsnpp_case(
    rel: str, request: pytest.FixtureRequest, tshark: str
) -> tuple[Path, IcsnppReference, dict[str, Counter[Any]], dict[str, Counter[Any]]]:
    root: Path = request.getfixturevalue("shared_dir")
    ref = ICSNPP_REFERENCES[rel]
    path = root / rel
    icsnpp = icsnpp_counts(ref, root)
    theirs = pdu_counts(cached_tshark(tshark, path).iter_pdus())
    if ref.plus_log:
        theirs["s7comm_plus"] = _walk_plus_counts(cached_walk(tshark, path))
    return path, ref, icsnpp, theirs


def _reference_disagreement(
    icsnpp: dict[str, Counter[Any]], theirs: dict[str, Counter[Any]]
) -> dict[tuple[str, Any], tuple[int, int]]:
    found = {}
    for log, rows in icsnpp.items():
        mine = _drop_opcode(rows) if log == "s7comm_plus" else rows
        other = theirs.get(log, Counter())
        for k in set(mine) | set(other):
            if mine[k] != other[k]:
                found[(log, k)] = (mine[k], other[k])
    return found


@pytest.mark.parametrize("rel", ICSNPP_CAPTURES)
def test_icsnpp_and_tshark_disagree_only_where_documented(
    rel: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """ICSNPP's logs and tshark (the walk for S7comm-plus) agree, except exactly as pinned in
    ``ICSNPP_DISAGREEMENT``."""
    path, _ref, icsnpp, theirs = _icsnpp_case(rel, request, tshark)
    found = _reference_disagreement(icsnpp, theirs)
    assert found == ICSNPP_DISAGREEMENT.get(rel, {}), (
        f"{path}: ICSNPP vs tshark (ICSNPP count, tshark count):\n"
        + "\n".join(
            f"  {log}: {_show_ikey(k)}: {v}" for (log, k), v in sorted(found.items(), key=repr)
        )
    )


@pytest.mark.parametrize("rel", ICSNPP_CAPTURES)
def test_icsnpp_logs_equal_ours(rel: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """Per log and key, ICSNPP's count equals ours; where ICSNPP and tshark disagree (pinned),
    ours equals one of them. Keys:

    * s7comm.log: (client, server, direction, rosctr, PDU reference, function, userdata group,
      userdata subfunction, Ack / Ack-Data header error (class, code)). ICSNPP's swapped PDU
      reference is swapped back; its User-Data ``function_code`` (type | group) gives the group,
      ``subfunction_code`` the subfunction; an Ack-Data without parameter has no function on
      every side; a PI service's name in ``subfunction_code`` is not compared.
    * s7comm_read_szl.log: (client, server, direction, PDU reference, SZL id).
    * s7comm_upload_download.log: (client, server, direction, rosctr, PDU reference, function)
      for functions 0x1a-0x1f.
    * s7comm_plus.log: (client, server, direction, version, opcode, function) ↔ ours' ``version``,
      ``opcode``, ``function``; the function is unset for Notifications on ICSNPP's side.
    """
    path, ref, icsnpp, _theirs = _icsnpp_case(rel, request, tshark)
    disputed = ICSNPP_DISAGREEMENT.get(rel, {})
    # the walk knows no opcode/function: a pinned S7comm-plus dispute would need a projection
    assert not any(log == "s7comm_plus" for log, _ in disputed), "not supported"
    records = our_records(path)
    ours = pdu_counts(p for p in records if p.protocol == "s7comm")
    if ref.plus_log:
        plus: Counter[PKey] = Counter()
        for p in records:
            if p.protocol == "s7comm-plus":
                client, server = p.client_server
                plus[(client, server, p.direction, p.version, p.opcode, p.plus_function)] += 1
        ours["s7comm_plus"] = plus
    problems = []
    for log, rows in icsnpp.items():
        mine = ours.get(log, Counter())
        for key in sorted(set(rows) | set(mine), key=repr):
            if (log, key) in disputed:
                want = disputed[(log, key)]
                if mine[key] not in want:
                    problems.append(
                        f"  {log}: {_show_ikey(key)}: ICSNPP {want[0]}, reference {want[1]},"
                        f" ours {mine[key]}"
                    )
            elif mine[key] != rows[key]:
                problems.append(f"  {log}: {_show_ikey(key)}: ICSNPP {rows[key]}, ours {mine[key]}")
    assert not problems, (
        f"{path} vs {Path(ref.s7comm_log).parent}: {len(problems)} key(s) differ; first {SHOW}:\n"
        + "\n".join(problems[:SHOW])
    )


def test_icsnpp_pdu_reference_is_byte_swapped(request: pytest.FixtureRequest, tshark: str) -> None:
    """The quirk the comparison undoes, shown on snap7.pcap's first User-Data job: tshark's
    ``pduref`` 256 is ICSNPP's ``pdu_reference`` 1."""
    root: Path = request.getfixturevalue("shared_dir")
    rel = "icsnpp/icsnpp-s7comm/tests/traces/snap7.pcap"
    ws = cached_tshark(tshark, root / rel)
    first_userdata = next(p for p in ws.iter_pdus() if p.rosctr == 7)
    rows = read_s7comm_log(root / ICSNPP_REFERENCES[rel].s7comm_log)
    first_row = next(r for r in rows if r.rosctr == 7)
    assert (first_userdata.pdu_reference, first_row.pdu_reference) == (256, 1)
    assert swap16(first_row.pdu_reference) == first_userdata.pdu_reference
