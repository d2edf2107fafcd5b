"""``otsentry replay``: capture files → events, alerts, assets and stats in the output directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from otsentry.capture import CaptureError, CaptureReader, merge_frames, open_capture
from otsentry.cli.options import (
    ConfigOption,
    DecodeAsOption,
    EsOption,
    OpenSearchOption,
    Pcaps,
    capture_paths,
    settings,
)
from otsentry.cli.ui import ReplayProgress, console, error, print_summary
from otsentry.config import Config, ConfigError
from otsentry.dissect.registry import UnknownProtocolError
from otsentry.pipeline import Pipeline

if TYPE_CHECKING:
    from otsentry.sinks.cluster import ClusterSink


def replay(
    pcaps: Pcaps,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: ./otsentry-out or config)."),
    ] = None,
    decode_as: DecodeAsOption = None,
    config: ConfigOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table.")
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="On a broken capture, report it and go on to the next."),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run's stats as JSON on stdout.")
    ] = False,
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules", help="Rule file or directory to load besides the config's (repeatable)."
        ),
    ] = None,
    no_builtin_rules: Annotated[
        bool, typer.Option("--no-builtin-rules", help="Do not load the built-in rule pack.")
    ] = False,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="Baseline directory (otsentry baseline learn): alert on deviations."
        ),
    ] = None,
    es: EsOption = None,
    opensearch: OpenSearchOption = None,
) -> None:
    """Replay captures through the sensor pipeline (no Elasticsearch needed).

    Writes events.ndjson, alerts.ndjson, assets.ndjson and stats.json to the output directory;
    with --es / --opensearch (or the config's outputs) also to a cluster, spooling to
    DIR/spool/ whatever it cannot take. Exit codes: 0 ok, 1 a capture could not be read (output so far is kept), 2 usage/config
    error (a broken rule file included).
    """
    cfg, decode_rules = settings(config, decode_as)
    out_dir = out if out is not None else cfg.outputs.dir
    paths = capture_paths(pcaps)
    from otsentry.detect.loader import RuleError  # with the rule engine, only when replaying

    sinks = cluster_sinks(cfg, out_dir, es, opensearch)
    try:
        try:
            pipeline = Pipeline(
                cfg,
                out_dir,
                decode_as=decode_rules,
                sinks=sinks,
                rules=rules or (),
                builtin_rules=False if no_builtin_rules else None,
            )
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
    except UnknownProtocolError as exc:
        error(f"--decode-as: {exc}")
        raise typer.Exit(2) from None
    except RuleError as exc:
        error(exc)
        raise typer.Exit(2) from None
    except OSError as exc:
        error(f"cannot write to {out_dir}: {exc}")
        raise typer.Exit(2) from None

    if baseline is not None:
        _use_baseline(pipeline, baseline, cfg.alerts.aggregation_window, quiet=quiet)
    failed = _replay_files(pipeline, paths, quiet=quiet, keep_going=keep_going)
    stats = pipeline.finish()
    if not quiet:
        print_summary(stats, out_dir)
    if json_out:
        typer.echo(json.dumps(stats))
    if failed:
        raise typer.Exit(1)


def cluster_sinks(
    cfg: Config, out_dir: Path, es: str | None, opensearch: str | None
) -> list[ClusterSink]:
    """The cluster sinks asked for; unusable settings or a spool in use exit with code 2."""
    if not (es or opensearch or cfg.outputs.elasticsearch or cfg.outputs.opensearch):
        return []
    from otsentry.sinks.factory import open_cluster_sinks
    from otsentry.sinks.spool import SpoolBusy

    try:
        return open_cluster_sinks(cfg, out_dir, es=es, opensearch=opensearch)
    except ConfigError as exc:
        error(exc)
        raise typer.Exit(2) from None
    except SpoolBusy as exc:
        error(f"spool {exc} (another sensor or 'otsentry spool drain' writes there)")
        raise typer.Exit(2) from None
    except OSError as exc:
        error(f"cannot write to {out_dir}: {exc}")
        raise typer.Exit(2) from None


def _use_baseline(pipeline: Pipeline, directory: Path, window: float, *, quiet: bool) -> None:
    """Load the baselines (a broken one: exit 2) and let the pipeline check events against them."""
    from otsentry.baseline.detector import Detector
    from otsentry.baseline.store import BaselineError, load_dir

    try:
        baselines = load_dir(directory)
    except BaselineError as exc:
        error(exc)
        raise typer.Exit(2) from None
    for segment, learned in sorted(baselines.items()):
        if not learned.info.sufficient and not quiet:
            reasons = "; ".join(learned.info.too_little_data)
            console.print(
                f"[yellow]warning:[/] baseline of {escape(segment)} was learned from too "
                f"little data ({escape(reasons)})",
                soft_wrap=True,
            )
    pipeline.use_baseline(Detector(baselines, window=window, on_open=pipeline.evidence_for))


def _replay_files(pipeline: Pipeline, paths: list[Path], *, quiet: bool, keep_going: bool) -> bool:
    """Run the pipeline over the files; True when a capture could not be read."""
    counters = pipeline.counters
    readers: list[CaptureReader] = []
    failed = False

    def on_error(err: CaptureError) -> None:
        nonlocal failed
        failed = True
        counters.capture_errors.append(str(err))
        error(err)

    for path in paths:
        try:
            readers.append(open_capture(path))
            counters.files.append(str(path))
        except (CaptureError, OSError) as exc:
            on_error(exc if isinstance(exc, CaptureError) else CaptureError(str(path), 0, str(exc)))
            if not keep_going:
                return True
    progress = ReplayProgress(readers, disabled=quiet)
    try:
        with progress:
            pipeline.run(merge_frames(readers, keep_going, on_error), progress.update)
    except CaptureError:
        return True  # reported by on_error; everything before the damage was processed
    finally:
        for reader in readers:
            reader.close()
    return failed
