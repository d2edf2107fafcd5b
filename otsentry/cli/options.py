"""Arguments and options several commands share, and their parsing into settings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from otsentry.capture import CaptureError, expand_paths
from otsentry.cli.ui import error
from otsentry.config import Config, ConfigError, DecodeAs, load_config, parse_decode_as
from otsentry.dissect.registry import UnknownProtocolError, default_registry

Pcaps = Annotated[
    list[Path],
    typer.Argument(help="Capture files (pcap, pcapng, gzip) or directories holding them."),
]
DecodeAsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--decode-as",
        "-d",
        help="Decode a TCP port as a protocol: PORT=PROTO (or tshark's tcp.port==PORT,PROTO).",
    ),
]
EsOption = Annotated[
    str | None,
    typer.Option(
        "--es",
        help="Elasticsearch URL, e.g. https://es01:9200 (credentials: config or environment).",
    ),
]
OpenSearchOption = Annotated[
    str | None,
    typer.Option(
        "--opensearch",
        help="OpenSearch URL, e.g. https://os01:9200 (credentials: config or environment).",
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="otsentry.yaml configuration file.")
]


def settings(config: Path | None, decode_as: list[str] | None) -> tuple[Config, list[DecodeAs]]:
    """The configuration and the decode-as rules; a bad one exits with code 2."""
    try:
        cfg = load_config(config)
        rules = [parse_decode_as(spec) for spec in decode_as or ()]
        check_protocols(r.protocol for r in (*cfg.decode_as, *rules))
    except (ConfigError, ValueError) as exc:
        error(f"--decode-as: {exc}" if isinstance(exc, UnknownProtocolError) else exc)
        raise typer.Exit(2) from None
    return cfg, rules


def check_protocols(names: Iterable[str], dump: bool = False) -> None:
    """Raise ``UnknownProtocolError`` for a name no dissector provides (with ``dump``: no
    dissector's per-PDU records carry, e.g. ``s7comm-plus``)."""
    registry = default_registry()
    known = registry.dump_protocols if dump else registry.names
    for name in names:
        if name not in known:
            raise UnknownProtocolError(
                f"unknown protocol {name!r} (known: {', '.join(sorted(known))})"
            )


def capture_paths(pcaps: list[Path]) -> list[Path]:
    """The capture files the arguments name; none, or an unreadable one, exits with code 2."""
    try:
        paths = expand_paths(pcaps)
    except (CaptureError, OSError) as exc:
        error(exc)
        raise typer.Exit(2) from None
    if not paths:
        error("no capture files found")
        raise typer.Exit(2)
    return paths


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``7d`` (ValueError otherwise)."""
    value = text.strip().lower()
    scale = _DURATION_UNITS.get(value[-1:])
    number = value[:-1] if scale is not None else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 90s, 15m, 24h, 7d)") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be positive, got {text!r}")
    return seconds


def duration_option(text: str | None) -> float | None:
    """A --duration value in seconds; a bad one exits with code 2."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        error(f"--duration: {exc}")
        raise typer.Exit(2) from None
