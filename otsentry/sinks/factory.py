"""The cluster sinks a run asks for, from ``--es`` / ``--opensearch`` and the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otsentry.config import Config
from otsentry.sinks.clients import ClusterKind, ClusterSettings, connect, settings_for
from otsentry.sinks.cluster import ClusterSink
from otsentry.sinks.spool import Spool


def spool_dir(out_dir: Path, kind: ClusterKind) -> Path:
    """Where a cluster's undelivered documents wait: ``<out>/spool/<kind>``."""
    return out_dir / "spool" / kind


def wanted_clusters(
    config: Config, es: str | None = None, opensearch: str | None = None
) -> list[ClusterSettings]:
    """Settings of every cluster the options or the config name (ConfigError if unusable)."""
    found: list[ClusterSettings] = []
    if es or config.outputs.elasticsearch is not None:
        found.append(settings_for("elasticsearch", es, config))
    if opensearch or config.outputs.opensearch is not None:
        found.append(settings_for("opensearch", opensearch, config))
    return found


def open_cluster_sinks(
    config: Config,
    out_dir: Path,
    *,
    es: str | None = None,
    opensearch: str | None = None,
    node_class: Any = None,
) -> list[ClusterSink]:
    """One ClusterSink per cluster, each with its spool under ``out_dir``. Raises ConfigError
    for unusable settings and SpoolBusy when another process holds a spool."""
    sinks: list[ClusterSink] = []
    try:
        for settings in wanted_clusters(config, es, opensearch):
            spool = Spool(spool_dir(out_dir, settings.kind), config.outputs.spool)
            try:
                sinks.append(ClusterSink(connect(settings, node_class=node_class), spool))
            except BaseException:
                spool.close()
                raise
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
