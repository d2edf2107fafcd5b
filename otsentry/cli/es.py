"""``otsentry es setup|check``: prepare and check an Elasticsearch or OpenSearch cluster."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Elasticsearch / OpenSearch: install templates and policies, check a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
