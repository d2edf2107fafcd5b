"""``otsentry kibana setup``: import otsentry's data view, searches and dashboards into Kibana."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Kibana: import the data view, saved searches and dashboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
