"""OPC UA binary roles: an asyncua server on opcsrv and the stations that talk to it.

The server exposes an object Plant with Temperature and Pressure (updated every 0.5 s from the
process model), a writable Setpoint and a method StartBatch(recipe: Int32) -> Boolean; by
default with security policy None and anonymous login only (opcua_normal). Options, each off
unless a scenario sets it: "extended" adds more process values (Level, Flow, PumpSpeed,
MotorCurrent, PumpRunning), a writable Mode and a read-only Device object; "trend" a Double
array TrendBuffer of that many elements (the rolling temperature history); "users" user
names and passwords accepted besides anonymous; "buffer" the transport chunk size the server
acknowledges; "browse_next" continuation points (see _enable_continuation_points); "secure"
the lab certificate (pcaps/lab/certs) and Basic256Sha256 Sign and SignAndEncrypt in place of
None; "legacy" the lab certificate and None beside the deprecated Basic128Rsa15
(SignAndEncrypt) and Basic256 (Sign); "users_only" user-name logins only (no anonymous).

Clients: opcua-client (engineering session of opcua_normal), opcua-hmi (operator panel:
subscription, reads, array reads, setpoint writes), opcua-attacker (discovery, failed login,
browse of the address space, read everything, writes, call) and opcua-secure (a
Basic256Sha256 session, signed or signed and encrypted).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from pathlib import Path
from typing import Any

from lab.process import ProcessModel
from lab.roles import RoleArgs, announce_ready, role, until_sigterm

PORT = 4840
NAMESPACE = "urn:otsentry:lab:plant"
UPDATE_PERIOD = 0.5
#: the lab's application certificates and keys (LAB ONLY, see certs/make_certs.py)
CERTS = Path(__file__).resolve().parents[1] / "certs"
SERVER_URI = "urn:otsentry:lab:opcsrv"
#: extended address space: Plant variable -> process model field (read-only, updated)
LIVE_VALUES = {
    "Level": "level_pct",
    "Flow": "flow_m3h",
    "PumpSpeed": "pump_rpm",
    "MotorCurrent": "motor_current_a",
    "PumpRunning": "pump_running",
}
#: extended address space: the read-only strings of Plant/Device
DEVICE = {
    "Manufacturer": "otsentry lab",
    "Model": "OPCSRV-30 plant gateway",
    "SerialNumber": "LAB-30-0007",
    "FirmwareVersion": "2.1.0",
}


def _url(ip: str) -> str:
    return f"opc.tcp://{ip}:{PORT}/plant/"


@role("opcua-server")
def opcua_server(args: RoleArgs) -> None:
    """Serve the Plant address space on args["ip"]:4840 until SIGTERM."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_serve(args))


