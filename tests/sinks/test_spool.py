"""The outage spool on disk: order, persistence, bounds, locking, damage."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from otsentry.config import SpoolConfig
from otsentry.sinks.spool import Spool, SpoolBusy, SpoolCorrupt, SpoolItem, iter_rejected

ALERTS = "logs-otsentry.alert-default"
EVENTS = "logs-otsentry.modbus-default"


def item(stream: str, n: int, pad: int = 0) -> SpoolItem:
    doc = {"event": {"id": f"id-{stream}-{n}"}, "n": n, "pad": "x" * pad}
    return SpoolItem(stream, f"id-{stream}-{n}", orjson.dumps(doc))


def drain_all(spool: Spool, size: int = 7) -> list[SpoolItem]:
    out: list[SpoolItem] = []
    while (batch := spool.read(size)) is not None:
        out.extend(batch.items)
        spool.commit(batch)
    return out


def test_fifo_per_stream_across_segments_alerts_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig(segment_bytes=4096))
    spool.append([item(EVENTS, n, 100) for n in range(100)])
    spool.append([item(ALERTS, n, 100) for n in range(50)])
    assert spool.pending == 150
    assert len(list((tmp_path / EVENTS).glob("*.ndjson"))) > 2  # rolled over several segments
    got = drain_all(spool)
    assert [i.doc_id for i in got] == [f"id-{ALERTS}-{n}" for n in range(50)] + [
        f"id-{EVENTS}-{n}" for n in range(100)
    ]
    assert got[0].source == item(ALERTS, 0, 100).source
    assert spool.pending == 0
    assert spool.size == 0
    assert not list(tmp_path.glob("*/*.ndjson"))  # delivered segments are deleted
    spool.close()


def test_cursor_survives_reopen_and_uncommitted_batch_is_read_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig(segment_bytes=4096))
    spool.append([item(ALERTS, n, 50) for n in range(40)])
    first = spool.read(10)
    assert first is not None
    spool.commit(first)
    second = spool.read(10)  # read, never committed: a crash before the cluster answered
    assert second is not None
    spool.close()

    again = Spool(tmp_path, SpoolConfig(segment_bytes=4096))
    assert again.pending == 30
    rest = drain_all(again)
    assert [i.doc_id for i in rest] == [f"id-{ALERTS}-{n}" for n in range(10, 40)]
    again.close()


def test_segment_is_a_bulk_body(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([item(ALERTS, 1)])
    (segment,) = (tmp_path / ALERTS).glob("*.ndjson")
    action, source = segment.read_bytes().splitlines()
    assert orjson.loads(action) == {"create": {"_index": ALERTS, "_id": f"id-{ALERTS}-1"}}
    assert orjson.loads(source)["n"] == 1


def test_drop_oldest_drops_protocol_events_before_alerts(tmp_path: Path) -> None:
    config = SpoolConfig(max_bytes=8192, segment_bytes=4096, when_full="drop-oldest")
    spool = Spool(tmp_path, config)
    spool.append([item(ALERTS, n, 200) for n in range(10)])
    spool.append([item(EVENTS, n, 200) for n in range(20)])
    spool.append([item(ALERTS, n, 200) for n in range(10, 20)])
    assert spool.size <= 8192
    assert spool.dropped > 0
    got = drain_all(spool)
    alerts = [i for i in got if i.index == ALERTS]
    assert len(alerts) == 20  # every alert kept: events went first
    assert len(got) + spool.dropped == 40
    spool.close()


def test_drop_newest_refuses_new_documents_and_counts_them(tmp_path: Path) -> None:
    config = SpoolConfig(max_bytes=8192, segment_bytes=4096, when_full="drop-newest")
    spool = Spool(tmp_path, config)
    dropped = spool.append([item(ALERTS, n, 200) for n in range(60)])
    assert dropped > 0
    assert spool.dropped == dropped
    got = drain_all(spool)
    assert [i.doc_id for i in got] == [f"id-{ALERTS}-{n}" for n in range(60 - dropped)]
    spool.close()


def test_one_process_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolBusy, match="pid"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()  # free again


def test_damaged_segment_is_reported_and_set_aside(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([item(ALERTS, n) for n in range(3)])
    (segment,) = (tmp_path / ALERTS).glob("*.ndjson")
    segment.write_bytes(b"not json\n{}\n" + segment.read_bytes())
    spool = Spool(tmp_path)
    with pytest.raises(SpoolCorrupt, match="offset 0"):
        spool.read(10)
    try:
        spool.read(10)
    except SpoolCorrupt as exc:
        spool.quarantine(exc)
    assert spool.pending == 0
    assert spool.dropped == 4
    assert segment.with_suffix(".corrupt").exists()
    spool.close()


def test_rejected_documents_keep_id_reason_and_body(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.reject(item(ALERTS, 7), "mapper_parsing_exception: failed to parse [x]")
        assert spool.rejected == 1
    (row,) = iter_rejected(tmp_path)
    assert row["_id"] == f"id-{ALERTS}-7"
    assert row["_index"] == ALERTS
    assert row["reason"].startswith("mapper_parsing_exception")
    assert row["document"]["n"] == 7
