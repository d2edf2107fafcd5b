"""``otsentry baseline learn|show|diff|accept``: learn per-segment baselines from captures, review
them, compare two, and fold chosen anomaly alerts back in ("learn this").

Exit codes: 0 ok (``diff``: no difference), 1 ``diff`` found differences or a capture could not
be read, 2 usage error or a baseline file that cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otsentry.baseline import store
from otsentry.baseline.detector import MAX_ITEMS_PER_ALERT
from otsentry.baseline.learner import Learner
from otsentry.baseline.run import FeedResult, feed, feed_frames, source_names
from otsentry.baseline.segment import SegmentBaseline, Sufficiency
from otsentry.capture import CaptureError, Frame
from otsentry.cli.options import (
    ConfigOption,
    DecodeAsOption,
    capture_paths,
    duration_option,
    settings,
)
from otsentry.cli.ui import error
from otsentry.config import Config, DecodeAs

app = typer.Typer(
    help="Communication baselines: learn them from captures, show, diff and accept alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: what ``show`` prints to: stdout (it is the command's output)
out = Console(highlight=False, soft_wrap=True)

DirArgument = Annotated[Path, typer.Argument(help="Directory of baseline files.")]
#: per-item keys that change with every learning run and are not part of an item's identity
_SEEN_KEYS = frozenset({"first_seen", "last_seen", "count", "accepted"})


def _load(directory: Path) -> dict[str, SegmentBaseline]:
    try:
        return store.load_dir(directory)
    except store.BaselineError as exc:
        error(exc)
        raise typer.Exit(2) from None


# -- learn ------------------------------------------------------------------------------------
@app.command("learn")
def learn(
    pcaps: Annotated[
        list[Path] | None,
        typer.Argument(help="Captures of normal traffic (files or directories); or use -i."),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the baseline files.")
    ] = Path("baselines"),
    config: ConfigOption = None,
    decode_as: DecodeAsOption = None,
    min_events: Annotated[
        int, typer.Option(help="Fewer events in a segment: the baseline says it is too little.")
    ] = Sufficiency().min_events,
    min_seconds: Annotated[
        float, typer.Option(help="Less traffic time in a segment: too little, likewise.")
    ] = Sufficiency().min_seconds,
    keep_going: Annotated[
        bool, typer.Option("--keep-going", help="On a broken capture, report it and go on.")
    ] = False,
    interface: Annotated[
        list[str] | None,
        typer.Option("--interface", "-i", help="Learn live from this interface (repeatable)."),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option("--duration", help="With -i: learn for this long (90s, 15m, 24h, 7d)."),
    ] = None,
    bpf: Annotated[
        str | None, typer.Option("--filter", "-f", help="With -i: capture filter (tcpdump syntax).")
    ] = None,
) -> None:
    """Learn one baseline per segment from captures of normal traffic (DIR/<segment>.yaml), or
    live from a mirror port with -i for --duration (Ctrl-C ends the learning early)."""
    cfg, decode_rules = settings(config, decode_as)
    learner = Learner(Sufficiency(min_events, min_seconds))
    if interface:
        if pcaps:
            error("learn either from captures or live with -i, not both")
            raise typer.Exit(2)
        seconds = duration_option(duration)
        learner.sources = [f"live:{','.join(interface)}"]
        result = _learn_live(interface, bpf, seconds, learner, cfg, decode_rules)
    else:
        if not pcaps:
            error("give captures to learn from, or an interface with -i")
            raise typer.Exit(2)
        paths = capture_paths(pcaps)
        learner.sources = source_names(paths)
        try:
            result = feed(paths, learner, cfg, decode_as=decode_rules, keep_going=keep_going)
        except (CaptureError, OSError) as exc:
            error(exc)
            raise typer.Exit(1) from None
    for problem in result.errors:
        error(problem)
    baselines = learner.finish()
    if not baselines:
        error("no traffic to learn from in the captures")
        raise typer.Exit(1)
    try:
        written = store.save_all(baselines, out_dir)
    except OSError as exc:
        error(f"cannot write to {out_dir}: {exc}")
        raise typer.Exit(2) from None
    for baseline, path in zip(baselines, written, strict=True):
        info = baseline.info
        note = (
            "enough data"
            if info.sufficient
            else "TOO LITTLE DATA: " + "; ".join(info.too_little_data)
        )
        typer.echo(
            f"{path}: segment {baseline.segment}, {info.events} events over {info.seconds:g} s"
            f" ({note})",
            err=True,
        )
    if result.errors:
        raise typer.Exit(1)


def _learn_live(
    interfaces: list[str],
    bpf: str | None,
    seconds: float | None,
    learner: Learner,
    cfg: Config,
    decode_rules: list[DecodeAs],
) -> FeedResult:
    """Feed the learner from live interfaces until ``seconds`` passed or SIGINT/SIGTERM."""
    import signal
    import time

    from otsentry.capture.live import LiveCapture, LiveCaptureError, LiveOptions

    try:
        capture = LiveCapture(LiveOptions(interfaces=tuple(interfaces), bpf=bpf))
    except LiveCaptureError as exc:
        error(exc)
        raise typer.Exit(2) from None
    stop: list[bool] = []
    deadline = time.monotonic() + seconds if seconds is not None else None

    def frames() -> Iterator[Frame]:
        while not stop and (deadline is None or time.monotonic() < deadline):
            yield from capture.read(4096, 0.2)

    handlers = {
        sig: signal.signal(sig, lambda *_: stop.append(True))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    typer.echo(
        f"learning on {', '.join(interfaces)}"
        + (f" for {seconds:g} s" if seconds is not None else " until Ctrl-C"),
        err=True,
    )
    try:
        return feed_frames(frames(), learner, cfg, decode_as=decode_rules)
    except LiveCaptureError as exc:
        error(exc)
        raise typer.Exit(1) from None
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        capture.close()


# -- show -------------------------------------------------------------------------------------
@app.command("show")
def show(directory: DirArgument) -> None:
    """Summarise each segment's baseline: learning window, assets, links, item counts."""
    for segment, baseline in sorted(_load(directory).items()):
        info = baseline.info
        data = store.to_data(baseline)["learning"]
        verdict = (
            "[green]enough data[/]"
            if info.sufficient
            else "[yellow]too little data: " + escape("; ".join(info.too_little_data)) + "[/]"
        )
        out.print(
            f"[bold]segment {escape(segment)}[/] (version {baseline.version}) — "
            f"{info.events} events, {info.packets} packets, {info.seconds:g} s "
            f"from {data['first_packet']} to {data['last_packet']}; {verdict}"
        )
        if info.sources:
            out.print(f"  learned from: {escape(', '.join(info.sources))}")
        if info.accepted:
            out.print(f"  alerts accepted since: {info.accepted}")
        counts = Table("aspect", "items", title=None, box=None, padding=(0, 2))
        for name, aspect in baseline.aspects.items():
            stats = aspect.stats()
            counts.add_row(name, ", ".join(f"{k} {v}" for k, v in stats.items()) or "-")
        out.print(counts)
        assets = baseline.aspects.get("assets")
        if assets is not None:
            hosts = Table("host", "MAC", "roles", "events", box=None, padding=(0, 2))
            for host in assets.to_data().get("hosts", []):
                hosts.add_row(
                    host["ip"],
                    ", ".join(host["macs"]),
                    ", ".join(host["roles"]),
                    str(host["count"]),
                )
            out.print(hosts)
        links = baseline.aspects.get("links")
        if links is not None:
            table = Table("client", "server", "service", "protocols", "count", box=None)
            for link in links.to_data().get("links", []):
                table.add_row(
                    link["client"],
                    link["server"],
                    f"{link['transport']}/{link['server_port']}",
                    ", ".join(link["protocols"]),
                    str(link["count"]),
                )
            out.print(table)
        out.print()