class _LabUsers:
    """asyncua user manager: anonymous and the configured user names with their passwords."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            return User(role=UserRole.User)
        if self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None  # ActivateSession fails with BadUserAccessDenied


def _enable_continuation_points() -> None:
    """Teach asyncua's server RequestedMaxReferencesPerNode, continuation points and BrowseNext.

    asyncua 2.1's server returns every reference of a node in one BrowseResult whatever the
    client asks for, and answers BrowseNext with a ServiceFault (BadServiceUnsupported). This
    patches the server process (and only it): a Browse with RequestedMaxReferencesPerNode n
    returns at most n references per node plus a continuation point for the rest, which
    BrowseNext pages through (ReleaseContinuationPoints true releases them). Continuation
    points are the ByteStrings "cp" + a 4-digit counter per session.
    """
    from asyncua import ua
    from asyncua.server.internal_session import InternalSession
    from asyncua.server.uaprocessor import UaProcessor
    from asyncua.ua.ua_binary import struct_from_binary

    # per session: continuation point -> (references per page, references still to send)
    pending: weakref.WeakKeyDictionary[Any, dict[bytes, tuple[int, list[Any]]]] = (
        weakref.WeakKeyDictionary()
    )
    counters: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def page(session: Any, references: list[Any], limit: int) -> Any:
        result = ua.BrowseResult()
        result.References = references[:limit]
        if len(references) > limit:
            counters[session] = counters.get(session, 0) + 1
            point = f"cp{counters[session]:04d}".encode()
            pending.setdefault(session, {})[point] = (limit, references[limit:])
            result.ContinuationPoint = point
        return result

    async def browse(self: Any, params: Any) -> list[Any]:
        results = self.iserver.view_service.browse(params)
        limit = params.RequestedMaxReferencesPerNode
        if not limit:
            return results
        paged = []
        for result in results:
            if result.StatusCode.is_good():
                result = page(self, result.References, limit)
            paged.append(result)
        return paged

    async def browse_next(self: Any, params: Any) -> list[Any]:
        points = pending.setdefault(self, {})
        results = []
        for point in params.ContinuationPoints:
            entry = points.pop(point, None)
            if entry is None:
                result = ua.BrowseResult()
                result.StatusCode = ua.StatusCode(ua.StatusCodes.BadContinuationPointInvalid)
            elif params.ReleaseContinuationPoints:
                result = ua.BrowseResult()
            else:
                result = page(self, entry[1], entry[0])
            results.append(result)
        return results

    process = UaProcessor._process_message
    browse_next_request = ua.NodeId(ua.ObjectIds.BrowseNextRequest_Encoding_DefaultBinary)

    async def process_message(
        self: Any, typeid: Any, requesthdr: Any, seqhdr: Any, body: Any
    ) -> Any:
        if typeid != browse_next_request or self.session is None:
            return await process(self, typeid, requesthdr, seqhdr, body)
        self.session.touch()
        params = struct_from_binary(ua.BrowseNextParameters, body)
        response = ua.BrowseNextResponse()
        response.Parameters.Results = await self.session.browse_next(params)
        self.send_response(requesthdr.RequestHandle, seqhdr, response)
        return True

    InternalSession.browse = browse  # type: ignore[method-assign]
    InternalSession.browse_next = browse_next  # type: ignore[method-assign]
    UaProcessor._process_message = process_message  # type: ignore[method-assign]


async def _serve(args: RoleArgs) -> None:
    from asyncua import ua
    from asyncua.common.connection import TransportLimits
    from asyncua.common.methods import uamethod
    from asyncua.server.server import Server

    ip, seed = args["ip"], int(args["seed"])
    users: dict[str, str] = args.get("users") or {}
    server = Server(user_manager=_LabUsers(users) if users else None)  # type: ignore[arg-type]
    await server.init()
    server.set_endpoint(_url(ip))
    server.set_server_name("Plant OPC UA Server")
    if args.get("secure") or args.get("legacy"):
        await server.set_application_uri(SERVER_URI)
        await server.load_certificate(str(CERTS / "opcsrv.der"))
        await server.load_private_key(str(CERTS / "opcsrv.pem"))
    if args.get("secure"):
        server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ]
        )
    elif args.get("legacy"):
        # None beside the two policies OPC UA 1.04 deprecated (SHA-1, RSA 1.5)
        server.set_security_policy(
            [
                ua.SecurityPolicyType.NoSecurity,
                ua.SecurityPolicyType.Basic128Rsa15_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256_Sign,
            ]
        )
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if users and args.get("users_only"):
        server.set_identity_tokens([ua.UserNameIdentityToken])
    elif users:
        server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
    if args.get("buffer"):
        size = int(args["buffer"])
        server.limits = TransportLimits(
            max_recv_buffer=size,
            max_send_buffer=size,
            max_chunk_count=1024,
            max_message_size=1024 * size,
        )
    if args.get("browse_next"):
        _enable_continuation_points()
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
    live = [(temperature, "temperature_c"), (pressure, "pressure_bar")]
    if args.get("extended"):
        for name, field in LIVE_VALUES.items():
            live.append((await plant.add_variable(idx, name, getattr(first, field)), field))
        mode = await plant.add_variable(idx, "Mode", ua.Variant(1, ua.VariantType.Int32))
        await mode.set_writable()
        device = await plant.add_object(idx, "Device")
        for name, text in DEVICE.items():
            await device.add_variable(idx, name, text)
    history: list[float] = []
    trend = None
    if int(args.get("trend", 0)):
        # prefilled from a second model of the same seed family, so reruns match
        earlier = ProcessModel(seed + 1)
        history = [earlier.next().temperature_c for _ in range(int(args["trend"]))]
        trend = await plant.add_variable(
            idx, "TrendBuffer", ua.Variant(history, ua.VariantType.Double)
        )

    async def update() -> None:
        nonlocal history
        while True:
            await asyncio.sleep(UPDATE_PERIOD)
            s = model.next()
            for node, field in live:
                await node.write_value(getattr(s, field))
            if trend is not None:
                history = [*history[1:], s.temperature_c]
                await trend.write_value(ua.Variant(history, ua.VariantType.Double))

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


async def _plant_nodes(client: Any) -> dict[str, Any]:
    """Plant's children by browse name: TranslateBrowsePathsToNodeIds, then one Browse."""
    ns = await client.get_namespace_index(NAMESPACE)
    plant = await client.nodes.objects.get_child([f"{ns}:Plant"])
    children = await plant.get_children_descriptions()
    nodes = {str(d.BrowseName.Name): client.get_node(d.NodeId) for d in children}
    return nodes | {"Plant": plant}


