"""``otsentry rules list|validate|test``: inspect, check and try detection rules.

Without PATH the commands work on the built-in pack; with PATHs (rule files or directories) on
those only, unless ``--builtin`` adds the pack. Exit codes: 0 ok, 1 a fixture failed (``test``)
or a capture could not be read, 2 a rule is invalid or a usage error.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otsentry.capture import CaptureError, merge_frames, open_capture
from otsentry.cli.options import ConfigOption, DecodeAsOption, capture_paths, settings
from otsentry.cli.ui import error
from otsentry.detect.compile import CompiledRule
from otsentry.detect.engine import RuleEngine, fixture_results
from otsentry.detect.loader import collect_rules
from otsentry.detect.model import RuleMatch
from otsentry.dissect.registry import UnknownProtocolError
from otsentry.ecs import iso_time
from otsentry.model import Event
from otsentry.stages import configured_registry, decoder_for, flow_table_for

app = typer.Typer(
    help="Detection rules: list them, validate them, run their fixtures or a capture.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RulePaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Rule files or directories (default: the built-in pack)."),
]
BuiltinOption = Annotated[
    bool | None,
    typer.Option(
        "--builtin/--no-builtin",
        help="Include the built-in pack (default: only when no PATH is given).",
    ),
]


def _load(
    paths: list[Path] | None, builtin: bool | None, check_builtin: bool = False
) -> list[CompiledRule]:
    """The rules, or every error on stderr and exit code 2."""
    paths = paths or []
    rules, errors = collect_rules(
        paths, builtin=not paths if builtin is None else builtin, check_builtin=check_builtin
    )
    if errors:
        for err in errors:
            typer.echo(str(err), err=True)
        raise typer.Exit(2)
    return rules


@app.command("list")
def list_rules(paths: RulePaths = None, builtin: BuiltinOption = None) -> None:
    """Print a table of the rules: id, rev, level, protocol, techniques, title."""
    rules = _load(paths, builtin)
    table = Table(title=f"{len(rules)} rules", title_justify="left")
    for column in ("id", "rev", "level", "protocol", "techniques", "title"):
        table.add_column(column, justify="right" if column == "rev" else "left")
    for compiled in sorted(rules, key=lambda c: c.rule.id):
        rule = compiled.rule
        table.add_row(
            rule.id,
            str(rule.rev),
            rule.level,
            rule.protocol,
            ", ".join(t.id for t in rule.techniques),
            escape(rule.title),
        )
    Console(highlight=False, width=max(160, Console().width)).print(table)


@app.command("validate")
def validate(paths: RulePaths = None, builtin: BuiltinOption = None) -> None:
    """Check rules against the schema and compile them; every problem goes to stderr as
    FILE:LINE: KEY: problem (exit code 2)."""
    rules = _load(paths, builtin, check_builtin=True)
    typer.echo(f"{len(rules)} rules valid")


@app.command("test")
def test(
    paths: RulePaths = None,
    builtin: BuiltinOption = None,
    pcap: Annotated[
        Path | None,
        typer.Option("--pcap", help="Replay this capture through the rules and print the matches."),
    ] = None,
    decode_as: DecodeAsOption = None,
    config: ConfigOption = None,
) -> None:
    """Run every rule's fixtures (match ones must match, nomatch ones must not; exit code 1 on a
    failure), or with --pcap replay a capture and print what the rules match."""
    rules = _load(paths, builtin)
    if pcap is not None:
        _replay(rules, pcap, decode_as, config)
        return
    failed = 0
    untested = 0
    for compiled in sorted(rules, key=lambda c: c.rule.id):
        results = fixture_results(compiled)
        if not results:
            untested += 1
            typer.echo(f"NONE {compiled.rule.id}: no fixtures")
            continue
        bad = [r for r in results if not r.passed]
        if bad:
            failed += 1
            typer.echo(f"FAIL {compiled.rule.id} ({compiled.rule.source})")
            for result in bad:
                typer.echo(f"  {result}")
        else:
            typer.echo(f"PASS {compiled.rule.id} ({len(results)} fixtures)")
    passed = len(rules) - failed - untested
    typer.echo(f"{passed} passed, {failed} failed, {untested} without fixtures")
    if failed:
        raise typer.Exit(1)


def _describe(hit: RuleMatch) -> str:
    env = hit.event.envelope
    line = (
        f"{iso_time(hit.ts)} {hit.rule.id} rev {hit.rule.rev} {hit.rule.level} "
        f"{env.conn.client_ip} -> {env.conn.server_ip}:{env.conn.server_port} {hit.message}"
    )
    if hit.count > 1:
        line += f" (count {hit.count})"
    return line


def _replay(
    rules: list[CompiledRule], pcap: Path, decode_as: list[str] | None, config: Path | None
) -> None:
    cfg, extra = settings(config, decode_as)
    paths = capture_paths([pcap])
    engine = RuleEngine(rules)
    out = sys.stdout

    def on_event(event: Event) -> None:
        for hit in engine.match(event):
            out.write(_describe(hit) + "\n")

    try:
        registry = configured_registry(cfg, extra)
    except UnknownProtocolError as exc:
        error(f"--decode-as: {exc}")
        raise typer.Exit(2) from None
    decoder = decoder_for(cfg)
    table = flow_table_for(cfg, registry, on_event)
    failed = False
    last_ts = 0
    readers = []
    try:
        readers = [open_capture(p) for p in paths]
        frames = merge_frames(readers, False, error)
        packet = table.fast_packet()
        for frame, (ts, linktype, data) in enumerate(frames, 1):
            last_ts = ts
            pkt = decoder.decode(linktype, data, ts)
            if pkt is not None:
                table.frame = frame
                packet(pkt, ts, data)
    except (CaptureError, OSError) as exc:
        if not isinstance(exc, CaptureError):
            error(exc)
        failed = True
    finally:
        for reader in readers:
            reader.close()
    table.close_all(last_ts)
    stats = engine.stats()
    counts = Counter(stats["matches"])
    summary = ", ".join(f"{rid} {n}" for rid, n in sorted(counts.items())) or "none"
    typer.echo(f"{stats['events']} events, {sum(counts.values())} matches: {summary}")
    if failed:
        raise typer.Exit(1)
