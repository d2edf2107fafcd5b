"""``otsentry kibana setup``: import otsentry's data view, searches and dashboards into Kibana."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from otsentry.cli.options import ConfigOption
from otsentry.cli.ui import console, error

if TYPE_CHECKING:
    from otsentry.config import ClusterConfig

app = typer.Typer(
    help="Kibana: import the data view, saved searches and dashboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("setup")
def setup(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="OTSENTRY_KIBANA_URL",
            help="Kibana's base URL, e.g. http://localhost:5601 (no credentials in it).",
            show_default=False,
        ),
    ] = None,
    space: Annotated[
        str | None, typer.Option("--space", help="Kibana space id (default: the default space).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the objects; contact no Kibana.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Import otsentry's data views, saved searches and dashboards (overwriting earlier imports).

    Credentials come from the environment: OTSENTRY_KIBANA_API_KEY, or OTSENTRY_KIBANA_USERNAME and
    OTSENTRY_KIBANA_PASSWORD (else the OTSENTRY_ES_* equivalents, else the config's
    outputs.elasticsearch); a CA file from OTSENTRY_KIBANA_CA_FILE (likewise). Exit codes: 0 every
    object imported; 1 Kibana unreachable, refusing, or an object failed; 2 usage error.
    """
    from otsentry import kibana

    if dry_run:
        objects = kibana.list_objects()
        if as_json:
            typer.echo(
                json.dumps([{"type": o.type, "id": o.id, "title": o.title} for o in objects])
            )
        else:
            for o in objects:
                typer.echo(f"{o.type:<14} {o.id:<34} {o.title}")
        return
    if not url:
        error("--url is required (or OTSENTRY_KIBANA_URL)")
        raise typer.Exit(2)
    try:
        auth = kibana.KibanaAuth.from_env(config=_cluster_config(config))
        result = kibana.import_objects(url, auth=auth, space=space)
    except kibana.KibanaUsageError as exc:
        error(exc)
        raise typer.Exit(2) from None
    except kibana.KibanaError as exc:
        error(exc)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    lines = kibana.summary_lines(result)
    for line in lines[:-1]:
        error(line)
    if not as_json:
        console.print(lines[-1], soft_wrap=True, style=None if result.ok else "red")
    if not result.ok:
        raise typer.Exit(1)


def _cluster_config(path: Path | None) -> ClusterConfig | None:
    """The config file's ``outputs.elasticsearch`` section; a bad file exits with code 2."""
    if path is None:
        return None
    from otsentry.config import ConfigError, load_config

    try:
        return load_config(path).outputs.elasticsearch
    except ConfigError as exc:
        error(exc)
        raise typer.Exit(2) from None