@role("opcua-hmi")
def opcua_hmi(args: RoleArgs) -> None:
    """An operator panel: subscription, reads every second, trend array reads, setpoint writes."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(
        _hmi(
            args["server"],
            float(args["duration"]),
            trend_every=float(args.get("trend_every", 8.0)),
            write_every=float(args.get("write_every", 6.0)),
            login=(args["user"], args["password"]) if args.get("user") else None,
        )
    )


async def _hmi(
    ip: str,
    duration: float,
    *,
    trend_every: float,
    write_every: float,
    login: tuple[str, str] | None = None,
) -> None:
    from asyncua import ua
    from asyncua.client.client import Client

    start = time.monotonic()
    client = Client(_url(ip), timeout=4, watchdog_intervall=5.0)
    client.name = client.description = "Plant HMI panel"
    client.application_uri = "urn:otsentry:lab:hmi"
    if login is not None:
        client.set_user(login[0])
        client.set_password(login[1])
    await client.connect()
    changes: list[Any] = []
    reads = arrays = writes = 0
    try:
        nodes = await _plant_nodes(client)
        watched = [nodes[k] for k in ("Temperature", "Pressure", "Level", "Flow", "PumpSpeed")]
        polled = [nodes[k] for k in ("PumpRunning", "MotorCurrent", "Mode", "Setpoint")]

        class Handler:
            def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                changes.append(val)

        subscription = await client.create_subscription(500, Handler())
        await subscription.subscribe_data_change(watched)
        next_trend, next_write = start + 1.0, start + 3.0
        setpoints = (62.5, 64.0)
        while time.monotonic() - start < duration - 1.0:
            await asyncio.sleep(1.0)
            await client.read_values(polled)
            reads += 1
            now = time.monotonic()
            if now >= next_trend and now - start < duration - 2.0:
                trend = await nodes["TrendBuffer"].read_value()
                if not trend:
                    raise SystemExit("opcua-hmi: TrendBuffer read empty")
                arrays += 1
                next_trend += trend_every
            if now >= next_write and now - start < duration - 2.0:
                value = ua.Variant(setpoints[writes % 2], ua.VariantType.Double)
                await nodes["Setpoint"].write_value(ua.DataValue(value))
                writes += 1
                next_write += write_every
        await subscription.delete()
    finally:
        await client.disconnect()
    if not changes or not arrays or not writes:
        raise SystemExit(f"opcua-hmi: {len(changes)} data changes, {arrays} trend reads")
    print(
        f"opcua-hmi: {len(changes)} data changes, {reads} polls, {arrays} TrendBuffer reads "
        f"({len(trend)} values), {writes} Setpoint writes"
    )


@role("opcua-attacker")
def opcua_attacker(args: RoleArgs) -> None:
    """Discovery, refused user-name logins, anonymous browse of everything, read all, write, call."""
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(_attack(args))


def _plain(node_id: Any) -> Any:
    """A reference's ExpandedNodeId as the NodeId a request carries."""
    from asyncua import ua

    return ua.NodeId(node_id.Identifier, node_id.NamespaceIndex)


