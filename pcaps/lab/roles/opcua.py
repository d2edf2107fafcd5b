"""OPC UA binary roles: an asyncua server on opcsrv and an engineering-station client session.

The server (security policy None, anonymous) exposes an object Plant with Temperature and
Pressure (updated every 0.5 s from the process model), a writable Setpoint and a method
StartBatch(recipe: Int32) -> Boolean.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lab.process import ProcessModel
from lab.roles import RoleArgs, announce_ready, role, until_sigterm

PORT = 4840
NAMESPACE = "urn:otsentry:lab:plant"
UPDATE_PERIOD = 0.5


def _url(ip: str) -> str:
    return f"opc.tcp://{ip}:{PORT}/plant/"


@role("opcua-server")
def opcua_server(args: RoleArgs) -> None:
    """Serve the Plant address space on args["ip"]:4840 until SIGTERM."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_serve(args["ip"], int(args["seed"])))


async def _serve(ip: str, seed: int) -> None:
    from asyncua import ua
    from asyncua.common.methods import uamethod
    from asyncua.server.server import Server

    server = Server()
    await server.init()
    server.set_endpoint(_url(ip))
    server.set_server_name("Plant OPC UA Server")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_object(idx, "Plant")
    model = ProcessModel(seed)
    first = model.next()
    temperature = await plant.add_variable(idx, "Temperature", first.temperature_c)
    pressure = await plant.add_variable(idx, "Pressure", first.pressure_bar)
    setpoint = await plant.add_variable(idx, "Setpoint", 65.0)
    await setpoint.set_writable()
    batches: list[int] = []

    @uamethod
    def start_batch(parent: Any, recipe: int) -> bool:
        batches.append(recipe)
        return 0 < recipe < 100

    await plant.add_method(
        idx, "StartBatch", start_batch, [ua.VariantType.Int32], [ua.VariantType.Boolean]
    )

    async def update() -> None:
        while True:
            await asyncio.sleep(UPDATE_PERIOD)
            s = model.next()
            await temperature.write_value(s.temperature_c)
            await pressure.write_value(s.pressure_bar)

    async with server:
        task = asyncio.create_task(update())
        announce_ready()
        await until_sigterm()
        task.cancel()


@role("opcua-client")
def opcua_client(args: RoleArgs) -> None:
    """Discover, browse, read, write Setpoint, subscribe, call StartBatch, disconnect."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_session(args["server"], float(args["duration"])))


async def _session(ip: str, duration: float) -> None:
    from asyncua import ua
    from asyncua.client.client import Client

    start = time.monotonic()
    client = Client(_url(ip), timeout=4, watchdog_intervall=5.0)
    endpoints = await client.connect_and_get_server_endpoints()
    await client.connect()
    try:
        ns = await client.get_namespace_index(NAMESPACE)
        await client.nodes.objects.get_children()
        plant = await client.nodes.objects.get_child([f"{ns}:Plant"])
        nodes = {str((await n.read_browse_name()).Name): n for n in await plant.get_children()}
        temperature, pressure, setpoint = (
            nodes[k] for k in ("Temperature", "Pressure", "Setpoint")
        )
        values = await client.read_values([temperature, pressure, setpoint])
        await setpoint.write_value(ua.DataValue(ua.Variant(62.5, ua.VariantType.Double)))
        if await setpoint.read_value() != 62.5:
            raise SystemExit("opcua: Setpoint write did not take")

        changes: list[Any] = []

        class Handler:
            def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                changes.append(val)

        subscription = await client.create_subscription(500, Handler())
        await subscription.subscribe_data_change([temperature, pressure])
        await asyncio.sleep(max(1.5, duration * 0.4))
        accepted = await plant.call_method(f"{ns}:StartBatch", ua.Variant(3, ua.VariantType.Int32))
        while time.monotonic() - start < duration - 1.0:
            await asyncio.sleep(1.0)
            await client.read_values([temperature, pressure])
        await subscription.delete()
    finally:
        await client.disconnect()
    if not changes or accepted is not True:
        raise SystemExit(f"opcua: {len(changes)} data changes, StartBatch returned {accepted}")
    print(
        f"opcua-client: {len(endpoints)} endpoint(s), first values {values}, "
        f"{len(changes)} data changes, StartBatch -> {accepted}"
    )
