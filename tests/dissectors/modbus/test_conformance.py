"""Modbus/TCP conformance: our per-PDU dump (``otsentry.dissect.dump.iter_records``) against
tshark 4.0 and against the Zeek / ICSNPP expected logs.

Captures: the lab captures ``pcaps/*modbus*.pcap`` and every shared capture whose
``MANIFEST.tsv`` column ``modbus_pdus`` is > 0. Captures listed in ``DECODE_AS`` carry Modbus on
another port and are read with decode-as on both sides (tshark: ``-d tcp.port==P,mbtcp`` plus
the port preference, see ``wireshark.py``; ours: ``DecodeAs(P, "modbus")``).

How a PDU is compared with tshark (``ws_key`` / ``our_key``)
------------------------------------------------------------
Key = (direction, transaction id, unit id, function code, exception code, reference, count).

* direction: tshark's, which is by TCP port (to the Modbus port = request); ours is the dump's.
* function code: ``modbus.func_code`` (bitmask 0x7F, so exception bit cleared) ↔ ours
  ``function_code``; exception code ``modbus.exception_code`` ↔ ours ``exception_code``.
* reference / count are only what the PDU *itself* carries on the wire (``WIRE_FIELDS``);
  elsewhere both are None on both sides, since our responses copy ``address``/``quantity`` from
  the matched request while tshark shows nothing:

  ===========  ==============  =========================================  ====================
  direction    function codes  reference (ours ``address``)               count (ours
                                                                          ``quantity``)
  ===========  ==============  =========================================  ====================
  request      1, 2, 15        ``modbus.reference_num``                   ``modbus.bit_cnt``
  request      3, 4, 16        ``modbus.reference_num``                   ``modbus.word_cnt``
  request      5, 6, 22, 24    ``modbus.reference_num``                   —
  request      23              ``modbus.read_reference_num``              ``modbus.read_word_cnt``
  response     5, 6, 22        ``modbus.reference_num`` (echoed)          —
  response     15              ``modbus.reference_num``                   ``modbus.bit_cnt``
  response     16              ``modbus.reference_num``                   ``modbus.word_cnt``
  exception    any             —                                          —
  ===========  ==============  =========================================  ====================

  Not compared: FC 23 ``write_reference_num``/``write_word_cnt``, FC 24 response ``word_cnt``
  (the FIFO count, not a quantity), FC 20/21 ``word_cnt`` (a file sub-request's record
  length). ``test_wire_field_table_covers_tshark`` fails if tshark shows a reference/count
  field the table does not account for.

* Register and coil values: where tshark lists ``modbus.regnum16``/``modbus.regval_uint16``
  (FC 3/4 responses, FC 16 requests) or ``modbus.bitnum``/``modbus.bitval`` (FC 1/2 responses),
  ours ``values`` must equal the value list, and ours ``address`` the first register/bit number.
  tshark numbers a response's registers from its matched request's reference number; when it
  matched none (no ``modbus.request_frame``) it numbers from 0, so only values are compared.
  tshark 4.0 never links exception responses to requests; they are compared on the key only.

Three kinds of frames are left out of the per-frame and total comparisons and checked apart:

* frames tshark marks malformed (``_ws.malformed``): ours must flag an anomaly on a PDU of that
  frame, or of that flow when ours has no PDU in the frame;
* segments on a Modbus port that tshark's Modbus/TCP dissector refuses outright (fewer than 8
  bytes, protocol id not 0, or MBAP length < 2: ``wireshark.tshark_rejects_mbap``; tshark shows
  them as plain "data" and skips any further ADU in the segment): every PDU of ours there is
  reported, and at least one must carry an anomaly;
* segments tshark flags as a TCP (fast / spurious) retransmission and dissects nothing in,
  although they carry sequence numbers no earlier segment of their direction covered
  (``wireshark.retransmitted_new_data``): their new bytes are Modbus only ours decodes. Ours
  must not re-report there a PDU already seen earlier in that direction of the flow
  (``test_retransmitted_new_bytes_only_ours_decodes``).

One kind of PDU of ours is left out of the same comparisons: an ADU tshark keeps waiting for
in a TCP reassembly that never completes (the segment shows ``tcp.segment_data`` without
``tcp.reassembled_in``; e.g. an MBAP length larger than the bytes that follow, then the close),
which ours reports with an anomaly when the flow ends (``unfinished_adus``). Only PDUs with an
anomaly qualify, one per such pending segment of that flow direction.

Everything else — in particular a PDU of ours attributed to another frame than tshark's (e.g.
data after a sequence gap delivered later) — fails with the first mismatching frames listed.
"""

from __future__ import annotations

import csv
import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LAB_PCAPS, SHARED_PCAPS, capture_path, lab_pcaps
from tests.dissectors.modbus.wireshark import (
    WsCapture,
    WsPdu,
    cached_tshark,
    retransmitted_new_data,
    tshark_rejects_mbap,
)
from tests.dissectors.modbus.zeek_logs import (
    ZEEK_REFERENCES,
    ZeekReference,
    iter_modbus_messages,
    parse_int_list,
    read_detailed_log,
    read_event_output,
    read_mask_write_log,
    read_modbus_log,
    read_rw_multiple_log,
)