async def _browse_everything(client: Any, max_refs: int, batch: int) -> tuple[list[Any], int, int]:
    """Breadth-first Browse of Root with BrowseNext; returns (references, browses, browse-nexts).

    Follows hierarchical references forward: Root, its folders (Objects, Types, Views), the
    folders' children, and everything below Objects. The type system under Types is listed
    one level deep only (its 4 300 nodes would take the capture past its size budget).
    """
    from asyncua import ua

    root = ua.NodeId(ua.ObjectIds.RootFolder)
    leaf_parents = {ua.NodeId(ua.ObjectIds.TypesFolder), ua.NodeId(ua.ObjectIds.ViewsFolder)}
    seen, found = {root}, []
    level, browses, nexts = [root], 0, 0
    while level:
        following = []
        for i in range(0, len(level), batch):
            parents = level[i : i + batch]
            params = ua.BrowseParameters()
            params.RequestedMaxReferencesPerNode = max_refs
            for node_id in parents:
                desc = ua.BrowseDescription()
                desc.NodeId = node_id
                desc.BrowseDirection = ua.BrowseDirection.Forward
                desc.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
                desc.IncludeSubtypes = True
                desc.ResultMask = ua.BrowseResultMask.All
                params.NodesToBrowse.append(desc)
            results = await client.uaclient.browse(params)
            browses += 1
            pages = list(zip(parents, results, strict=True))
            while pages:
                points = [(p, r.ContinuationPoint) for p, r in pages if r.ContinuationPoint]
                for parent, result in pages:
                    for ref in result.References:
                        node_id = _plain(ref.NodeId)
                        if node_id in seen:
                            continue
                        seen.add(node_id)
                        found.append(ref)
                        if parent not in leaf_parents:
                            following.append(node_id)
                if not points:
                    break
                more = ua.BrowseNextParameters()
                more.ReleaseContinuationPoints = False
                more.ContinuationPoints = [point for _, point in points]
                results = await client.uaclient.browse_next(more)
                nexts += 1
                pages = [(p, r) for (p, _), r in zip(points, results, strict=True)]
        level = following
    return found, browses, nexts


async def _attack(args: RoleArgs) -> None:
    from asyncua import ua
    from asyncua.client.client import Client

    url, pause = _url(args["server"]), float(args.get("pause", 1.0))
    await asyncio.sleep(float(args.get("delay", 3.0)))
    steps: list[str] = []

    def client() -> Client:
        c = Client(url, timeout=4, watchdog_intervall=5.0)
        c.name = c.description = "UaExpert"  # what the attacker claims to be
        c.application_uri = "urn:rogue-laptop:UnifiedAutomation:UaExpert"
        return c

    # 1. discovery: GetEndpoints on a channel of its own
    endpoints = await client().connect_and_get_server_endpoints()
    tokens = {t.TokenType.name for e in endpoints for t in e.UserIdentityTokens}
    steps.append(f"endpoints {len(endpoints)} (tokens {', '.join(sorted(tokens))})")
    await asyncio.sleep(pause)

    # 2. user "admin", guessed passwords: ActivateSession answered with a ServiceFault
    for password in args.get("passwords", ["admin"]):
        guess = client()
        guess.set_user("admin")
        guess.set_password(password)
        try:
            await guess.connect()
        except ua.UaStatusCodeError as exc:
            steps.append(f"admin/{password}: {type(exc).__name__}")
        else:
            await guess.disconnect()
            raise SystemExit(f"opcua-attacker: admin/{password} was accepted")
        await asyncio.sleep(pause / 2)
    await asyncio.sleep(pause / 2)

    # 3. anonymous session, browse everything it can see
    session = client()
    await session.connect()
    try:
        refs, browses, nexts = await _browse_everything(
            session, int(args.get("max_refs", 8)), int(args.get("batch", 24))
        )
        variables = [_plain(r.NodeId) for r in refs if r.NodeClass == ua.NodeClass.Variable]
        steps.append(
            f"browse: {len(refs)} nodes, {len(variables)} variables in {browses} Browse, "
            f"{nexts} BrowseNext"
        )
        await asyncio.sleep(pause)

        # 4. read the value of every variable found
        values, bad, batch = 0, 0, int(args.get("read_batch", 60))
        for i in range(0, len(variables), batch):
            params = ua.ReadParameters()
            for node_id in variables[i : i + batch]:
                rv = ua.ReadValueId()
                rv.NodeId = node_id
                rv.AttributeId = ua.AttributeIds.Value
                params.NodesToRead.append(rv)
            for dv in await session.uaclient.read(params):
                values += 1
                bad += dv.StatusCode is not None and not dv.StatusCode.is_good()
        steps.append(f"read: {values} values ({bad} bad)")
        await asyncio.sleep(pause)

        # 5. writes: the setpoint (accepted), process values and the firmware string (read
        # only), a string into the Int32 Mode (wrong type), a DisplayName (not the Value)
        by_name = {str(r.BrowseName.Name): _plain(r.NodeId) for r in refs}
        writes = [
            [("Setpoint", ua.Variant(95.0, ua.VariantType.Double))],
            [
                ("Temperature", ua.Variant(0.0, ua.VariantType.Double)),
                ("FirmwareVersion", ua.Variant("0.0.0", ua.VariantType.String)),
            ],
            [("Mode", ua.Variant("manual", ua.VariantType.String))],
        ]
        for items in writes:
            params = ua.WriteParameters()
            for name, variant in items:
                wv = ua.WriteValue()
                wv.NodeId = by_name[name]
                wv.AttributeId = ua.AttributeIds.Value
                wv.Value = ua.DataValue(variant)
                params.NodesToWrite.append(wv)
            codes = await session.uaclient.write(params)
            steps.append(
                "write "
                + ", ".join(f"{n}: {c.name}" for (n, _), c in zip(items, codes, strict=True))
            )
            await asyncio.sleep(pause / 2)
        rename = ua.WriteParameters()
        wv = ua.WriteValue()
        wv.NodeId = by_name["Setpoint"]
        wv.AttributeId = ua.AttributeIds.DisplayName
        wv.Value = ua.DataValue(ua.Variant(ua.LocalizedText("pwned"), ua.VariantType.LocalizedText))
        rename.NodesToWrite.append(wv)
        codes = await session.uaclient.write(rename)
        steps.append(f"write Setpoint.DisplayName: {codes[0].name}")
        await asyncio.sleep(pause)

        # 6. call StartBatch on Plant
        call = ua.CallMethodRequest()
        call.ObjectId = by_name["Plant"]
        call.MethodId = by_name["StartBatch"]
        call.InputArguments = [ua.Variant(99, ua.VariantType.Int32)]
        (result,) = await session.uaclient.call([call])
        outputs = [v.Value for v in result.OutputArguments]
        steps.append(f"call StartBatch(99): {result.StatusCode.name} -> {outputs}")
        await asyncio.sleep(pause / 2)
    finally:
        await session.disconnect()
    print("opcua-attacker: " + "; ".join(steps))