# -- diff -------------------------------------------------------------------------------------
@app.command("diff")
def diff(
    a: Annotated[Path, typer.Argument(help="The older baseline directory.")],
    b: Annotated[Path, typer.Argument(help="The newer baseline directory.")],
) -> None:
    """Items added (+), removed (-) and changed (~) from baseline A to baseline B."""
    old, new = _load(a), _load(b)
    lines = list(diff_baselines(old, new))
    for line in lines:
        typer.echo(line)
    if lines:
        raise typer.Exit(1)


def diff_baselines(
    old: Mapping[str, SegmentBaseline], new: Mapping[str, SegmentBaseline]
) -> Iterator[str]:
    """Readable differences between two sets of baselines (nothing when they agree)."""
    for segment in sorted(set(old) | set(new)):
        if segment not in new:
            yield f"- segment {segment}"
            continue
        if segment not in old:
            yield f"+ segment {segment}"
        before = store.to_data(old[segment])["aspects"] if segment in old else {}
        after = store.to_data(new[segment])["aspects"]
        found = list(_diff_aspects(before, after))
        if found:
            if segment in old:
                yield f"segment {segment}"
            yield from (f"  {line}" for line in found)


def _diff_aspects(before: Mapping[str, Any], after: Mapping[str, Any]) -> Iterator[str]:
    for name in [*after, *(n for n in before if n not in after)]:
        if name not in after:
            yield f"- {name} (whole aspect)"
            continue
        if name not in before:
            yield f"+ {name} (whole aspect)"
            continue
        old, new = before[name], after[name]
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            if old != new:
                yield f"~ {name}: {_short(old)} → {_short(new)}"
            continue
        for key in [*new, *(k for k in old if k not in new)]:
            where = f"{name}.{key}"
            o, n = old.get(key), new.get(key)
            if isinstance(o, list) and isinstance(n, list) and _item_list(o) and _item_list(n):
                yield from _diff_items(where, o, n)
            elif o != n:
                yield f"~ {where}: {_short(o)} → {_short(n)}"


