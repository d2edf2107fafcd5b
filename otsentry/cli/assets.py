"""``otsentry assets``: the passive asset inventory of a run, from its ``assets.ndjson``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from otsentry.assets.identity import summary
from otsentry.assets.roles import ROLES
from otsentry.cli.ui import error

ASSETS_FILE = "assets.ndjson"
_PIPE_WIDTH = 180


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if isinstance(doc, dict) and isinstance(doc.get("otsentry", {}).get("asset"), dict):
                yield doc


def _seen(text: Any) -> str:
    # 2026-11-22T01:29:46.320683Z → 2026-11-22 01:29:46
    return str(text or "")[:19].replace("T", " ")


def _peers(asset: dict[str, Any]) -> str:
    peers = asset.get("peers")
    if isinstance(peers, dict):
        ips = peers.get("ip") or []
        count = int(peers.get("count") or 0)
        shown = ", ".join(ips[:3])
        more = count - min(len(ips), 3)
        return f"{count}: {shown}" + (f" +{more}" if more > 0 else "") if count else ""
    return str(peers or "")


def _table(docs: list[dict[str, Any]], with_segment: bool) -> Table:
    table = Table(title=f"otsentry assets ({len(docs)})", title_justify="left")
    if with_segment:
        table.add_column("segment")
    table.add_column("ip", no_wrap=True)
    table.add_column("mac", no_wrap=True)
    table.add_column("vendor", overflow="fold")
    table.add_column("roles", no_wrap=True)
    for name in ("identity", "protocols", "peers"):
        table.add_column(name, overflow="fold")
    table.add_column("first seen", no_wrap=True)
    table.add_column("last seen", no_wrap=True)
    for doc in docs:
        asset = doc["otsentry"]["asset"]
        row = [
            asset.get("ip") or "",
            asset.get("mac") or "",
            asset.get("vendor") or "",
            "\n".join(asset.get("roles") or ()),
            summary(asset.get("identity") or {}),
            ", ".join(asset.get("protocols") or ()),
            _peers(asset),
            _seen(asset.get("first_seen")),
            _seen(asset.get("last_seen")),
        ]
        table.add_row(*([asset.get("segment") or ""] if with_segment else []), *row)
    return table


def assets(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output directory of a replay or sensor run."),
    ] = Path("otsentry-out"),
    segment: Annotated[
        str | None, typer.Option("--segment", "-s", help="Only assets of this segment.")
    ] = None,
    role: Annotated[
        str | None,
        typer.Option("--role", "-r", help=f"Only assets playing this role ({', '.join(ROLES)})."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the matching documents as NDJSON on stdout.")
    ] = False,
) -> None:
    """Show the hosts a run saw: address, MAC and its vendor, roles, device identity,
    protocols, peers, first and last seen.

    Exit codes: 0 ok (also when nothing matches), 2 no assets.ndjson in the directory, an
    unreadable file, or an unknown role.
    """
    if role is not None and role not in ROLES:
        error(f"--role: unknown role {role!r} (known: {', '.join(ROLES)})")
        raise typer.Exit(2)
    path = out / ASSETS_FILE
    if not path.is_file():
        error(f"no {ASSETS_FILE} in {out} (run `otsentry replay PCAP --out {out}` first)")
        raise typer.Exit(2)
    try:
        docs = [
            doc
            for doc in _documents(path)
            if (segment is None or doc["otsentry"]["asset"].get("segment") == segment)
            and (role is None or role in (doc["otsentry"]["asset"].get("roles") or ()))
        ]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        error(exc)
        raise typer.Exit(2) from None
    try:
        if json_out:
            for doc in docs:
                sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
        else:
            segments = {doc["otsentry"]["asset"].get("segment") for doc in docs}
            console = Console(highlight=False)
            if not console.is_terminal and "COLUMNS" not in os.environ:
                console.width = _PIPE_WIDTH  # a file or a pipe: no terminal to fit
            console.print(_table(docs, with_segment=len(segments) > 1))
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (| head): stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - swallow the final flush