#: Captures (by id) whose Modbus runs on another port: they need decode-as on both sides.
DECODE_AS: dict[str, tuple[int, ...]] = {"lab/modbus_port5020.pcap": (5020,)}

#: How many mismatching frames a failure prints.
SHOW = 15

# --- which captures ----------------------------------------------------------------------------


def _manifest_modbus() -> list[str]:
    manifest = SHARED_PCAPS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    col = header.index("modbus_pdus") if "modbus_pdus" in header else 7
    return sorted(row[0] for row in rows[1:] if len(row) > col and int(row[col] or 0) > 0)


def _capture_ids() -> list[str]:
    ids = [f"lab/{p.name}" for p in lab_pcaps() if "modbus" in p.name]
    shared = _manifest_modbus()
    ids += [f"shared/{rel}" for rel in shared] if shared else ["shared/(absent)"]
    return ids


CAPTURES = _capture_ids()


# --- our dump ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OurPdu:
    """The fields of one dump record the comparison needs."""

    frame: int
    direction: str | None
    src: str
    dst: str
    transaction_id: int | None
    unit_id: int | None
    function_code: int | None
    function: str | None
    exception_code: int | None
    address: int | None
    quantity: int | None
    values: tuple[int, ...] | None
    sub_function: Any
    mei_type: Any
    anomalies: tuple[str, ...]


def _int_values(values: Any) -> tuple[int, ...] | None:
    if values is None or not isinstance(values, list | tuple):
        return None
    out = []
    for v in values:
        if isinstance(v, bool | int):
            out.append(int(v))
        else:  # not a register/coil list (e.g. file records): no value comparison
            return None
    return tuple(out)


@functools.cache
def our_pdus(path: Path, decode_as: tuple[int, ...] = ()) -> tuple[OurPdu, ...]:
    """Our dump of ``path`` (Modbus records only), memoised."""
    dump = pytest.importorskip("otsentry.dissect.dump")
    from otsentry.config import DecodeAs

    rules = [DecodeAs(port, "modbus") for port in decode_as]
    out = []
    for rec in dump.iter_records(path, protocols=("modbus",), decode_as=rules):
        body = rec.get("modbus") or {}
        out.append(
            OurPdu(
                frame=int(rec["frame"]),
                direction=rec.get("direction"),
                src=str(rec.get("src")),
                dst=str(rec.get("dst")),
                transaction_id=body.get("transaction_id"),
                unit_id=body.get("unit_id"),
                function_code=body.get("function_code"),
                function=body.get("function"),
                exception_code=body.get("exception_code"),
                address=body.get("address"),
                quantity=body.get("quantity"),
                values=_int_values(body.get("values")),
                sub_function=body.get("sub_function"),
                mei_type=body.get("mei_type"),
                anomalies=tuple(body.get("anomalies") or ()),
            )
        )
    return tuple(out)


def _by_frame(pdus: Iterable[OurPdu]) -> dict[int, list[OurPdu]]:
    frames: dict[int, list[OurPdu]] = {}
    for p in pdus:
        frames.setdefault(p.frame, []).append(p)
    return frames