def _item_list(values: list[Any]) -> bool:
    return all(isinstance(v, Mapping) for v in values)


def _identity(item: Mapping[str, Any]) -> str:
    """An item's identity: its scalar fields other than when/how often it was seen."""
    return " ".join(
        f"{k}={v}"
        for k, v in item.items()
        if k not in _SEEN_KEYS and not isinstance(v, list | dict)
    )


def _diff_items(where: str, old: list[Any], new: list[Any]) -> Iterator[str]:
    before = {_identity(i): i for i in old}
    after = {_identity(i): i for i in new}
    for ident, item in after.items():
        if ident not in before:
            yield f"+ {where}: {ident}{_details(item)}"
            continue
        prev = before[ident]
        for k, v in item.items():
            if k in _SEEN_KEYS or not isinstance(v, list | dict):
                continue
            if prev.get(k) != v:
                yield f"~ {where}: {ident}: {k} {_short(prev.get(k))} → {_short(v)}"
    for ident, item in before.items():
        if ident not in after:
            yield f"- {where}: {ident}{_details(item)}"


def _details(item: Mapping[str, Any]) -> str:
    parts = [
        f"{k}={_short(v)}"
        for k, v in item.items()
        if k not in _SEEN_KEYS and isinstance(v, list | dict) and v
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


# -- accept -----------------------------------------------------------------------------------
@app.command("accept")
def accept(
    directory: DirArgument,
    alerts: Annotated[
        Path, typer.Option("--alerts", help="alerts.ndjson holding the anomaly alerts.")
    ],
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="event.id of an alert to accept (repeatable; default: all)."),
    ] = None,
) -> None:
    """Fold anomaly alerts back into the baselines: what they reported becomes normal."""
    baselines = _load(directory)
    wanted = set(ids or ())
    try:
        docs = list(_anomaly_alerts(alerts))
    except (OSError, ValueError) as exc:
        error(f"{alerts}: {exc}")
        raise typer.Exit(2) from None
    chosen = [d for d in docs if not wanted or d.get("event", {}).get("id") in wanted]
    missing = wanted - {d.get("event", {}).get("id") for d in chosen}
    if missing:
        error(f"no anomaly alert with id {', '.join(sorted(missing))} in {alerts}")
        raise typer.Exit(2)
    changed: set[str] = set()
    folded = skipped = unlisted = 0
    for doc in chosen:
        anomaly = doc["otsentry"]["anomaly"]
        unlisted += int(anomaly.get("items_dropped") or 0)
        segment = str(anomaly.get("baseline", {}).get("id", ""))
        baseline = baselines.get(segment)
        if baseline is None:
            error(f"alert {doc.get('event', {}).get('id')}: no baseline for segment {segment!r}")
            skipped += 1
            continue
        for item in anomaly.get("items") or [anomaly.get("item") or {}]:
            if baseline.accept(str(anomaly.get("aspect", "")), item):
                folded += 1
                changed.add(segment)
            else:
                skipped += 1
    try:
        for segment in sorted(changed):
            store.save(baselines[segment], directory)
    except OSError as exc:
        error(f"cannot write to {directory}: {exc}")
        raise typer.Exit(2) from None
    typer.echo(
        f"accepted {folded} items from {len(chosen)} alerts into {len(changed)} baselines"
        + (f" ({skipped} could not be folded)" if skipped else ""),
        err=True,
    )
    if unlisted:
        typer.echo(
            f"{unlisted} more items were not listed in the alerts (an alert lists at most "
            f"{MAX_ITEMS_PER_ALERT}): replay and accept again to fold them",
            err=True,
        )


def _anomaly_alerts(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
            if not isinstance(doc, dict):
                continue
            if doc.get("rule", {}).get("ruleset") != "otsentry-anomaly":
                continue
            if isinstance(doc.get("otsentry", {}).get("anomaly"), dict):
                yield doc
