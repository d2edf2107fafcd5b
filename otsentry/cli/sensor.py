"""``otsentry sensor``: watch a mirror (SPAN) port, live, sending nothing.

Exit codes: 0 stopped by SIGINT/SIGTERM or after --duration, everything flushed; 1 the capture
failed while running; 2 usage, configuration, permission or interface error at start.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from otsentry.cli.options import (
    ConfigOption,
    DecodeAsOption,
    EsOption,
    OpenSearchOption,
    duration_option,
    settings,
)
from otsentry.cli.replay import cluster_sinks
from otsentry.cli.ui import console, error

InterfaceOption = Annotated[
    list[str],
    typer.Option("--interface", "-i", help="Interface to capture on (repeatable)."),
]


def sensor(
    interface: InterfaceOption,
    bpf_words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[BPF]...", help="A capture filter in tcpdump syntax, like tcpdump's."
        ),
    ] = None,
    bpf: Annotated[
        str | None, typer.Option("--filter", "-f", help="Capture filter (tcpdump syntax).")
    ] = None,
    config: ConfigOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: ./otsentry-out or config)."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="Baseline directory: alert on deviations (SIGHUP reloads)."
        ),
    ] = None,
    es: EsOption = None,
    opensearch: OpenSearchOption = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Processes sharing the traffic by flow (PACKET_FANOUT).",
        ),
    ] = 1,
    fanout: Annotated[
        str,
        typer.Option(
            "--fanout",
            help="How workers share the traffic: hash (per flow) or hostpair (every flow "
            "between two hosts in one worker).",
        ),
    ] = "hash",
    duration: Annotated[
        str | None,
        typer.Option("--duration", help="Stop after this long: seconds, or 90s, 15m, 24h, 7d."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Drop to this user once the capture sockets are open."),
    ] = None,
    stats_interval: Annotated[
        float, typer.Option("--stats-interval", min=0.1, help="Seconds between stats.json writes.")
    ] = 10.0,
    rules: Annotated[
        list[Path] | None,
        typer.Option("--rules", help="Rule file or directory besides the config's (repeatable)."),
    ] = None,
    no_builtin_rules: Annotated[
        bool, typer.Option("--no-builtin-rules", help="Do not load the built-in rule pack.")
    ] = False,
    decode_as: DecodeAsOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No live view in a terminal.")
    ] = False,
) -> None:
    """Capture on a mirror port and run the pipeline live (root or CAP_NET_RAW needed).

    Writes events.ndjson, alerts.ndjson, assets.ndjson and stats.json (every --stats-interval
    seconds) to the output directory, and to a cluster with --es / --opensearch. SIGHUP reloads
    rules and the baseline; SIGINT/SIGTERM flush everything and stop (exit 0).
    """
    from otsentry.sensor import SensorOptions

    if bpf and bpf_words:
        error("give the capture filter either with --filter or as trailing words, not both")
        raise typer.Exit(2)
    expression = bpf or (" ".join(bpf_words) if bpf_words else None)
    cfg, decode_rules = settings(config, decode_as)
    out_dir = out if out is not None else cfg.outputs.dir
    options = SensorOptions(
        interfaces=tuple(interface),
        bpf=expression,
        duration=duration_option(duration),
        stats_interval=stats_interval,
        rules=tuple(rules or ()),
        builtin_rules=False if no_builtin_rules else None,
        baseline=baseline,
        decode_as=decode_rules,
        workers=workers,
        fanout=fanout,
    )
    if fanout not in ("hash", "hostpair"):
        error(f"--fanout: expected hash or hostpair, got {fanout!r}")
        raise typer.Exit(2)
    if workers > 1:
        from otsentry.workers import run_workers

        code = run_workers(cfg, out_dir, options, es=es, opensearch=opensearch, user=user)
        raise typer.Exit(code)
    code = run_one(cfg, out_dir, options, es=es, opensearch=opensearch, user=user, quiet=quiet)
    raise typer.Exit(code)


def run_one(
    cfg: Any,
    out_dir: Path,
    options: Any,
    *,
    es: str | None,
    opensearch: str | None,
    user: str | None,
    quiet: bool,
) -> int:
    """One capture process: open the sockets, drop privileges, run until stopped."""
    from otsentry.capture.live import LiveCapture, LiveCaptureError, LiveOptions, drop_privileges
    from otsentry.detect.loader import RuleError
    from otsentry.sensor import Sensor

    try:
        capture = LiveCapture(LiveOptions(interfaces=options.interfaces, bpf=options.bpf))
    except LiveCaptureError as exc:
        error(exc)
        return 2
    try:
        if user:
            drop_privileges(user)
        sinks = cluster_sinks(cfg, out_dir, es, opensearch)
        view = _live_view() if not quiet and sys.stderr.isatty() else None
        try:
            sensor = Sensor(
                cfg,
                out_dir,
                options,
                capture,
                sinks=sinks,
                on_view=view.update if view is not None else None,
            )
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
    except (LiveCaptureError, RuleError, ValueError, OSError) as exc:
        capture.close()
        error(exc)
        return 2
    except typer.Exit as exc:
        capture.close()
        return int(exc.exit_code)
    with sensor.signals():
        try:
            if view is not None:
                with view:
                    sensor.run()
            else:
                sensor.run()
        except LiveCaptureError as exc:
            error(exc)
            return 1
    return 0


class _View:
    """The terminal's live health view (rich.live over otsentry.health.render)."""

    def __init__(self) -> None:
        from rich.live import Live

        from otsentry import health

        self._render = health.render
        self._live = Live(console=console, refresh_per_second=2, transient=False)

    def update(self, stats: dict[str, Any]) -> None:
        self._live.update(self._render(stats))

    def __enter__(self) -> _View:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)


def _live_view() -> _View | None:
    try:
        return _View()
    except ImportError:  # the health view is optional: plain logs without it
        return None