def _load(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> tuple[Path, WsCapture, tuple[OurPdu, ...]]:
    path = capture_path(capture, request)
    decode_as = DECODE_AS.get(capture, ())
    ours = our_pdus(path, decode_as)
    return path, cached_tshark(tshark, path, decode_as), ours


# --- the PDU key -------------------------------------------------------------------------------

#: (direction, function code) → (tshark reference field, tshark count field); see module doc.
WIRE_FIELDS: dict[tuple[str, int], tuple[str | None, str | None]] = {
    **{("request", fc): ("reference_num", "bit_cnt") for fc in (1, 2, 15)},
    **{("request", fc): ("reference_num", "word_cnt") for fc in (3, 4, 16)},
    **{("request", fc): ("reference_num", None) for fc in (5, 6, 22, 24)},
    ("request", 23): ("read_reference_num", "read_word_cnt"),
    **{("response", fc): ("reference_num", None) for fc in (5, 6, 22)},
    ("response", 15): ("reference_num", "bit_cnt"),
    ("response", 16): ("reference_num", "word_cnt"),
}
#: Reference/count fields tshark shows that the key deliberately leaves out.
NOT_COMPARED: dict[tuple[str, int], frozenset[str]] = {
    ("request", 23): frozenset({"write_reference_num", "write_word_cnt"}),
    ("response", 24): frozenset({"word_cnt"}),  # the FIFO count
    # FC 20/21: tshark's word_cnt is a file sub-request's record length, not the PDU's quantity
    ("request", 20): frozenset({"word_cnt"}),
    ("request", 21): frozenset({"word_cnt"}),
    ("response", 20): frozenset({"word_cnt"}),
    ("response", 21): frozenset({"word_cnt"}),
}
_REF_COUNT_FIELDS = (
    "reference_num",
    "read_reference_num",
    "write_reference_num",
    "word_cnt",
    "bit_cnt",
    "read_word_cnt",
    "write_word_cnt",
)

Key = tuple[str | None, int | None, int | None, int | None, int | None, int | None, int | None]


def wire_fields(
    direction: str | None, fc: int | None, exception: int | None
) -> tuple[str | None, str | None]:
    if exception is not None or fc is None or direction is None:
        return None, None
    return WIRE_FIELDS.get((direction, fc), (None, None))


def ws_key(p: WsPdu) -> Key:
    ref_f, cnt_f = wire_fields(p.direction, p.function_code, p.exception_code)
    return (
        p.direction,
        p.transaction_id,
        p.unit_id,
        p.function_code,
        p.exception_code,
        getattr(p, ref_f) if ref_f else None,
        getattr(p, cnt_f) if cnt_f else None,
    )


def our_key(p: OurPdu) -> Key:
    ref_f, cnt_f = wire_fields(p.direction, p.function_code, p.exception_code)
    return (
        p.direction,
        p.transaction_id,
        p.unit_id,
        p.function_code,
        p.exception_code,
        p.address if ref_f else None,
        p.quantity if cnt_f else None,
    )


def show_key(key: Key) -> str:
    direction, tid, unit, fc, exc, ref, cnt = key
    text = f"{(direction or '?')[:4]} tid={tid} unit={unit} fc={fc}"
    if exc is not None:
        text += f" exc={exc}"
    if ref is not None:
        text += f" ref={ref}"
    if cnt is not None:
        text += f" cnt={cnt}"
    return text


def _counter_text(c: Counter[Any], show: Any = str) -> str:
    return "; ".join(
        f"{show(k)}" + (f" x{n}" if n > 1 else "") for k, n in sorted(c.items(), key=repr)
    )


def refused_frames(ws: WsCapture) -> set[int]:
    """Frames whose segment tshark's Modbus/TCP dissector refused (see module doc)."""
    return {f for f, payload in ws.undissected.items() if tshark_rejects_mbap(payload)}


def excluded_frames(ws: WsCapture) -> set[int]:
    """Frames left out of the key and total comparisons: malformed, refused by tshark, or
    retransmissions carrying new bytes tshark does not dissect."""
    return ws.malformed_frames | refused_frames(ws) | retransmitted_new_data(ws)


def unfinished_adus(ws: WsCapture, ours: Sequence[OurPdu]) -> set[int]:
    """Indexes into ``ours`` of PDUs standing for ADUs tshark leaves in a reassembly that never
    completes (see module doc): a PDU of ours with an anomaly, that tshark lacks in its frame,
    in a flow direction where an earlier (or the same) frame holds such pending bytes; each
    pending segment accounts for one PDU."""
    pending: dict[tuple[str, str], list[int]] = {}
    for frame, seg in sorted(ws.segments.items()):
        if seg.unfinished and not seg.retransmission:
            pending.setdefault((seg.src, seg.dst), []).append(frame)
    out: set[int] = set()
    if not pending:
        return out
    for i, p in enumerate(ours):
        if not p.anomalies or any(ws_key(q) == our_key(p) for q in ws.pdus.get(p.frame, [])):
            continue
        frames = pending.get((p.src, p.dst))
        if frames and frames[0] <= p.frame:
            frames.pop(0)
            out.add(i)
    return out


def compared_ours(ws: WsCapture, ours: Sequence[OurPdu]) -> list[OurPdu]:
    """Ours without the PDUs of ADUs tshark leaves unfinished."""
    skip = unfinished_adus(ws, ours)
    return [p for i, p in enumerate(ours) if i not in skip]


def frame_diff(
    ws: WsCapture, ours: Sequence[OurPdu]
) -> list[tuple[int, Counter[Key], Counter[Key]]]:
    """Frames (not excluded) whose key multisets differ: (frame, only tshark, only ours)."""
    mine = _by_frame(compared_ours(ws, ours))
    skip = excluded_frames(ws)
    out = []
    for frame in sorted(set(ws.pdus) | set(mine)):
        if frame in skip:
            continue
        theirs = Counter(ws_key(p) for p in ws.pdus.get(frame, []))
        ours_c = Counter(our_key(p) for p in mine.get(frame, []))
        if theirs != ours_c:
            out.append((frame, theirs - ours_c, ours_c - theirs))
    return out


def render_frame_diff(
    path: Path, diff: list[tuple[int, Counter[Key], Counter[Key]]], ws_total: int, ours_total: int
) -> str:
    lines = [
        f"{path}: {len(diff)} frame(s) differ (tshark {ws_total} PDUs, ours {ours_total});"
        f" first {min(SHOW, len(diff))}:"
    ]
    for frame, only_ws, only_ours in diff[:SHOW]:
        lines.append(f"  frame {frame}:")
        if only_ws:
            lines.append(f"    only tshark: {_counter_text(only_ws, show_key)}")
        if only_ours:
            lines.append(f"    only ours:   {_counter_text(only_ours, show_key)}")
    return "\n".join(lines)


# --- 1. per frame against tshark -----------------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES)
def test_pdus_per_frame_equal_tshark(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Per frame, the multiset of PDU keys (see module doc) equals tshark's."""
    path, ws, ours = _load(capture, request, tshark)
    diff = frame_diff(ws, ours)
    assert not diff, render_frame_diff(path, diff, ws.total, len(ours))


@pytest.mark.parametrize("capture", CAPTURES)
def test_malformed_frames_carry_anomalies(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Where tshark marks a frame malformed, ours flags an anomaly on a PDU of that frame, or of
    that flow if ours has none in the frame."""
    path, ws, ours = _load(capture, request, tshark)
    if not ws.malformed_frames:
        return
    mine = _by_frame(ours)
    missing = []
    for frame in sorted(ws.malformed_frames):
        here = mine.get(frame, [])
        if any(p.anomalies for p in here):
            continue
        flows = {frozenset((p.src, p.dst)) for p in ws.pdus.get(frame, [])}
        if not here and any(p.anomalies for p in ours if frozenset((p.src, p.dst)) in flows):
            continue
        theirs = "; ".join(show_key(ws_key(p)) for p in ws.pdus.get(frame, []))
        mine_text = "; ".join(f"{show_key(our_key(p))} anomalies={list(p.anomalies)}" for p in here)
        missing.append(f"  frame {frame}: tshark [{theirs}] ours [{mine_text or 'no PDU'}]")
    assert not missing, (
        f"{path}: tshark-malformed frames without an anomaly of ours:\n" + "\n".join(missing[:SHOW])
    )


@pytest.mark.parametrize("capture", CAPTURES)
def test_segments_tshark_refuses_carry_anomalies(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Segments tshark's Modbus/TCP dissector refuses (bad MBAP header: see module doc) but
    where ours reports PDUs: at least one of ours in the frame carries an anomaly."""
    path, ws, ours = _load(capture, request, tshark)
    mine = _by_frame(ours)
    problems = []
    for frame in sorted(refused_frames(ws)):
        here = mine.get(frame, [])
        if here and not any(p.anomalies for p in here):
            head = ws.undissected[frame][:8].hex(" ")
            keys = "; ".join(show_key(our_key(p)) for p in here)
            problems.append(f"  frame {frame} (payload {head} ...): ours [{keys}], no anomaly")
    assert not problems, (
        f"{path}: PDUs in segments tshark refuses, without an anomaly:\n"
        + "\n".join(problems[:SHOW])
    )


@pytest.mark.parametrize("capture", CAPTURES)
def test_retransmitted_new_bytes_only_ours_decodes(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """PDUs only ours decodes, stated explicitly: in segments tshark flags as retransmissions
    but which carry bytes never captured before (see module doc), ours may report PDUs; they
    must be new ones, not a second report of a PDU seen earlier in that flow direction."""
    path, ws, ours = _load(capture, request, tshark)
    mine = _by_frame(ours)
    repeated = []
    for frame in sorted(retransmitted_new_data(ws)):
        for p in mine.get(frame, []):
            flow = (p.src, p.dst)
            before = {
                ws_key(q) for q in ws.iter_pdus() if q.frame < frame and (q.src, q.dst) == flow
            }
            before |= {our_key(q) for q in ours if q.frame < frame and (q.src, q.dst) == flow}
            if our_key(p) in before:
                repeated.append(f"  frame {frame}: {show_key(our_key(p))} ({p.src} -> {p.dst})")
    assert not repeated, (
        f"{path}: PDUs ours reports again in retransmitted segments:\n" + "\n".join(repeated)
    )


def _value_mismatch(p: WsPdu, o: OurPdu) -> str | None:
    if p.registers:
        nums, vals = [n for n, _ in p.registers], [v for _, v in p.registers]
    elif p.bits:
        nums, vals = [n for n, _ in p.bits], [v for _, v in p.bits]
    else:
        return None
    numbered = p.direction == "request" or p.request_frame is not None
    problems = []
    if o.values is None or list(o.values) != vals:
        problems.append(f"values tshark {vals} ours {None if o.values is None else list(o.values)}")
    if numbered and o.address != nums[0]:
        problems.append(f"address tshark {nums[0]} ours {o.address}")
    return "; ".join(problems) or None


@pytest.mark.parametrize("capture", CAPTURES)
def test_register_and_coil_values_equal_tshark(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Where tshark lists register/bit numbers and values, ours has the same address and values
    (the PDU of ours with the same key in the same frame)."""
    path, ws, ours = _load(capture, request, tshark)
    mine = _by_frame(ours)
    problems = []
    compared = 0
    skip = excluded_frames(ws)
    for frame, pdus in sorted(ws.pdus.items()):
        if frame in skip:
            continue
        pool = list(mine.get(frame, []))
        for p in pdus:
            if not (p.registers or p.bits):
                continue
            match = next((o for o in pool if our_key(o) == ws_key(p)), None)
            if match is None:
                continue  # reported by test_pdus_per_frame_equal_tshark
            pool.remove(match)
            compared += 1
            problem = _value_mismatch(p, match)
            if problem:
                problems.append(f"  frame {frame} {show_key(ws_key(p))}: {problem}")
    assert not problems, (
        f"{path}: {len(problems)} of {compared} PDUs with values differ; first {SHOW}:\n"
        + "\n".join(problems[:SHOW])
    )


@pytest.mark.parametrize("capture", CAPTURES)
def test_wire_field_table_covers_tshark(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Every reference/count field tshark shows is either compared (``WIRE_FIELDS``) or listed in
    ``NOT_COMPARED``: the key drops nothing silently. Checks the reference side only."""
    path = capture_path(capture, request)
    ws = cached_tshark(tshark, path, DECODE_AS.get(capture, ()))
    unexpected: Counter[tuple[str | None, int | None, str]] = Counter()
    for p in ws.iter_pdus():
        if p.malformed:
            continue
        used = set(wire_fields(p.direction, p.function_code, p.exception_code)) - {None}
        skipped = NOT_COMPARED.get((p.direction or "", p.function_code or -1), frozenset())
        for name in _REF_COUNT_FIELDS:
            if getattr(p, name) is not None and name not in used and name not in skipped:
                unexpected[(p.direction, p.function_code, name)] += 1
    assert not unexpected, f"{path}: fields shown by tshark but not compared: {dict(unexpected)}"


# --- 2. totals, and what only our probe finds ----------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES)
def test_pdu_total_equals_tshark(capture: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """Total PDUs are equal, outside the excluded frames (malformed, refused, retransmitted new
    bytes) and without ours' unfinished-ADU PDUs (see module doc)."""
    path, ws, ours = _load(capture, request, tshark)
    skip = excluded_frames(ws)
    theirs = sum(len(v) for f, v in ws.pdus.items() if f not in skip)
    mine = sum(1 for p in compared_ours(ws, ours) if p.frame not in skip)
    by_dir = Counter(p.direction for p in ours)
    assert mine == theirs, (
        f"{path}: tshark {theirs} PDUs, ours {mine} (outside {len(skip)} excluded frames;"
        f" ours in all: {len(ours)}, by direction {dict(by_dir)})"
    )


@pytest.mark.parametrize("capture", sorted(DECODE_AS))
def test_probe_finds_modbus_tshark_needs_decode_as_for(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Modbus on a non-standard port: tshark sees none of it without ``-d``, ours finds every PDU
    through its probe (no decode-as), with the same per-frame keys tshark gives *with* ``-d``."""
    path = capture_path(capture, request)
    plain = cached_tshark(tshark, path, ())
    forced = cached_tshark(tshark, path, DECODE_AS[capture])
    assert forced.total > 0, f"{path}: tshark finds no Modbus even with decode-as"
    probed = our_pdus(path, ())
    assert plain.total < forced.total, f"{path}: tshark decodes it without decode-as"
    diff = frame_diff(forced, probed)
    assert not diff, render_frame_diff(path, diff, forced.total, len(probed))


@pytest.mark.parametrize(
    "name", sorted(p.name for p in lab_pcaps() if "modbus" not in p.name) or ["(none)"]
)
def test_no_modbus_in_other_lab_captures(name: str, tshark: str) -> None:
    """Negative control: the lab's S7comm / OPC UA captures hold no Modbus, for tshark nor ours."""
    path = LAB_PCAPS / name
    if not path.is_file():
        pytest.skip("no non-Modbus lab capture")
    assert cached_tshark(tshark, path, ()).total == 0
    assert our_pdus(path, ()) == ()


# --- 3. Zeek / ICSNPP expected logs --------------------------------------------------------------

#: Zeek key: (client, server, direction, tid, unit, function code, exception); fields a log
#: lacks are None on every side, and for event output ``exception`` is True/None (the
#: ``modbus_message`` event carries the raw function code but not the exception code).
ZKey = tuple[str, str, str | None, int | None, int | None, int | None, int | bool | None]


@dataclass(frozen=True)
class _Shape:
    responses_only: bool = False
    tid_unit: bool = True
    direction: bool = True
    exception_as_flag: bool = False


def _zkey(
    shape: _Shape,
    client: str,
    server: str,
    direction: str | None,
    tid: int | None,
    unit: int | None,
    fc: int | None,
    exc: int | None,
) -> ZKey:
    return (
        client,
        server,
        direction if shape.direction else None,
        tid if shape.tid_unit else None,
        unit if shape.tid_unit else None,
        fc,
        (True if exc is not None else None) if shape.exception_as_flag else exc,
    )


def _client_server(direction: str | None, src: str, dst: str) -> tuple[str, str]:
    return (dst, src) if direction == "response" else (src, dst)


def _pdus_zkeys(shape: _Shape, pdus: Iterable[WsPdu | OurPdu]) -> Counter[ZKey]:
    out: Counter[ZKey] = Counter()
    for p in pdus:
        if shape.responses_only and p.direction != "response":
            continue
        client, server = _client_server(p.direction, p.src, p.dst)
        out[
            _zkey(
                shape,
                client,
                server,
                p.direction,
                p.transaction_id,
                p.unit_id,
                p.function_code,
                p.exception_code,
            )
        ] += 1
    return out


def zeek_counts(ref: ZeekReference, root: Path) -> tuple[_Shape, Counter[ZKey]]:
    """The reference's PDU keys, and the shape ours/tshark must be projected to."""
    if ref.modbus_log:
        shape = _Shape()
        rows = read_modbus_log(root / ref.modbus_log)
        return shape, Counter(
            _zkey(
                shape, r.orig, r.resp, r.direction, r.tid, r.unit, r.function_code, r.exception_code
            )
            for r in rows
        )
    if ref.icsnpp_modbus_log:
        shape = _Shape(responses_only=True, tid_unit=False, direction=False)
        rows = read_modbus_log(root / ref.icsnpp_modbus_log, headerless=True)
        return shape, Counter(
            _zkey(shape, r.orig, r.resp, None, None, None, r.function_code, r.exception_code)
            for r in rows
        )
    assert ref.events is not None
    shape = _Shape(exception_as_flag=True)
    events = iter_modbus_messages(read_event_output(root / ref.events))
    return shape, Counter(
        _zkey(
            shape,
            e.orig,
            e.resp,
            "request" if e.is_orig else "response",
            e.tid,
            e.unit,
            e.function_code,
            1 if e.is_exception else None,
        )
        for e in events
    )


def show_zkey(key: ZKey) -> str:
    client, server, direction, tid, unit, fc, exc = key
    parts = [f"{client}->{server}", (direction or "?")[:4]]
    if tid is not None:
        parts.append(f"tid={tid} unit={unit}")
    parts.append(f"fc={fc}")
    if exc is not None:
        parts.append(f"exc={exc}")
    return " ".join(parts)


#: Where Zeek and tshark themselves disagree, pinned exactly: key → (Zeek count, tshark count).
#: Both are fuzzed captures with broken TCP; the two tools follow the stream differently:
#:
#: * fuzz-1011.pcap: frames are minutes apart. tshark treats frame 4 as a TCP retransmission of
#:   frame 3 (same sequence number) and does not dissect it again; Zeek has expired the
#:   connection by then (inactivity timeout), starts a new one and logs frame 4's payload as a
#:   response (tid 6714). The connection uids in the log differ for that reason.
#: * fuzz-72.pcap: fuzzed sequence/ack numbers. tshark dissects each segment where its sequence
#:   analysis accepts it (16 queries, one exception response); Zeek's reassembler delivers a
#:   different subset: four exception responses tshark marks as retransmissions / out of order
#:   (FC 28, 32, 47, 51 → ILLEGAL_FUNCTION) and a request unit 0 FC 38, but not six requests
#:   after sequence gaps (FC 43, 46, 47, 50, 52, 70). (FC 32's exception response is in both.)
#:
#: For those keys ours is held to tshark by test_pdus_per_frame_equal_tshark, and here it must
#: equal one of the two counts.
_FUZZ72 = ("192.168.66.235:2582", "166.161.16.230:502")
REFERENCE_DISAGREEMENT: dict[str, dict[ZKey, tuple[int, int]]] = {
    "zeek/testing/btest/Traces/modbus/fuzz-1011.pcap": {
        ("10.1.1.234:51411", "10.10.5.104:502", "response", 6714, 255, 4, None): (1, 0),
    },
    "zeek/testing/btest/Traces/modbus/fuzz-72.pcap": {
        **{(*_FUZZ72, "response", 0, 1, fc, 1): (1, 0) for fc in (28, 47, 51)},
        (*_FUZZ72, "request", 0, 0, 38, None): (1, 0),
        **{(*_FUZZ72, "request", 0, 1, fc, None): (0, 1) for fc in (43, 46, 47, 50, 52, 70)},
    },
}

ZEEK_CAPTURES = sorted(ZEEK_REFERENCES)


def _zeek_case(
    rel: str, request: pytest.FixtureRequest, tshark: str
) -> tuple[Path, ZeekReference, _Shape, Counter[ZKey], Counter[ZKey]]:
    root: Path = request.getfixturevalue("shared_dir")
    ref = ZEEK_REFERENCES[rel]
    path = root / rel
    shape, zeek = zeek_counts(ref, root)
    theirs = _pdus_zkeys(shape, cached_tshark(tshark, path, ()).iter_pdus())
    return path, ref, shape, zeek, theirs


@pytest.mark.parametrize("rel", ZEEK_CAPTURES)
def test_zeek_and_tshark_disagree_only_where_documented(
    rel: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """The two references agree, except exactly as pinned in ``REFERENCE_DISAGREEMENT``."""
    path, _ref, _shape, zeek, theirs = _zeek_case(rel, request, tshark)
    found = {k: (zeek[k], theirs[k]) for k in set(zeek) | set(theirs) if zeek[k] != theirs[k]}
    assert found == REFERENCE_DISAGREEMENT.get(rel, {}), (
        f"{path}: Zeek vs tshark (Zeek count, tshark count): "
        + "; ".join(f"{show_zkey(k)}: {v}" for k, v in sorted(found.items(), key=repr))
    )


@pytest.mark.parametrize("rel", ZEEK_CAPTURES)
def test_zeek_log_counts_equal_ours(rel: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """Per (client, server, direction, tid, unit, function, exception), Zeek's count equals ours.

    Normalisations (all explicit, nothing dropped silently):

    * Zeek's ``func`` names (``READ_HOLDING_REGISTERS``, ``..._EXCEPTION``, ``unknown-N`` with the
      raw code) and ``exception`` names (``ILLEGAL_DATA_ADDRESS``) become numbers
      (``zeek_logs.zeek_function`` / ``zeek_exception``) and are compared with our
      ``function_code`` / ``exception_code``, not with our ``function`` names, which follow the
      Modbus spec (``report_server_id`` where Zeek says ``REPORT_SLAVE_ID``).
    * client/server: Zeek's connection originator/responder; ours: request src→dst, response
      dst→src. Direction: Zeek's ``pdu_type`` / ``is_orig`` (by originator) vs ours.
    * ICSNPP's modbus.log baseline holds responses only and no tid/unit/pdu_type (its test
      script drops REQ rows and those columns): ours is restricted to responses and compared on
      (client, server, function, exception).
    * Zeek's btest event output (``modbus_message`` printed through ``sort | uniq -c``) gives the
      raw function code but no exception code: the exception is compared as a flag.
    * Zeek only analyses port 502 and drops a connection's analyzer at its first protocol
      violation (``modbus-and-non-modbus-p502.pcap``: non-Modbus payload on 502 yields no log
      rows); ours must not report PDUs there either, which this count comparison checks.
    * Where Zeek and tshark disagree (``REFERENCE_DISAGREEMENT``), ours must equal one of them.
    * Ours' records of broken ADUs that have no function code (an MBAP length below 2) are not
      PDUs to Zeek, which logs nothing for them.
    * PDUs ours decodes in retransmitted segments with new bytes (see the module doc) may be
      missing from Zeek too: ours' count there may exceed Zeek's by exactly those PDUs
      (``modbusBig.pcap`` frame 3150: the response's first copy was never captured, the client
      ACKed it, and Zeek treats the bytes as a content gap).
    """
    path, ref, shape, zeek, theirs = _zeek_case(rel, request, tshark)
    # Zeek logs decoded PDUs only: ours' records of broken ADUs (no function code) are left out
    all_ours = [p for p in our_pdus(path, ()) if p.function_code is not None]
    ours = _pdus_zkeys(shape, all_ours)
    only_ours_frames = retransmitted_new_data(cached_tshark(tshark, path, ()))
    ours_new = _pdus_zkeys(shape, (p for p in all_ours if p.frame in only_ours_frames))
    disputed = REFERENCE_DISAGREEMENT.get(rel, {})
    problems = []
    for key in sorted(set(zeek) | set(ours) | set(theirs), key=repr):
        if ours[key] != zeek[key] and ours[key] - ours_new[key] == zeek[key]:
            continue  # Zeek, like tshark, skips the retransmitted new bytes ours decodes
        if key in disputed:
            if ours[key] not in (zeek[key], theirs[key]):
                problems.append(
                    f"  {show_zkey(key)}: Zeek {zeek[key]}, tshark {theirs[key]}, ours {ours[key]}"
                )
        elif ours[key] != zeek[key]:
            problems.append(f"  {show_zkey(key)}: Zeek {zeek[key]}, ours {ours[key]}")
    assert not problems, (
        f"{path} vs {ref.modbus_log or ref.icsnpp_modbus_log or ref.events}:"
        f" {len(problems)} key(s) differ; first {SHOW}:\n" + "\n".join(problems[:SHOW])
    )


# --- ICSNPP detail logs --------------------------------------------------------------------------

#: ICSNPP's diagnostic sub-function and MEI type names seen in the baseline.
_DIAG_NAMES = {"Return Diagnostic Register": 2}
_MEI_NAMES = {"Read Device Identification": 14}


def _coil(v: int) -> int:
    return 1 if v in (1, 0xFF00) else v


def test_icsnpp_detail_logs_equal_ours(request: pytest.FixtureRequest) -> None:
    """ICSNPP's modbus_detailed / mask_write_register / read_write_multiple_registers rows of
    modbus_example.pcap against ours, field by field.

    modbus_detailed.log (one row per request/response pair; ``matched`` T):
    ``address``/``quantity`` ↔ our request's ``address``/``quantity`` (FC 1-4, 15, 16; FC 5/6 and
    22 address only: ICSNPP writes quantity 1 / none), ``request_values`` ↔ our request
    ``values`` (FC 15/16; FC 5/6 as coil 0/1 — ICSNPP maps 0xFF00 to 1), ``response_values`` ↔
    our response ``values`` (FC 1-4, FC 6), ``exception_code`` and the request's
    ``address``/``quantity`` ↔ our exception response (whose address/quantity come from the
    matched request), ``request_subfunction_code`` ↔ our request ``sub_function`` (FC 8, names
    mapped by ``_DIAG_NAMES``), ``mei_type`` ↔ our request ``mei_type`` (FC 43, ``_MEI_NAMES``).
    ICSNPP does not pair FC 7 and FC 17 (two unmatched rows with every field unset): nothing to
    compare but their existence. FC 20/21/24 rows carry quantity 0 (file-record / FIFO byte
    counts ICSNPP puts there): not compared.

    mask_write_register.log: ``address`` ↔ our ``address`` for the request and the response.
    read_write_multiple_registers.log: request ``read_start_address``/``read_quantity`` ↔ our
    ``address``/``quantity`` (the FC 23 mapping of the module doc), response ``read_registers``
    ↔ our response ``values``.
    """
    root: Path = request.getfixturevalue("shared_dir")
    rel = "icsnpp/icsnpp-modbus/testing/traces/modbus_example.pcap"
    ref = ZEEK_REFERENCES[rel]
    assert ref.detailed_log and ref.mask_write_log and ref.rw_multiple_log
    ours = our_pdus(root / rel, ())

    def find(
        client: str, server: str, tid: int | None, unit: int | None, fc: int, direction: str
    ) -> OurPdu | None:
        want = (client, server, tid, unit, fc, direction)
        for p in ours:
            c, s = _client_server(p.direction, p.src, p.dst)
            if (c, s, p.transaction_id, p.unit_id, p.function_code, p.direction) == want:
                return p
        return None

    problems: list[str] = []

    def check(where: str, what: str, want: Any, got: Any) -> None:
        if want != got:
            problems.append(f"  {where}: {what}: ICSNPP {want!r}, ours {got!r}")

    for row in read_detailed_log(root / ref.detailed_log):
        where = f"{Path(row.source).name} tid={row.tid} {row.func}"
        fc = row.function_code
        req = find(row.orig, row.resp, row.tid, row.unit, fc, "request")
        resp = find(row.orig, row.resp, row.tid, row.unit, fc, "response")
        if row.is_exception or row.exception_code is not None:
            check(where, "exception response", True, resp is not None)
            if resp is not None:
                check(where, "exception_code", row.exception_code, resp.exception_code)
                check(where, "address (from request)", row.address, resp.address)
                check(where, "quantity (from request)", row.quantity, resp.quantity)
            continue
        if not row.matched:
            check(where, "request or response present", True, req is not None or resp is not None)
            continue
        check(where, "request present", True, req is not None)
        check(where, "response present", True, resp is not None)
        if req is None or resp is None:
            continue
        if fc in (1, 2, 3, 4, 15, 16):
            check(where, "address", row.address, req.address)
            check(where, "quantity", row.quantity, req.quantity)
        elif fc in (5, 6, 22):
            check(where, "address", row.address, req.address)
        if fc in (15, 16):
            check(where, "request_values", row.request_values, req.values)
        if fc == 5:
            check(
                where,
                "request_values",
                row.request_values,
                req.values and tuple(map(_coil, req.values)),
            )
            check(
                where,
                "response_values",
                row.response_values,
                resp.values and tuple(map(_coil, resp.values)),
            )
        if fc == 6:
            check(where, "request_values", row.request_values, req.values)
            check(where, "response_values", row.response_values, resp.values)
        if fc in (1, 2, 3, 4):
            check(where, "response_values", row.response_values, resp.values)
        if row.request_subfunction_code is not None:
            want = _DIAG_NAMES.get(row.request_subfunction_code, row.request_subfunction_code)
            check(where, "sub_function", want, req.sub_function)
        if row.mei_type is not None:
            check(where, "mei_type", _MEI_NAMES.get(row.mei_type, row.mei_type), req.mei_type)

    for mrow in read_mask_write_log(root / ref.mask_write_log):
        where = f"{Path(mrow.source).name} tid={mrow.tid} {mrow.request_response}"
        direction = "request" if mrow.request_response == "REQUEST" else "response"
        p = find(mrow.orig, mrow.resp, mrow.tid, mrow.unit, mrow.function_code, direction)
        check(where, "present", True, p is not None)
        if p is not None:
            check(where, "address", mrow.address, p.address)

    for rrow in read_rw_multiple_log(root / ref.rw_multiple_log):
        where = f"{Path(rrow.source).name} tid={rrow.tid} {rrow.request_response}"
        direction = "request" if rrow.request_response == "REQUEST" else "response"
        p = find(rrow.orig, rrow.resp, rrow.tid, rrow.unit, rrow.function_code, direction)
        check(where, "present", True, p is not None)
        if p is None:
            continue
        if direction == "request":
            check(where, "address (read start)", rrow.read_start_address, p.address)
            check(where, "quantity (read quantity)", rrow.read_quantity, p.quantity)
        else:
            check(where, "values (read registers)", rrow.read_registers, p.values)

    assert not problems, f"{rel}: {len(problems)} field(s) differ:\n" + "\n".join(problems)


def test_zeek_register_events_equal_ours(request: pytest.FixtureRequest) -> None:
    """fuzz-1011.pcap's btest prints the read-input-registers events with their start address,
    quantity and register values: ours must carry the same (request address/quantity, response
    values; the response's register count is the printed ``|registers|``)."""
    root: Path = request.getfixturevalue("shared_dir")
    rel = "zeek/testing/btest/Traces/modbus/fuzz-1011.pcap"
    ref = ZEEK_REFERENCES[rel]
    assert ref.events is not None
    ours = our_pdus(root / rel, ())
    problems = []
    for ev in read_event_output(root / ref.events):
        direction = "request" if ev.event.endswith("_request") else "response"
        match = [
            p
            for p in ours
            if p.direction == direction
            and p.transaction_id == ev.tid
            and p.unit_id == ev.unit
            and p.function_code == ev.function_code
        ]
        if len(match) != 1:
            problems.append(f"  {ev.event} tid={ev.tid}: ours has {len(match)} such PDUs")
            continue
        p = match[0]
        if direction == "request":
            want: tuple[Any, ...] = (int(ev.args[0]), int(ev.args[1]))
            got: tuple[Any, ...] = (p.address, p.quantity)
        else:
            want = parse_int_list(ev.args[0])
            got = p.values or ()
            if len(want) != int(ev.args[1]):
                problems.append(f"  {ev.event} tid={ev.tid}: |registers| mismatch in the output")
        if want != got:
            problems.append(f"  {ev.event} tid={ev.tid}: Zeek {want}, ours {got}")
    assert not problems, f"{rel} vs {ref.events}:\n" + "\n".join(problems)
