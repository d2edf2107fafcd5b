"""``otsentry dissect``: one line per PDU, in the spirit of ``tshark -T fields``."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from typing import Annotated, Any, TextIO

import typer

from otsentry.capture import CaptureError
from otsentry.cli.options import (
    ConfigOption,
    DecodeAsOption,
    Pcaps,
    capture_paths,
    check_protocols,
    settings,
)
from otsentry.cli.ui import error
from otsentry.dissect.dump import BASE_FIELDS, iter_records
from otsentry.dissect.registry import UnknownProtocolError

COMMON = ("frame", "ts", "protocol", "direction", "src", "dst")


class Format(StrEnum):
    """Output formats."""

    TSV = "tsv"
    JSON = "json"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value).replace("\t", " ").replace("\n", " ")


class _TsvWriter:
    """Tab-separated columns; a ``#fields`` header before a protocol's first line."""

    def __init__(self, out: TextIO, with_file: bool) -> None:
        self.out = out
        self.with_file = with_file
        self.headers: set[str] = set()

    def write(self, rec: dict[str, Any]) -> None:
        protocol = rec["protocol"]
        names = (*BASE_FIELDS.get(protocol, ()), "anomalies")
        common = (("file",) if self.with_file else ()) + COMMON
        if protocol not in self.headers:
            self.headers.add(protocol)
            cols = (*common, *(f"{protocol}.{n}" for n in names))
            self.out.write("#fields\t" + "\t".join(cols) + "\n")
        body = rec[protocol]
        row = [_cell(rec[c]) for c in common] + [_cell(body.get(n)) for n in names]
        self.out.write("\t".join(row) + "\n")


def dissect(
    pcaps: Pcaps,
    protocol: Annotated[
        list[str] | None,
        typer.Option("--protocol", "-p", help="Only this protocol's PDUs (repeatable)."),
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", "-T", help="tsv (one line per PDU) or json lines.")
    ] = Format.TSV,
    decode_as: DecodeAsOption = None,
    config: ConfigOption = None,
) -> None:
    """Print every PDU of the captures, one per line, at the frame holding its last byte.

    Frames are numbered per file from 1, as Wireshark numbers them. With several files each is
    dissected on its own and lines carry the file. Exit codes: 0 ok, 1 a capture is damaged
    (lines before the damage are printed), 2 usage or config error.
    """
    cfg, rules = settings(config, decode_as)
    try:
        check_protocols(protocol or (), dump=True)
    except UnknownProtocolError as exc:
        error(f"--protocol: {exc}")
        raise typer.Exit(2) from None
    paths = capture_paths(pcaps)
    out = sys.stdout
    with_file = len(paths) > 1
    tsv = _TsvWriter(out, with_file) if fmt is Format.TSV else None
    failed = False
    for path in paths:
        try:
            for rec in iter_records(path, protocol or None, rules, cfg):
                if with_file:
                    rec = {"file": str(path), **rec}
                if tsv is not None:
                    tsv.write(rec)
                else:
                    out.write(json.dumps(rec, separators=(", ", ": ")) + "\n")
        except BrokenPipeError:
            # the reader went away (| head): stop quietly, as tshark does
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - swallow the final flush
            return
        except CaptureError as exc:
            out.flush()
            error(exc)
            failed = True
        except OSError as exc:
            out.flush()
            error(CaptureError(str(path), 0, str(exc)))
            failed = True
    out.flush()
    if failed:
        raise typer.Exit(1)
