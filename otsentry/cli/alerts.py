"""``otsentry alerts``: the alerts of an output directory as a table (or JSON lines)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otsentry.cli.options import ConfigOption
from otsentry.cli.ui import error
from otsentry.config import ConfigError, load_config

ALERTS_FILE = "alerts.ndjson"


class Severity(StrEnum):
    """Severity names of ``event.severity`` (ECS 21 / 47 / 73 / 99)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_SCORES = {Severity.LOW: 21, Severity.MEDIUM: 47, Severity.HIGH: 73, Severity.CRITICAL: 99}
_PIPE_WIDTH = 200  # columns of the table when stdout is no terminal
_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def severity_name(score: int) -> str:
    """The name of an ``event.severity`` value (the highest level it reaches)."""
    name = "low"
    for level, floor in SEVERITY_SCORES.items():
        if score >= floor:
            name = str(level)
    return name


class AlertsFileError(Exception):
    """A line of ``alerts.ndjson`` that is not a JSON document."""


def read_alerts(path: Path) -> Iterator[dict[str, Any]]:
    """The documents of an ``alerts.ndjson`` file; a last line cut short (a sensor still
    writing) is left out, any other broken line raises AlertsFileError."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n"):
                    return
                raise AlertsFileError(f"{path}:{number}: not a JSON document ({exc.msg})") from None
            if not isinstance(doc, dict):
                raise AlertsFileError(f"{path}:{number}: not a JSON object")
            yield doc


def select(
    docs: Iterator[dict[str, Any]], min_severity: Severity | None, rules: list[str] | None
) -> list[dict[str, Any]]:
    """The alerts at or above ``min_severity`` of the ``rules`` given, oldest first."""
    floor = SEVERITY_SCORES[min_severity] if min_severity is not None else 0
    wanted = set(rules or ())
    chosen = [
        doc
        for doc in docs
        if _get(doc, "event", "severity", default=0) >= floor
        and (not wanted or _get(doc, "rule", "id") in wanted)
    ]
    chosen.sort(
        key=lambda d: (str(d.get("@timestamp", "")), str(_get(d, "event", "id", default="")))
    )
    return chosen


def _get(doc: dict[str, Any], *keys: str, default: Any = None) -> Any:
    value: Any = doc
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return value


def _endpoint(doc: dict[str, Any], side: str) -> str:
    ip = _get(doc, side, "ip")
    if ip is None:
        return "?"
    port = _get(doc, side, "port")
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    return host if port is None else f"{host}:{port}"


def _time(stamp: str) -> str:
    """``2023-11-14T22:13:20.010123Z`` → ``2023-11-14 22:13:20.010``."""
    return stamp.replace("T", " ")[:23] if stamp else "?"


class _StdoutConsole(Console):
    """A console on stdout that leaves a closed pipe to the caller (rich would exit 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def render(docs: list[dict[str, Any]]) -> Table:
    """The alerts table."""
    table = Table(title=f"otsentry alerts ({len(docs)})", title_justify="left")
    table.add_column("time", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("message", ratio=3, overflow="fold")
    table.add_column("source → destination", ratio=2, overflow="fold")
    table.add_column("techniques", ratio=1, overflow="fold")
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("evidence", ratio=2, overflow="fold")
    for doc in docs:
        severity = severity_name(int(_get(doc, "event", "severity", default=0)))
        techniques = _get(doc, "threat", "technique", "id", default=[])
        table.add_row(
            _time(str(doc.get("@timestamp", ""))),
            f"[{_STYLES[severity]}]{severity}[/]",
            escape(str(_get(doc, "rule", "id", default="?"))),
            escape(str(doc.get("message", ""))),
            escape(f"{_endpoint(doc, 'source')} → {_endpoint(doc, 'destination')}"),
            escape(", ".join(str(t) for t in techniques)),
            str(_get(doc, "otsentry", "alert", "count", default=1)),
            escape(Path(str(_get(doc, "otsentry", "evidence", "pcap", default="") or "")).name),
        )
    return table


def alerts(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: ./otsentry-out or config)."),
    ] = None,
    min_severity: Annotated[
        Severity | None,
        typer.Option("--min-severity", "-s", help="Only alerts at least this severe."),
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", "-r", help="Only this rule's alerts (repeatable).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the alert documents as JSON lines.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Show the alerts of an output directory, oldest first.

    Exit codes: 0 ok (also when no alert is left by the filters), 1 alerts.ndjson holds a line
    that is not a JSON document, 2 usage error or no alerts.ndjson in the directory.
    """
    if out is None:
        try:
            out = load_config(config).outputs.dir
        except ConfigError as exc:
            error(exc)
            raise typer.Exit(2) from None
    path = out / ALERTS_FILE
    if not path.is_file():
        error(f"{path}: no such file (replay a capture with --out {out} first)")
        raise typer.Exit(2)
    try:
        docs = select(read_alerts(path), min_severity, rule)
    except AlertsFileError as exc:
        error(exc)
        raise typer.Exit(1) from None
    except OSError as exc:
        error(f"{path}: {exc.strerror or exc}")
        raise typer.Exit(1) from None
    try:
        if json_out:
            for doc in docs:
                sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        else:
            console = _StdoutConsole(highlight=False)
            if not console.is_terminal:
                console.width = _PIPE_WIDTH
            console.print(render(docs))
    except BrokenPipeError:
        # the reader went away (| head): stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - swallow the final flush
