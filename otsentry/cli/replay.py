"""``otsentry replay``: capture files → events, alerts, assets and stats in the output directory.

With ``--workers N`` (N > 1) the captures are replayed by N forked processes, each keeping the
frames of its share of the host pairs (``otsentry.capture.split``) and sending its documents to
one supervisor (``otsentry.workers``) that writes the outputs. Everything that can fail on the
command line or the configuration (rules, baselines, clusters, the output directory) is checked
before the fork.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from otsentry.capture import CaptureError, CaptureReader, merge_frames, open_capture
from otsentry.capture.pcap import PcapReader
from otsentry.capture.split import numbered_share
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
from otsentry.config import Config, ConfigError, DecodeAs
from otsentry.dissect.registry import UnknownProtocolError
from otsentry.pipeline import Matcher, Pipeline

if TYPE_CHECKING:
    from otsentry.baseline.segment import SegmentBaseline
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
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Processes sharing the work by host pair (1: a single process).",
        ),
    ] = 1,
) -> None:
    """Replay captures through the sensor pipeline (no Elasticsearch needed).

    Writes events.ndjson, alerts.ndjson, assets.ndjson and stats.json to the output directory;
    with --es / --opensearch (or the config's outputs) also to a cluster, spooling to
    DIR/spool/ whatever it cannot take. Exit codes: 0 ok, 1 a capture could not be read (output
    so far is kept), 2 usage/config error (a broken rule file included).

    With --workers N, N processes each read the captures and keep their share of the host
    pairs (both directions of every flow between two hosts, and every IP fragment, in one
    worker; frames that are not IP, ARP included, in worker 0). One writer merges their
    alerts, assets and stats (each worker counts the frames it kept: together, each frame
    once); the workers append their events to the one events file. Documents come in another
    order. What spans several host pairs sees one worker's
    share: correlation rules grouped by one host (host sweeps), the baseline's new-asset and
    outlier-model checks, the services ARP alerts name. Evidence pcaps are written under
    DIR/workers/N/evidence/, each worker at most 1/N of the run's cap. No progress bar.
    """
    cfg, decode_rules = settings(config, decode_as)
    out_dir = out if out is not None else cfg.outputs.dir
    paths = capture_paths(pcaps)
    if workers > 1:
        _replay_parallel(
            cfg,
            out_dir,
            paths,
            _Job(
                workers=workers,
                decode_as=decode_rules,
                rules=list(rules or ()),
                builtin_rules=False if no_builtin_rules else None,
                keep_going=keep_going,
            ),
            baseline=baseline,
            es=es,
            opensearch=opensearch,
            quiet=quiet,
            json_out=json_out,
        )
        return
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
        baselines = _load_baselines(baseline, quiet=quiet)
        _use_baseline(pipeline, baselines, cfg.alerts.aggregation_window)
    failed = _replay_files(pipeline, paths, quiet=quiet, keep_going=keep_going)
    stats = pipeline.finish()
    _report(stats, out_dir, quiet=quiet, json_out=json_out)
    if failed:
        raise typer.Exit(1)


def _report(stats: dict[str, Any], out_dir: Path, *, quiet: bool, json_out: bool) -> None:
    if not quiet:
        print_summary(stats, out_dir)
    if json_out:
        typer.echo(json.dumps(stats))


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


def _load_baselines(directory: Path, *, quiet: bool) -> Mapping[str, SegmentBaseline]:
    """The baselines in ``directory`` (a broken one: exit 2), warning of thin ones."""
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
    return baselines


def _use_baseline(
    pipeline: Pipeline, baselines: Mapping[str, SegmentBaseline], window: float
) -> None:
    """Let the pipeline check events against the baselines."""
    from otsentry.baseline.detector import Detector

    pipeline.use_baseline(Detector(baselines, window=window, on_open=pipeline.evidence_for))


def _replay_files(
    pipeline: Pipeline,
    paths: list[Path],
    *,
    quiet: bool,
    keep_going: bool,
    report: Callable[[object], None] = error,
    share: tuple[int, int] = (0, 1),
) -> bool:
    """Run the pipeline over the files (the frames of worker ``share[0]`` of ``share[1]``,
    numbered as in the capture); True when a capture could not be read. ``report`` tells of
    each read error."""
    counters = pipeline.counters
    readers: list[CaptureReader] = []
    failed = False

    def on_error(err: CaptureError) -> None:
        nonlocal failed
        failed = True
        counters.capture_errors.append(str(err))
        report(err)

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
            if share[1] == 1:
                pipeline.run(merge_frames(readers, keep_going, on_error), progress.update)
            elif len(readers) == 1 and isinstance(readers[0], PcapReader):
                # one classic pcap: the reader skips the other workers' records itself
                numbers = readers[0].keep_share(*share)
                pipeline.run(merge_frames(readers, keep_going, on_error), progress.update, numbers)
            else:
                merged = merge_frames(readers, keep_going, on_error)
                frames, numbers = numbered_share(merged, *share)
                pipeline.run(frames, progress.update, numbers)
    except CaptureError:
        return True  # reported by on_error; everything before the damage was processed
    finally:
        for reader in readers:
            reader.close()
    return failed


@dataclass(frozen=True, slots=True)
class _Job:
    """What every worker of a parallel replay runs."""

    workers: int
    decode_as: list[DecodeAs]
    rules: list[Path]
    builtin_rules: bool | None
    keep_going: bool
    engine: Matcher | None = None
    baselines: Mapping[str, SegmentBaseline] | None = None


def _replay_parallel(
    cfg: Config,
    out_dir: Path,
    paths: list[Path],
    job: _Job,
    *,
    baseline: Path | None,
    es: str | None,
    opensearch: str | None,
    quiet: bool,
    json_out: bool,
) -> None:
    """``--workers N``: check everything, fork the workers, supervise them, report."""
    from otsentry.detect.loader import RuleError
    from otsentry.pipeline import load_rules, ndjson_streams
    from otsentry.sinks.ndjson import NdjsonSink
    from otsentry.workers import ReplaySupervisor, fork_workers

    try:
        engine = load_rules(cfg, job.rules, job.builtin_rules)
    except RuleError as exc:
        error(exc)
        raise typer.Exit(2) from None
    baselines = _load_baselines(baseline, quiet=quiet) if baseline is not None else None
    try:  # the output files (events.ndjson too), started empty as a single replay starts them
        NdjsonSink(out_dir, ndjson_streams(cfg)).close()
    except OSError as exc:
        error(f"cannot write to {out_dir}: {exc}")
        raise typer.Exit(2) from None
    sinks = cluster_sinks(cfg, out_dir, es, opensearch)
    job = replace(job, engine=engine, baselines=baselines)
    supervisor = ReplaySupervisor(cfg, out_dir, job.workers, sinks)
    supervisor.on_error = error
    children = fork_workers(
        job.workers,
        lambda number, fd: _replay_worker(cfg, out_dir, paths, job, number, fd, supervisor),
    )
    code = supervisor.run(children, es=None, opensearch=None, clusters=list(sinks), append=False)
    if supervisor.interrupted:
        raise typer.Exit(130)
    stats = supervisor.final_stats
    if stats is not None:
        _report(stats, out_dir, quiet=quiet, json_out=json_out)
    if code != 0:
        raise typer.Exit(1)


def _replay_worker(
    cfg: Config,
    out_dir: Path,
    paths: list[Path],
    job: _Job,
    number: int,
    fd: int,
    supervisor: Any,
) -> int:
    """One worker of a parallel replay (a forked process): its share of the frames through
    its own pipeline, the documents down the pipe; the exit code."""
    from otsentry.workers import worker_config

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sink, sinks = supervisor.worker_sinks(fd)
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline(
            worker_config(cfg, job.workers),
            out_dir / "workers" / str(number),
            decode_as=job.decode_as,
            sinks=sinks,
            rules=job.rules,
            builtin_rules=job.builtin_rules,
            engine=job.engine,
        )
        if job.baselines is not None:
            _use_baseline(pipeline, job.baselines, cfg.alerts.aggregation_window)
        failed = _replay_files(
            pipeline,
            paths,
            quiet=True,
            keep_going=job.keep_going,
            report=sink.error,
            share=(number, job.workers),
        )
        pipeline.finish()
    except KeyboardInterrupt:  # stopped: what was counted so far still goes out
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if pipeline is not None:
            with contextlib.suppress(Exception):
                pipeline.finish()
        return 130
    except Exception as exc:  # a worker's failure is reported, once, by the supervisor
        sink.error(f"worker {number}: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for each in sinks:
            each.close()
    return 1 if failed else 0
