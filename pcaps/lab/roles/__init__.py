"""Roles: the server and client programs a scenario runs inside the plant's hosts.

A role is a function taking a JSON-able dict of arguments, registered as "<module>-<what>"
in lab.roles.<module>. Servers print READY on stdout once they listen and serve until
SIGTERM; clients run their session and return.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from collections.abc import Callable
from typing import Any

RoleArgs = dict[str, Any]
RoleFunc = Callable[[RoleArgs], None]

ROLES: dict[str, RoleFunc] = {}


def role(name: str) -> Callable[[RoleFunc], RoleFunc]:
    """Register a role function under name."""

    def register(func: RoleFunc) -> RoleFunc:
        ROLES[name] = func
        return func

    return register


def announce_ready() -> None:
    """Tell the lab runner that a server listens."""
    print("READY", flush=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so a server's finally blocks close its sockets."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


async def until_sigterm() -> None:
    """Wait, in an asyncio server, until the runner sends SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def run_role(name: str, args: RoleArgs) -> None:
    """Import the role's module (only that protocol stack) and run the role."""
    module = name.split("-")[0]
    try:
        importlib.import_module(f"lab.roles.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"lab.roles.{module}":
            raise
    if name not in ROLES:
        sys.exit(f"unknown role {name!r}")
    ROLES[name](args)
