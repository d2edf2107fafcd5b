"""What an event proves about the role of each end of its connection.

A client gets a role when it asked (a request, or a transaction), a server when it answered (a
response, or a transaction whose outcome is known): a scan nobody answers makes nobody a server.
S7 clients are told apart by what they do and by the connection type their COTP connection
request named (the called TSAP's first byte: ``pg`` programming device, ``op`` operator panel):

- ``s7-engineering-station``: a ``pg`` connection, or program download / upload, PLC stop and
  start, PI services, block functions, password, clock setting, programmer commands (force…);
- ``s7-hmi``: an ``op`` connection, or only read / write var (dropped when the same host shows
  itself an engineering station);
- ``s7-plc``: the server of S7comm or S7comm-plus.

The action tables come from the dissectors' own names, so the pipeline's
``event.action in ROLE_ACTIONS`` gate and these rules cannot drift apart. The dissectors are
imported by name, as the dissector registry does (the sensor core has no static dependency on
them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from otsentry.model import Direction, Event


def _dissector(module: str) -> Any:
    return importlib.import_module(f"otsentry.dissectors.{module}")


MODBUS_ACTIONS: tuple[str, ...] = _dissector("modbus.events").ACTIONS
_service_action: Callable[[str], str] = _dissector("opcua.events").service_action
SERVICE_NAMES: dict[int, str] = _dissector("opcua.services").SERVICE_NAMES
userdata = _dissector("s7comm.userdata")
FUNCTION_ACTIONS: dict[int, str] = _dissector("s7comm.events").FUNCTION_ACTIONS
PI_ACTIONS: dict[str, str] = _dissector("s7comm.events").PI_ACTIONS
PLUS_FUNCTIONS: dict[int, str] = _dissector("s7comm.plus").FUNCTIONS

MODBUS_CLIENT = "modbus-client"
MODBUS_SERVER = "modbus-server"
S7_ENGINEERING = "s7-engineering-station"
S7_HMI = "s7-hmi"
S7_PLC = "s7-plc"
OPCUA_CLIENT = "opcua-client"
OPCUA_SERVER = "opcua-server"
ROLES = (
    MODBUS_CLIENT,
    MODBUS_SERVER,
    S7_ENGINEERING,
    S7_HMI,
    S7_PLC,
    OPCUA_CLIENT,
    OPCUA_SERVER,
)

#: an S7 client's role is decided from the connection type and the action
_S7_CLIENT = "s7-client"
_BY_CONNECTION_TYPE = {"pg": S7_ENGINEERING, "op": S7_HMI}
_VARIABLE_ACCESS = frozenset((FUNCTION_ACTIONS[0x04], FUNCTION_ACTIONS[0x05]))
_RESPONSE, _TRANSACTION = Direction.RESPONSE, Direction.TRANSACTION


def _action(name: str) -> str:
    return "s7comm-" + name.replace("_", "-")


def _engineering_actions() -> frozenset[str]:
    functions = ["request_download", "download_block", "download_ended", "start_upload"]
    functions += ["upload", "end_upload", "pi_service", "plc_stop"]
    names = {_action(n) for n in functions} | set(PI_ACTIONS.values())
    subfunctions: dict[int, dict[int, str]] = userdata.SUBFUNCTIONS
    groups = (
        userdata.GROUP_TIS,
        userdata.GROUP_BLOCK,
        userdata.GROUP_SECURITY,
        userdata.GROUP_NCPRG,
    )
    for group in groups:
        names |= {_action(n) for n in subfunctions[group].values()}
    time_functions = subfunctions[userdata.GROUP_TIME].values()
    names |= {_action(n) for n in time_functions if n.startswith("set_")}
    return frozenset(names)


#: actions only an engineering station performs
ENGINEERING_ACTIONS = _engineering_actions()

#: a role one end of an event's connection plays, and the S7 connection type that decided it
Finding = tuple[str, str | None]
_FINDINGS: dict[str, Finding] = {role: (role, None) for role in ROLES}
_BY_TYPE_FINDINGS: dict[str, Finding] = {k: (r, k) for k, r in _BY_CONNECTION_TYPE.items()}


class Rule(NamedTuple):
    """The roles an action gives the client (when it asked) and the server (when it answered)."""

    client: str | None
    server: Finding | None


def _rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    modbus = Rule(MODBUS_CLIENT, _FINDINGS[MODBUS_SERVER])
    rules.update(dict.fromkeys(MODBUS_ACTIONS, modbus))
    opcua = Rule(OPCUA_CLIENT, _FINDINGS[OPCUA_SERVER])
    services = {_service_action(n) for n in SERVICE_NAMES.values() if n != "ServiceFault"}
    messages = ["hello", "acknowledge", "error", "open-secure-channel", "close-secure-channel"]
    messages += ["message", "encrypted-message"]
    rules.update(dict.fromkeys(services | {f"opcua-{m}" for m in messages}, opcua))
    s7 = Rule(_S7_CLIENT, _FINDINGS[S7_PLC])
    s7_actions = set(FUNCTION_ACTIONS.values()) | set(PI_ACTIONS.values())
    s7_actions |= {_action(f"cotp_{kind}") for kind in ("connection_request", "connection_confirm")}
    subfunctions: dict[int, dict[int, str]] = userdata.SUBFUNCTIONS
    for group, names in subfunctions.items():
        if group != userdata.GROUP_MODE:  # mode transitions are the CPU's own pushes
            s7_actions |= {_action(n) for n in names.values()}
    rules.update(dict.fromkeys(s7_actions, s7))
    plus = Rule(None, _FINDINGS[S7_PLC])
    rules.update({"s7comm-plus-" + n.replace("_", "-"): plus for n in PLUS_FUNCTIONS.values()})
    return rules


#: action → roles it proves
RULES: Mapping[str, Rule] = _rules()
#: the actions worth the inventory's attention
ROLE_ACTIONS: frozenset[str] = frozenset(RULES)


def connection_type(fields: Mapping[str, Any]) -> str | None:
    """The S7 connection type of an event: its own (COTP connect) or its connection's."""
    kind = fields.get("connection_type")
    if kind is None:
        connection = fields.get("connection")
        if isinstance(connection, Mapping):
            kind = connection.get("connection_type")
    return kind if isinstance(kind, str) else None


def client_finding(rule: Rule, event: Event) -> Finding | None:
    """The role the event shows for the client (which asked), if any."""
    client = rule.client
    if client is None or event.envelope.direction is _RESPONSE:
        return None
    if client is not _S7_CLIENT:
        return _FINDINGS[client]
    if event.action in ENGINEERING_ACTIONS:
        return _FINDINGS[S7_ENGINEERING]
    kind = connection_type(event.fields)
    by_type = _BY_TYPE_FINDINGS.get(kind) if kind else None
    if by_type is not None:
        return by_type
    if event.action in _VARIABLE_ACCESS:
        return _FINDINGS[S7_HMI]
    return None


def server_answered(event: Event) -> bool:
    """Did the server speak in this event (a response, or a transaction with an outcome)?"""
    direction = event.envelope.direction
    if direction is _RESPONSE:
        return True
    return direction is _TRANSACTION and event.outcome != "unknown"


def settle(roles: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The roles to report: an HMI guess from variable access alone gives way to an
    engineering station (which reads and writes variables too)."""
    out = dict(roles)
    hmi = out.get(S7_HMI)
    if hmi is not None and S7_ENGINEERING in out and hmi.get("connection_type") != "op":
        del out[S7_HMI]
    return out