@role("opcua-secure")
def opcua_secure(args: RoleArgs) -> None:
    """A Basic256Sha256 session (Sign or SignAndEncrypt) with the lab certificates."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_secure(args))


async def _secure(args: RoleArgs) -> None:
    from asyncua import ua
    from asyncua.client.client import Client
    from asyncua.crypto import security_policies

    policy = getattr(security_policies, f"SecurityPolicy{args.get('policy', 'Basic256Sha256')}")
    await asyncio.sleep(float(args.get("delay", 0.0)))
    start, duration = time.monotonic(), float(args["duration"])
    station, mode = args["station"], ua.MessageSecurityMode[args["mode"]]
    client = Client(_url(args["server"]), timeout=4, watchdog_intervall=5.0)
    client.name = client.description = f"{station} ({args['mode']})"
    client.application_uri = f"urn:otsentry:lab:{station}"
    await client.set_security(
        policy,
        str(CERTS / f"{station}.der"),
        str(CERTS / f"{station}.pem"),
        server_certificate=str(CERTS / "opcsrv.der"),
        mode=mode,
    )
    if args.get("user"):
        client.set_user(args["user"])
        client.set_password(args["password"])
    await client.connect()
    reads = writes = 0
    try:
        nodes = await _plant_nodes(client)
        watched = [nodes[k] for k in ("Temperature", "Pressure", "Level", "Setpoint")]
        for name, variant in args.get("writes", []):
            kind = ua.VariantType[variant[0]]
            await nodes[name].write_value(ua.DataValue(ua.Variant(variant[1], kind)))
            if await nodes[name].read_value() != variant[1]:
                raise SystemExit(f"opcua-secure: {name} write did not take")
            writes += 1
            await asyncio.sleep(0.5)
        while time.monotonic() - start < duration - 1.0:
            await client.read_values(watched)
            reads += 1
            await asyncio.sleep(float(args.get("period", 1.0)))
    finally:
        await client.disconnect()
    print(f"opcua-secure: {station} {args['mode']}: {writes} writes, {reads} reads")
