"""The ``otsentry`` typer application: one module per command group, registered here."""

from __future__ import annotations

import platform
import sys

import typer

from otsentry import __version__
from otsentry.cli import alerts, assets, dissect, es, kibana, replay, rules, sensor, spool, status
from otsentry.cli import baseline as baseline_cli

app = typer.Typer(
    name="otsentry",
    help="Passive OT network security monitoring: Modbus/TCP, S7comm, OPC UA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("replay")(replay.replay)
app.command("sensor")(sensor.sensor)
app.command("status")(status.status)
app.command("dissect")(dissect.dissect)
app.command("alerts")(alerts.alerts)
app.command("assets")(assets.assets)
app.add_typer(rules.app, name="rules")
app.add_typer(baseline_cli.app, name="baseline")
app.add_typer(es.app, name="es")
app.add_typer(kibana.app, name="kibana")
app.add_typer(spool.app, name="spool")


@app.command("version")
def version() -> None:
    """Print the otsentry version (Python's, and whether the compiled module is in use) on stdout."""
    from otsentry.accel import describe

    typer.echo(
        f"otsentry {__version__} (Python {platform.python_version()}, speedups: {describe()})"
    )


def main() -> None:
    """Console-script entry point. Exit codes: 0 ok, 1 runtime error, 2 usage or config error."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
