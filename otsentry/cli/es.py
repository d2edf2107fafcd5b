"""``otsentry es setup|check``: prepare and check an Elasticsearch or OpenSearch cluster.

Exit codes: 0 ok; 1 a step or check failed, or the cluster could not be reached; 2 usage or
configuration error (including credentials inside a URL).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from otsentry.cli.options import ConfigOption, EsOption, OpenSearchOption
from otsentry.cli.ui import console, error
from otsentry.config import ConfigError, load_config

if TYPE_CHECKING:
    from otsentry.sinks.clients import ClusterSettings
    from otsentry.sinks.setup import Check, Step

app = typer.Typer(
    help="Elasticsearch / OpenSearch: install templates and policies, check a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace", help="Data stream namespace (default: the config's, else 'default')."
    ),
]
NoDataStreamsOption = Annotated[
    bool,
    typer.Option(
        "--no-data-streams",
        help="Plain indices with the same names instead of data streams (no rollover).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]

_OUTCOME_STYLE = {
    "created": "green",
    "updated": "yellow",
    "unchanged": "dim",
    "skipped": "cyan",
    "planned": "blue",
    "failed": "red",
}
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skipped": "cyan"}


def _targets(
    config: Any, es: str | None, opensearch: str | None, namespace: str | None, no_ds: bool
) -> list[ClusterSettings]:
    """The clusters to work on: those the options name, else those the config names. A bad
    option or config exits with code 2."""
    from otsentry.sinks.clients import settings_for
    from otsentry.sinks.factory import wanted_clusters
    from otsentry.sinks.routing import valid_namespace

    try:
        cfg = load_config(config)
        if es or opensearch:
            found = [settings_for("elasticsearch", es, cfg)] if es else []
            found += [settings_for("opensearch", opensearch, cfg)] if opensearch else []
        else:
            found = wanted_clusters(cfg)
    except ConfigError as exc:
        error(exc)
        raise typer.Exit(2) from None
    if not found:
        error("no cluster: give --es URL or --opensearch URL (or outputs.<kind>.url in the config)")
        raise typer.Exit(2)
    if namespace is not None and not valid_namespace(namespace):
        error(f"--namespace: {namespace!r} is not a valid data stream namespace")
        raise typer.Exit(2)
    changes: dict[str, Any] = {}
    if namespace is not None:
        changes["namespace"] = namespace
    if no_ds:
        changes["data_streams"] = False
    return [dataclasses.replace(s, **changes) for s in found]


@app.command("setup")
def setup(
    es: EsOption = None,
    opensearch: OpenSearchOption = None,
    config: ConfigOption = None,
    namespace: NamespaceOption = None,
    no_data_streams: NoDataStreamsOption = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Send nothing: print the requests (method, path, body)."),
    ] = False,
    retention_days: Annotated[
        int,
        typer.Option("--retention-days", min=1, help="Delete otsentry data after this many days."),
    ] = 365,
    json_out: JsonOption = False,
) -> None:
    """Install the lifecycle policy and the index templates, idempotently.

    Creates or updates only what is missing or outdated; a second run reports everything
    unchanged. Users' <template>@custom component templates are never overwritten. Without ILM
    (Elasticsearch) or ISM (OpenSearch) the policy is skipped, not an error.
    """
    from otsentry.sinks.clients import ClusterUnavailable, connect
    from otsentry.sinks.setup import Outcome, setup_cluster

    targets = _targets(config, es, opensearch, namespace, no_data_streams)
    results: list[dict[str, Any]] = []
    failed = False
    for settings in targets:
        client = connect(settings)
        try:
            steps = setup_cluster(
                client,
                dry_run=dry_run,
                data_streams=settings.data_streams,
                retention_days=retention_days,
            )
        except ClusterUnavailable as exc:
            error(f"cannot reach {settings.display_url}: {exc}")
            raise typer.Exit(1) from None
        finally:
            client.close()
        failed = failed or any(s.outcome is Outcome.FAILED for s in steps)
        results.append(
            {
                "cluster": settings.display_url,
                "kind": settings.kind,
                "data_streams": settings.data_streams,
                "dry_run": dry_run,
                "steps": [s.to_json(with_body=dry_run) for s in steps],
            }
        )
        if not json_out:
            _print_steps(steps, settings, dry_run)
            if dry_run:
                _print_requests(steps)
    if json_out:
        typer.echo(json.dumps({"clusters": results}, indent=None))
    if failed:
        error("setup failed (see the table); nothing after the failed step was sent")
        raise typer.Exit(1)


def _print_steps(steps: Sequence[Step], settings: ClusterSettings, dry_run: bool) -> None:
    title = f"es setup → {settings.kind} {settings.display_url}" + (" (dry run)" if dry_run else "")
    table = Table(title=escape(title), title_justify="left")
    table.add_column("object", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("detail")
    for step in steps:
        style = _OUTCOME_STYLE.get(str(step.outcome), "")
        table.add_row(escape(step.what), f"[{style}]{step.outcome}[/]", escape(step.reason))
    console.print(table)


def _print_requests(steps: Sequence[Step]) -> None:
    """The planned requests on stdout, in the Dev Tools console format."""
    for step in steps:
        if str(step.outcome) != "planned":
            continue
        typer.echo(f"{step.method} {step.path}")
        typer.echo(json.dumps(step.body, indent=2))
        typer.echo("")


@app.command("check")
def check(
    es: EsOption = None,
    opensearch: OpenSearchOption = None,
    config: ConfigOption = None,
    namespace: NamespaceOption = None,
    no_data_streams: NoDataStreamsOption = False,
    json_out: JsonOption = False,
) -> None:
    """Check a cluster: connectivity, version, privileges, templates, and a test write.

    The test write creates one document (id otsentry-check-<uuid>, event.kind: event) in the
    alert stream and deletes it again. Exit code 1 when a check fails.
    """
    from otsentry.sinks.clients import connect
    from otsentry.sinks.setup import Status, check_cluster

    targets = _targets(config, es, opensearch, namespace, no_data_streams)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for settings in targets:
        client = connect(settings)
        try:
            checks = check_cluster(client)
        finally:
            client.close()
        bad = [c for c in checks if c.status is Status.FAIL]
        if bad:
            failed.append(f"{settings.display_url}: {bad[0].name}: {bad[0].detail}")
        results.append(
            {
                "cluster": settings.display_url,
                "kind": settings.kind,
                "ok": not bad,
                "checks": [c.to_json() for c in checks],
            }
        )
        if not json_out:
            _print_checks(checks, settings)
    if json_out:
        typer.echo(json.dumps({"clusters": results}))
    for line in failed:
        error(line)
    if failed:
        raise typer.Exit(1)


def _print_checks(checks: Sequence[Check], settings: ClusterSettings) -> None:
    table = Table(title=escape(f"es check → {settings.kind} {settings.display_url}"))
    table.title_justify = "left"
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail")
    for item in checks:
        style = _STATUS_STYLE.get(str(item.status), "")
        table.add_row(item.name, f"[{style}]{item.status}[/]", escape(item.detail))
    console.print(table)
