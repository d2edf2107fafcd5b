"""Aspect ``functions``: the protocol functions each link uses → ``new_function``.

Per (client, server, protocol, unit) the functions requested:

- Modbus: function code, with the sub-function for FC 8 (diagnostics), 43 (MEI type) and 90
  (UMAS): ``3``, ``8/4``, ``43/14``; unit = the unit id.
- S7comm: the event's action without the protocol (``read-var``, ``write-var``,
  ``delete-block``, ``read-szl``, ``plc-stop``…): job functions, PI services and userdata
  group + sub-function each have their own; COTP steps (``cotp-connection-request``) too.
- S7comm-plus: the action (opcode and function).
- OPC UA: the service (``Read``, ``Call``, ``OpenSecureChannel``…); encrypted messages, whose
  service cannot be seen, are left out.

A function unseen on the link is a ``new_function`` (T0855): high when it changes the device
(writes, program transfer, control), medium for reads and discovery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Self

from otsentry.baseline.aspect import AnomalyKind, Aspect, AspectContext, Deviation
from otsentry.baseline.items import (
    DEFAULT_CAP,
    ItemTable,
    Seen,
    as_list,
    as_map,
    int_of,
    join_limited,
    text_of,
)
from otsentry.model import Event

#: (client, server, protocol, unit or -1, function)
FunctionKey = tuple[str, str, str, int, str]

#: Modbus function codes that only read or identify
MODBUS_READS: Final = frozenset({1, 2, 3, 4, 7, 11, 12, 17, 20, 24, 43})
#: Modbus function codes whose sub-function is part of the function
_MODBUS_SUBS: Final = {8: "sub_function", 43: "mei_type", 90: "sub_function"}
#: S7 / OPC UA functions that read, browse or discover
_READ_WORDS: Final = ("read", "list", "get", "browse", "find", "translate", "publish", "hello")


def function_of(event: Event) -> tuple[int, str, str] | None:
    """(unit or -1, function, readable name) of a request-bearing event; None otherwise (a
    response alone is the server's, not a function the client used)."""
    if event.envelope.direction == "response":
        return None
    protocol = event.envelope.protocol
    f = event.fields
    if protocol == "modbus":
        fc = f.get("function_code")
        if not isinstance(fc, int):
            return None
        sub_field = _MODBUS_SUBS.get(fc)
        sub = f.get(sub_field) if sub_field else None
        unit = f.get("unit_id")
        label = f"{fc}/{sub}" if isinstance(sub, int) else str(fc)
        name = str(f.get("function") or "")
        sub_name = f.get("sub_function_name") or f.get("mei")
        if sub_name:
            name += f" ({sub_name})"
        return (unit if isinstance(unit, int) else -1), label, name
    if protocol == "opcua":
        service = f.get("service")
        if not isinstance(service, str):
            return None
        service = service.removesuffix("Request").removesuffix("Response")
        return -1, service, service
    if protocol in ("s7comm", "s7comm_plus"):
        prefix = protocol.replace("_", "-") + "-"
        label = event.action.removeprefix(prefix)
        return -1, label, label
    return None


def _known_key(event: Event) -> FunctionKey | None:
    """``key_of``'s key for a Modbus or S7comm request without building its name (None: ask
    ``key_of``): the common case of a known function, checked cheaply."""
    env = event.envelope
    if env.direction == "response":
        return None
    protocol = env.protocol
    if protocol == "s7comm":
        conn = env.conn
        return (conn.client_ip, conn.server_ip, protocol, -1, event.action.removeprefix("s7comm-"))
    if protocol != "modbus":
        return None
    f = event.fields
    fc = f.get("function_code")
    if type(fc) is not int or fc in _MODBUS_SUBS:
        return None
    label = _FC_LABELS[fc] if 0 <= fc < 256 else str(fc)
    unit = f.get("unit_id")
    conn = env.conn
    return (conn.client_ip, conn.server_ip, "modbus", unit if isinstance(unit, int) else -1, label)


#: a Modbus function code's label, by code
_FC_LABELS: Final = tuple(str(code) for code in range(256))


def is_read(protocol: str, function: str) -> bool:
    """Whether a function only reads (or discovers): such a new function is medium, not high."""
    if protocol == "modbus":
        fc = function.partition("/")[0]
        return fc.isdigit() and int(fc) in MODBUS_READS
    word = function.lower()
    return word.startswith(_READ_WORDS) or word.startswith("cotp") or word == "setup-communication"


class FunctionsAspect(Aspect):
    """Functions per (client, server, protocol, unit)."""

    name = "functions"
    protocols = frozenset({"modbus", "s7comm", "s7comm_plus", "opcua"})

    def __init__(self, context: AspectContext | None = None, cap: int = DEFAULT_CAP) -> None:
        super().__init__(context)
        self.table: ItemTable[FunctionKey] = ItemTable(cap)
        self.names: dict[FunctionKey, str] = {}

    @staticmethod
    def key_of(event: Event) -> tuple[FunctionKey, str] | None:
        found = function_of(event)
        if found is None:
            return None
        unit, label, name = found
        conn = event.envelope.conn
        return (conn.client_ip, conn.server_ip, event.envelope.protocol, unit, label), name

    def learn(self, event: Event) -> None:
        found = self.key_of(event)
        if found is None:
            return
        key, name = found
        if self.table.add(key, event.envelope.ts) and name and name != key[4]:
            self.names[key] = name

    def to_data(self) -> dict[str, Any]:
        rows = []
        for key, seen in self.table.sorted():
            client, server, protocol, unit, function = key
            row: dict[str, Any] = {
                "client": client,
                "server": server,
                "protocol": protocol,
            }
            if unit >= 0:
                row["unit"] = unit
            row["function"] = function
            if key in self.names:
                row["name"] = self.names[key]
            rows.append({**row, **seen.as_data()})
        return {"functions": rows, "dropped": self.table.dropped}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        out = cls(context)
        for i, raw in enumerate(as_list(data.get("functions"), "functions")):
            k = f"functions[{i}]"
            entry = as_map(raw, k)
            key = (
                text_of(entry, "client", k),
                text_of(entry, "server", k),
                text_of(entry, "protocol", k),
                int_of(entry, "unit", k, -1),
                text_of(entry, "function", k),
            )
            out.table.put(key, Seen.from_data(entry, k))
            if entry.get("name"):
                out.names[key] = str(entry["name"])
        out.table.dropped = int(data.get("dropped", 0) or 0)
        return out

    def check(self, event: Event) -> list[Deviation]:
        known = _known_key(event)
        if known is not None and known in self.table.items:
            return []
        found = self.key_of(event)
        if found is None or found[0] in self.table.items:
            return []
        key, name = found
        client, server, protocol, unit, function = key
        on_link = sorted(
            k[4] for k in self.table.items if k[:4] == (client, server, protocol, unit)
        )
        others = sorted({k[0] for k in self.table.items if k[1:5] == key[1:5]})
        where = f"unit {unit} of {server}" if unit >= 0 else server
        shown = function + (f" ({name})" if name and name != function else "")
        if on_link:
            reason = (
                f"{client} used {protocol} functions {join_limited(on_link, 12)} on {where} "
                f"while learning; now {shown}"
            )
        else:
            reason = f"{client} never used {protocol} on {where} while learning"
            if others:
                reason += f" ({join_limited(others)} used {function})"
            reason += f"; now {shown}"
        item: dict[str, Any] = {
            "client": client,
            "server": server,
            "protocol": protocol,
            "function": function,
        }
        if unit >= 0:
            item["unit"] = unit
        return [
            Deviation(
                AnomalyKind.NEW_FUNCTION,
                self.name,
                item,
                reason,
                expected={"functions": on_link, "other_clients": others},
                observed={"function": function, "name": name, "action": event.action},
                level="medium" if is_read(protocol, function) else None,
                event=event,
            )
        ]

    def accept(self, item: Mapping[str, Any]) -> bool:
        try:
            key = (
                str(item["client"]),
                str(item["server"]),
                str(item["protocol"]),
                int(item.get("unit", -1)),
                str(item["function"]),
            )
        except (KeyError, TypeError, ValueError):
            return False
        if key not in self.table:
            self.table.put(key, Seen.accepted())
        return True

    def stats(self) -> dict[str, Any]:
        return {"functions": len(self.table), "dropped": self.table.dropped}
