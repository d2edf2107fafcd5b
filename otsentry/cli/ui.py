"""Terminal UI on stderr: the replay progress bar and the end-of-run summary table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from otsentry.capture import CaptureReader

#: UI goes to stderr; stdout is for machine output.
console = Console(stderr=True, highlight=False)


def error(message: object) -> None:
    """One ``error: …`` line on stderr, never wrapped (scripts grep it)."""
    console.print(f"[red]error:[/] {escape(str(message))}", soft_wrap=True)


class ReplayProgress:
    """A progress bar over the bytes of the input files."""

    def __init__(self, readers: Sequence[CaptureReader], disabled: bool = False) -> None:
        self.readers = readers
        self.total = sum(r.size for r in readers)
        self.disabled = disabled or not console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ReplayProgress:
        if not self.disabled:
            self._progress = Progress(
                TextColumn("replay"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("replay", total=self.total)
        return self

    def update(self) -> None:
        """Refresh from the readers' positions."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=sum(r.position for r in self.readers))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self.update()
            self._progress.__exit__(exc_type, exc, tb)


def print_summary(stats: dict[str, Any], out_dir: Path) -> None:
    """The end-of-run table: packets, flows, PDUs per protocol, alerts, throughput."""
    table = Table(title="otsentry replay", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("packets", f"{stats['packets']:,}")
    table.add_row("bytes", f"{stats['bytes']:,}")
    table.add_row("flows", f"{stats['flows']:,}")
    for name, count in stats["pdus"].items():
        table.add_row(f"{name} PDUs", f"{count:,}")
    for name, count in stats["events"].items():
        table.add_row(f"{name} events", f"{count:,}")
    alerts = stats["alerts"]
    table.add_row(
        "alerts",
        f"{stats['alerts_total']:,}  ("
        + ", ".join(f"{sev} {alerts[sev]}" for sev in ("critical", "high", "medium", "low"))
        + ")",
    )
    table.add_row("assets", f"{stats['assets']:,}")
    errors = stats["parse_errors"]
    table.add_row(
        "parse errors",
        f"{sum(errors['decode'].values()) + errors['dissector_exceptions']:,}",
    )
    tcp = stats["tcp"]
    table.add_row("tcp gaps", f"{tcp['gaps']:,}")
    table.add_row("seconds", f"{stats['seconds']:.2f}")
    table.add_row("packets/s", f"{stats['packets_per_second']:,}")
    if stats["capture"]["errors"]:
        table.add_row("capture errors", str(len(stats["capture"]["errors"])), style="red")
    table.add_row("output", str(out_dir))
    for name, out in stats.get("outputs", {}).items():
        waiting = out["spool"]["documents"]
        style = "red" if waiting or out["rejected"] else None
        table.add_row(
            name,
            f"{out['sent']:,} sent, {out['duplicates']:,} already there, "
            f"{out['rejected']:,} refused, {waiting:,} waiting in the spool",
            style=style,
        )
    console.print(table)
