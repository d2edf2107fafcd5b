"""``otsentry spool drain|show``: deliver what an output directory's spool holds."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The outage spool: documents waiting for the cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
