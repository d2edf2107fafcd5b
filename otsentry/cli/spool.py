"""``otsentry spool drain|show``: deliver or inspect what an output directory's spool holds.

Exit codes: 0 ok (drain: the spool is empty); 1 the cluster could not take everything (what is
left stays in the spool, and a later drain sends it; a document is never sent twice into the
cluster: ids make a resend a harmless 409); 2 usage or configuration error, or the spool is in
use by a running replay or sensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from otsentry.cli.options import ConfigOption, EsOption, OpenSearchOption
from otsentry.cli.ui import console, error
from otsentry.config import ConfigError, load_config

app = typer.Typer(
    help="The outage spool: documents waiting for the cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OutOption = Annotated[
    Path,
    typer.Option("--out", "-o", help="Output directory of the replay or sensor (holds spool/)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


@app.command("drain")
def drain(
    out: OutOption,
    es: EsOption = None,
    opensearch: OpenSearchOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Send the spooled documents to the cluster now, oldest first.

    Give exactly one of --es / --opensearch (or name one cluster in the config's outputs).
    Documents the cluster refuses for good go to spool/<kind>/rejected.ndjson.
    """
    from otsentry.sinks.clients import connect
    from otsentry.sinks.cluster import ClusterSink
    from otsentry.sinks.factory import spool_dir, wanted_clusters
    from otsentry.sinks.spool import Spool, SpoolBusy

    try:
        cfg = load_config(config)
        clusters = wanted_clusters(cfg, es, opensearch)
    except ConfigError as exc:
        error(exc)
        raise typer.Exit(2) from None
    if len(clusters) != 1:
        error("give exactly one cluster: --es URL or --opensearch URL")
        raise typer.Exit(2)
    settings = clusters[0]
    directory = spool_dir(out, settings.kind)
    if not directory.is_dir():
        error(f"no spool for {settings.kind} in {out} ({directory} does not exist)")
        raise typer.Exit(2)
    try:
        spool = Spool(directory, cfg.outputs.spool)
    except SpoolBusy as exc:
        error(f"spool {exc}: stop it first, or let it drain the spool itself")
        raise typer.Exit(2) from None
    before = spool.pending
    sink = ClusterSink(connect(settings), spool, close_timeout=float("inf"))
    sink.close()
    result = sink.as_dict()
    result["waiting_before"] = before
    left = result["spool"]["documents"]
    if json_out:
        typer.echo(json.dumps(result))
    else:
        _print_drain(result, settings.display_url)
    if left:
        error(
            f"{left:,} documents still wait in {directory}"
            + (f" ({result['last_error']})" if result["last_error"] else "")
        )
        raise typer.Exit(1)


def _print_drain(result: dict[str, Any], url: str) -> None:
    table = Table(title=f"spool drain → {escape(url)}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("waiting before", f"{result['waiting_before']:,}")
    table.add_row("delivered", f"{result['sent']:,}")
    table.add_row("already in the cluster", f"{result['duplicates']:,}")
    table.add_row("refused for good", f"{result['rejected']:,}")
    table.add_row("still waiting", f"{result['spool']['documents']:,}")
    console.print(table)


@app.command("show")
def show(out: OutOption, json_out: JsonOption = False) -> None:
    """What waits in the spool of an output directory, per cluster and data stream."""
    from otsentry.sinks.spool import Spool, iter_rejected

    root = out / "spool"
    report: dict[str, Any] = {}
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        spool = Spool(directory, lock=False)
        stats = spool.stats()
        stats["rejected"] = sum(1 for _ in iter_rejected(directory))
        report[directory.name] = stats
        spool.close()
    if json_out:
        typer.echo(json.dumps(report))
        return
    if not report:
        console.print(f"nothing spooled in {escape(str(out))}")
        return
    table = Table(title=f"spool of {escape(str(out))}", title_justify="left")
    for col in ("cluster", "data stream", "documents"):
        table.add_column(col, justify="right" if col == "documents" else "left")
    for kind, stats in report.items():
        for stream, count in stats["streams"].items():
            table.add_row(kind, stream, f"{count:,}")
        table.add_row(kind, "[dim]bytes on disk[/]", f"{stats['bytes']:,}")
        if stats["rejected"]:
            table.add_row(
                kind, "[red]refused for good (rejected.ndjson)[/]", f"{stats['rejected']:,}"
            )
    console.print(table)
