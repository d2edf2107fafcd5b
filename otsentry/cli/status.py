"""``otsentry status``: the health view of a sensor from the ``stats.json`` in its output directory.

The sensor replaces ``DIR/stats.json`` atomically every stats interval; this command reads it,
says how old it is, and warns when it is older than three intervals (the sensor may be down).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from otsentry.cli.ui import error
from otsentry.health import render

#: stats.json older than this many stats intervals means the sensor may be down
STALE_INTERVALS = 3


class StatusError(Exception):
    """stats.json is missing or cannot be read."""


@dataclass(frozen=True)
class Snapshot:
    """One read of stats.json: its content and its age in seconds."""

    path: Path
    stats: dict[str, Any]
    age: float

    @property
    def interval(self) -> float | None:
        """The sensor's stats interval, when a live sensor wrote the file."""
        sensor = self.stats.get("sensor")
        value = sensor.get("stats_interval") if isinstance(sensor, dict) else None
        return float(value) if isinstance(value, int | float) and value > 0 else None

    @property
    def stopped(self) -> bool:
        """The sensor wrote its final stats and exited (or a replay wrote them)."""
        sensor = self.stats.get("sensor")
        return not isinstance(sensor, dict) or sensor.get("state") == "stopped"

    @property
    def stale(self) -> bool:
        """A running sensor's file older than ``STALE_INTERVALS`` stats intervals."""
        interval = self.interval
        return not self.stopped and interval is not None and self.age > STALE_INTERVALS * interval

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "path": str(self.path),
            "age_seconds": round(self.age, 1),
            "stale": self.stale,
            "stats": self.stats,
        }


def read_snapshot(out_dir: Path, now: float | None = None) -> Snapshot:
    """``out_dir/stats.json`` and its age; ``StatusError`` with one clear sentence otherwise."""
    path = out_dir / "stats.json"
    try:
        mtime = path.stat().st_mtime
        stats = json.loads(path.read_text())
    except FileNotFoundError:
        raise StatusError(
            f"{path}: no such file (no sensor or replay has written to {out_dir} yet)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StatusError(f"{path}: cannot read it: {reason}") from None
    if not isinstance(stats, dict):
        raise StatusError(f"{path}: not a stats object (a JSON {type(stats).__name__})")
    age = max(0.0, (time.time() if now is None else now) - mtime)
    return Snapshot(path, stats, age)


def age_text(seconds: float) -> str:
    """``4 s``, ``3 min``, ``5 h``, ``2 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def freshness(snap: Snapshot) -> Text:
    """The line above the dashboard: which file, how old, and the warning when stale."""
    line = Text(f"{snap.path}: written {age_text(snap.age)} ago", style="dim")
    interval = snap.interval
    if "sensor" not in snap.stats:
        line.append(" by a replay", style="dim")
    elif snap.stopped:
        line.append(" (the sensor has stopped)", style="yellow")
    elif interval is not None:
        line.append(f" (every {interval:g} s)", style="dim")
    if snap.stale:
        line.append("\n")
        line.append(stale_warning(snap), style="bold red")
    return line


def stale_warning(snap: Snapshot) -> str:
    """One sentence for a stale file."""
    return (
        f"warning: stats.json is {age_text(snap.age)} old, more than {STALE_INTERVALS} stats "
        f"intervals of {snap.interval:g} s: the sensor may be down"
    )


def view(out_dir: Path) -> RenderableType:
    """The whole view of ``out_dir`` (an error line when stats.json cannot be read)."""
    try:
        snap = read_snapshot(out_dir)
    except StatusError as exc:
        return Text(f"error: {exc}", style="bold red")
    return Group(freshness(snap), render(snap.stats))


class _StdoutConsole(Console):
    """A console on stdout that leaves a closed pipe (``| head``) quietly."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def status(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="The sensor's output directory (holds stats.json)."
        ),
    ],
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print the stats as JSON (path, age_seconds, stale, stats)."),
    ] = False,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            min=0.1,
            metavar="SECONDS",
            help="Read stats.json again every SECONDS until Ctrl-C (with --json: one line each).",
        ),
    ] = None,
) -> None:
    """Show the health of the sensor writing to DIR (from DIR/stats.json).

    Traffic, kernel drops, flows, protocols, alerts, baseline, queue, outputs; the file's age.

    Warns when the file is older than three stats intervals: the sensor may be down.

    Exit codes: 0 shown, 1 stats.json missing or unreadable.
    """
    try:
        snap = read_snapshot(out)
    except StatusError as exc:
        error(exc)
        raise typer.Exit(1) from None
    console = _StdoutConsole(highlight=False)
    try:
        if watch is None:
            _show_once(console, snap, json_out)
        elif json_out:
            _watch_json(out, snap, watch)
        else:
            _watch_view(console, out, watch)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        return


def _show_once(console: Console, snap: Snapshot, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(snap.as_dict(), indent=2))
        if snap.stale:
            error_console = Console(stderr=True, highlight=False)
            error_console.print(f"[yellow]{escape(stale_warning(snap))}[/]", soft_wrap=True)
        return
    console.print(freshness(snap))
    console.print(render(snap.stats))


def _watch_json(out: Path, first: Snapshot, every: float) -> None:
    snap: Snapshot | None = first
    while True:
        if snap is not None:
            typer.echo(json.dumps(snap.as_dict()))
        time.sleep(every)
        try:
            snap = read_snapshot(out)
        except StatusError as exc:
            typer.echo(json.dumps({"path": str(out / "stats.json"), "error": str(exc)}))
            snap = None


def _watch_view(console: Console, out: Path, every: float) -> None:
    if not console.is_terminal:
        while True:
            console.print(view(out))
            console.print()
            time.sleep(every)
    with Live(view(out), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(every)
            live.update(view(out), refresh=True)
