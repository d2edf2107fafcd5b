"""Aspect ``addresses``: what each link reads and writes → ``new_address_range``,
``new_writer``, ``new_method``.

- Modbus: per (client, server, unit, table) and read/write, the address ranges requested
  (tables ``coils``, ``discrete_inputs``, ``holding_registers``, ``input_registers``; FC 23 reads
  and writes; FC 22 and 24 touch one register).
- S7comm: per (client, server, area) and read/write, the byte ranges of read/write var items
  (``data_block DB1``, ``inputs``, ``outputs``, ``flags``…).
- OPC UA: per (client, server) the node ids read (Read, CreateMonitoredItems) and written
  (Write), and the methods called (Call: object id, method id).

In detection a write from a client that never wrote to that server (and unit) is a
``new_writer`` (T0855, T0848; high); a range or node the link never touched is a
``new_address_range`` (writes T0836, high; reads T0861, medium); a method call unseen on the
link is a ``new_method`` (T0871, T0855; high). A new writer outranks a new reader.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, Self

from otsentry.baseline.aspect import (
    MAPPINGS,
    AnomalyKind,
    Aspect,
    AspectContext,
    AspectDataError,
    Deviation,
)
from otsentry.baseline.items import (
    DEFAULT_CAP,
    ItemTable,
    Ranges,
    Seen,
    as_list,
    as_map,
    int_of,
    join_limited,
    parse_span,
    span,
    text_of,
)
from otsentry.model import Event

READ = "read"
WRITE = "write"

#: (client, server, protocol, unit or -1, table, op)
RangeKey = tuple[str, str, str, int, str, str]
#: (client, server, op, node id)
NodeKey = tuple[str, str, str, str]
#: (client, server, object id, method id)
MethodKey = tuple[str, str, str, str]

#: Modbus function code → (table, op) of its ``address``/``quantity``
_MODBUS: Final = {
    1: ("coils", READ),
    2: ("discrete_inputs", READ),
    3: ("holding_registers", READ),
    4: ("input_registers", READ),
    5: ("coils", WRITE),
    6: ("holding_registers", WRITE),
    15: ("coils", WRITE),
    16: ("holding_registers", WRITE),
    22: ("holding_registers", WRITE),
    23: ("holding_registers", READ),
    24: ("holding_registers", READ),
}
#: S7 transport size name → bytes per element
_S7_SIZES: Final = {"word": 2, "int": 2, "dword": 4, "dint": 4, "real": 4, "counter": 2, "timer": 2}

#: an access an event makes: (table, op, lo, hi)
Access = tuple[str, str, int, int]


def modbus_accesses(fields: Mapping[str, Any]) -> Iterator[Access]:
    """The register/coil ranges a Modbus request touches."""
    fc = fields.get("function_code")
    found = _MODBUS.get(fc) if isinstance(fc, int) else None
    if found is None:
        return
    address = fields.get("address")
    if not isinstance(address, int):
        return
    quantity = fields.get("quantity")
    if not isinstance(quantity, int) or quantity < 1 or fc in (5, 6, 22, 24):
        quantity = 1
    yield found[0], found[1], address, address + quantity - 1
    if fc == 23:
        w_address = fields.get("write_address")
        w_quantity = fields.get("write_quantity")
        if isinstance(w_address, int):
            n = w_quantity if isinstance(w_quantity, int) and w_quantity > 0 else 1
            yield "holding_registers", WRITE, w_address, w_address + n - 1


def s7_accesses(action: str, fields: Mapping[str, Any]) -> list[Access]:
    """The byte ranges of an S7 read/write var job's items (a list: most jobs have one)."""
    if action == "s7comm-read-var":
        op = READ
    elif action == "s7comm-write-var":
        op = WRITE
    else:
        return []
    items = fields.get("items")
    if not isinstance(items, list):
        return []
    out: list[Access] = []
    for item in items:
        if not isinstance(item, MAPPINGS):
            continue
        area = str(item.get("area_name") or item.get("area") or "unknown")
        if item.get("area") == 132 or area == "data_block":
            area = f"data_block DB{item.get('db', 0)}"
        start = item.get("byte")
        length = item.get("length")
        if not isinstance(start, int) or not isinstance(length, int):
            continue
        size = _S7_SIZES.get(str(item.get("transport_size_name")), 1)
        out.append((area, op, start, start + max(length * size, 1) - 1))
    return out


def opcua_nodes(fields: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(op, node id) of an OPC UA Read / Write / CreateMonitoredItems request."""
    service = fields.get("service")
    if service == "ReadRequest" or service == "CreateMonitoredItemsRequest":
        op, listed = READ, fields.get("nodes") or fields.get("items")
    elif service == "WriteRequest":
        op, listed = WRITE, fields.get("nodes")
    else:
        return
    if not isinstance(listed, list):
        return
    for node in listed:
        if isinstance(node, MAPPINGS) and isinstance(node.get("node_id"), str):
            yield op, node["node_id"]


def opcua_methods(fields: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(object id, method id) of an OPC UA Call request."""
    if fields.get("service") != "CallRequest":
        return
    methods = fields.get("methods")
    if not isinstance(methods, list):
        return
    for m in methods:
        if isinstance(m, Mapping):
            yield str(m.get("object_id", "")), str(m.get("method_id", ""))


class AddressesAspect(Aspect):
    """Address ranges, nodes and methods per link, read and written."""

    name = "addresses"
    protocols = frozenset({"modbus", "s7comm", "opcua"})

    def __init__(self, context: AspectContext | None = None, cap: int = DEFAULT_CAP) -> None:
        super().__init__(context)
        self.ranges: dict[RangeKey, Ranges] = {}
        self.range_seen: ItemTable[RangeKey] = ItemTable(cap)
        self.nodes: ItemTable[NodeKey] = ItemTable(cap)
        self.methods: ItemTable[MethodKey] = ItemTable(cap)
        #: (server, protocol, unit) → clients that wrote (derived; None: to be rebuilt)
        self._writers: dict[tuple[str, str, int], set[str]] | None = None

    # -- what an event touches --------------------------------------------------------------
    @staticmethod
    def accesses(event: Event) -> list[tuple[RangeKey, int, int]]:
        env = event.envelope
        protocol = env.protocol
        conn = env.conn
        if env.direction == "response":
            return []
        out: list[tuple[RangeKey, int, int]] = []
        if protocol == "modbus":
            unit = event.fields.get("unit_id")
            u = unit if isinstance(unit, int) else -1
            for table, op, lo, hi in modbus_accesses(event.fields):
                out.append(((conn.client_ip, conn.server_ip, protocol, u, table, op), lo, hi))
        elif protocol == "s7comm":
            for table, op, lo, hi in s7_accesses(event.action, event.fields):
                out.append(((conn.client_ip, conn.server_ip, protocol, -1, table, op), lo, hi))
        return out

    # -- learning ---------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        ts = event.envelope.ts
        if event.envelope.protocol == "opcua":
            conn = event.envelope.conn
            for op, node in opcua_nodes(event.fields):
                self.nodes.add((conn.client_ip, conn.server_ip, op, node), ts)
            for obj, method in opcua_methods(event.fields):
                self.methods.add((conn.client_ip, conn.server_ip, obj, method), ts)
            self._writers = None
            return
        for key, lo, hi in self.accesses(event):
            if self.range_seen.add(key, ts) or key in self.range_seen:
                ranges = self.ranges.get(key)
                if ranges is None:
                    ranges = self.ranges[key] = Ranges()
                ranges.add(lo, hi)
                self._writers = None

    def writers(self) -> dict[tuple[str, str, int], set[str]]:
        """(server, protocol, unit) → the clients that ever wrote to it."""
        if self._writers is None:
            found: dict[tuple[str, str, int], set[str]] = {}
            for client, server, protocol, unit, _table, op in self.ranges:
                if op == WRITE:
                    found.setdefault((server, protocol, unit), set()).add(client)
            for client, server, op, _node in self.nodes.items:
                if op == WRITE:
                    found.setdefault((server, "opcua", -1), set()).add(client)
            self._writers = found
        return self._writers

    # -- the file ---------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        ranges = []
        for key, seen in self.range_seen.sorted():
            client, server, protocol, unit, table, op = key
            row: dict[str, Any] = {"client": client, "server": server, "protocol": protocol}
            if unit >= 0:
                row["unit"] = unit
            row.update(table=table, op=op, ranges=self.ranges[key].as_data(), **seen.as_data())
            ranges.append(row)
        nodes = [
            {"client": c, "server": s, "op": op, "node": n, **seen.as_data()}
            for (c, s, op, n), seen in self.nodes.sorted()
        ]
        methods = [
            {"client": c, "server": s, "object": o, "method": m, **seen.as_data()}
            for (c, s, o, m), seen in self.methods.sorted()
        ]
        return {
            "ranges": ranges,
            "nodes": nodes,
            "methods": methods,
            "dropped": self.range_seen.dropped + self.nodes.dropped + self.methods.dropped,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        out = cls(context)
        for i, raw in enumerate(as_list(data.get("ranges"), "ranges")):
            k = f"ranges[{i}]"
            e = as_map(raw, k)
            op = text_of(e, "op", k)
            if op not in (READ, WRITE):
                raise AspectDataError(f"{k}.op", "must be read or write")
            key = (
                text_of(e, "client", k),
                text_of(e, "server", k),
                text_of(e, "protocol", k),
                int_of(e, "unit", k, -1),
                text_of(e, "table", k),
                op,
            )
            out.range_seen.put(key, Seen.from_data(e, k))
            out.ranges[key] = Ranges.from_data(e.get("ranges"), f"{k}.ranges")
        for i, raw in enumerate(as_list(data.get("nodes"), "nodes")):
            k = f"nodes[{i}]"
            e = as_map(raw, k)
            nkey = (
                text_of(e, "client", k),
                text_of(e, "server", k),
                text_of(e, "op", k),
                text_of(e, "node", k),
            )
            out.nodes.put(nkey, Seen.from_data(e, k))
        for i, raw in enumerate(as_list(data.get("methods"), "methods")):
            k = f"methods[{i}]"
            e = as_map(raw, k)
            mkey = (
                text_of(e, "client", k),
                text_of(e, "server", k),
                text_of(e, "object", k),
                text_of(e, "method", k),
            )
            out.methods.put(mkey, Seen.from_data(e, k))
        return out

    # -- detection --------------------------------------------------------------------------
    def check(self, event: Event) -> list[Deviation]:
        env = event.envelope
        if env.protocol == "opcua":
            return self._check_opcua(event)
        if env.protocol == "modbus" and self._modbus_covered(event):
            return []
        return self._check_accesses(event)

    def _modbus_covered(self, event: Event) -> bool:
        """True when a Modbus event makes no access or one inside its learned ranges (the
        common case, decided without building the access list); False: ask
        ``_check_accesses``."""
        env = event.envelope
        f = event.fields
        fc = f.get("function_code")
        if env.direction == "response" or type(fc) is not int or fc == 23:
            return False
        found = _MODBUS.get(fc)
        address = f.get("address")
        if found is None or not isinstance(address, int):
            return True
        quantity = f.get("quantity")
        if not isinstance(quantity, int) or quantity < 1 or fc in (5, 6, 22, 24):
            quantity = 1
        unit = f.get("unit_id")
        conn = env.conn
        table, op = found
        key = (
            conn.client_ip,
            conn.server_ip,
            "modbus",
            unit if isinstance(unit, int) else -1,
            table,
            op,
        )
        ranges = self.ranges.get(key)
        return ranges is not None and ranges.covers(address, address + quantity - 1)

    def _check_accesses(self, event: Event) -> list[Deviation]:
        found: list[Deviation] = []
        for key, lo, hi in self.accesses(event):
            ranges = self.ranges.get(key)
            if ranges is not None and ranges.covers(lo, hi):
                continue
            client, server, protocol, unit, _table, op = key
            item = _range_item(key, lo, hi)
            if op == WRITE and client not in self.writers().get((server, protocol, unit), ()):
                found.append(self._new_writer(event, key, lo, hi, item))
            else:
                found.append(self._new_range(event, key, lo, hi, item))
        return found

    def _where(self, key: RangeKey) -> str:
        _c, server, _protocol, unit, table, _op = key
        return (f"unit {unit} " if unit >= 0 else "") + f"{table.replace('_', ' ')} of {server}"

    def _by_client(self, key: RangeKey) -> dict[str, str]:
        """Other clients' ranges on the same server, unit, table and op."""
        _c, server, protocol, unit, table, op = key
        return {
            k[0]: str(r)
            for k, r in sorted(self.ranges.items())
            if k[1:] == (server, protocol, unit, table, op)
        }

    def _new_writer(
        self, event: Event, key: RangeKey, lo: int, hi: int, item: dict[str, Any]
    ) -> Deviation:
        client, server, protocol, unit, table, _op = key
        by = self._by_client(key)
        writers = sorted(self.writers().get((server, protocol, unit), ()))
        target = (f"unit {unit} of " if unit >= 0 else "") + server
        if by:
            learned = "; ".join(f"{c} wrote {r}" for c, r in by.items())
            reason = (
                f"{self._where(key)} were written by {join_limited(list(by))} only ({learned}); "
                f"{client}, which never wrote to {target}, wrote {span(lo, hi)}"
            )
        elif writers:
            reason = (
                f"{target} was written by {join_limited(writers)} only; {client}, which never "
                f"wrote to it, wrote {table.replace('_', ' ')} {span(lo, hi)}"
            )
        else:
            reason = (
                f"nobody wrote to {target} while learning; {client} wrote "
                f"{table.replace('_', ' ')} {span(lo, hi)}"
            )
        return Deviation(
            AnomalyKind.NEW_WRITER,
            self.name,
            item,
            reason,
            expected={"writers": writers, "ranges": by},
            observed={"writer": client, "table": table, "range": span(lo, hi)},
            event=event,
        )

    def _new_range(
        self, event: Event, key: RangeKey, lo: int, hi: int, item: dict[str, Any]
    ) -> Deviation:
        client, _server, _protocol, _unit, table, op = key
        mine = self.ranges.get(key)
        verb = "wrote" if op == WRITE else "read"
        by = self._by_client(key)
        if mine is not None:
            reason = (
                f"{client} {verb} {self._where(key)} {mine} only while learning; now {span(lo, hi)}"
            )
        else:
            others = "; ".join(f"{c} {verb} {r}" for c, r in by.items()) or "nobody did"
            reason = (
                f"{client} never {verb} {self._where(key)} while learning ({others}); "
                f"now {span(lo, hi)}"
            )
        write = op == WRITE
        return Deviation(
            AnomalyKind.NEW_ADDRESS_RANGE,
            self.name,
            item,
            reason,
            expected={"ranges": str(mine) if mine is not None else None, "others": by},
            observed={"op": op, "table": table, "range": span(lo, hi)},
            level="high" if write else "medium",
            techniques=("T0836",) if write else ("T0861", "T0801"),
            event=event,
        )

    def _check_opcua(self, event: Event) -> list[Deviation]:
        conn = event.envelope.conn
        client, server = conn.client_ip, conn.server_ip
        found: list[Deviation] = []
        for op, node in opcua_nodes(event.fields):
            if (client, server, op, node) in self.nodes.items:
                continue
            item = {"client": client, "server": server, "protocol": "opcua", "op": op}
            item["node"] = node
            mine = sorted(n for c, s, o, n in self.nodes.items if (c, s, o) == (client, server, op))
            verb = "wrote" if op == WRITE else "read"
            if op == WRITE and client not in self.writers().get((server, "opcua", -1), ()):
                writers = sorted(self.writers().get((server, "opcua", -1), ()))
                written = sorted({n for _c, s, o, n in self.nodes.items if s == server and o == op})
                found.append(
                    Deviation(
                        AnomalyKind.NEW_WRITER,
                        self.name,
                        item,
                        f"nodes {join_limited(written)} of {server} were written by "
                        f"{join_limited(writers)} only; {client}, which never wrote to it, "
                        f"wrote {node}",
                        expected={"writers": writers, "nodes": written},
                        observed={"writer": client, "node": node},
                        event=event,
                    )
                )
                continue
            if mine:
                reason = f"{client} {verb} nodes {join_limited(mine)} of {server} while learning"
            else:
                others = sorted({c for c, s, o, _n in self.nodes.items if (s, o) == (server, op)})
                reason = f"{client} never {verb} nodes of {server} while learning"
                if others:
                    reason += f" ({join_limited(others)} did)"
            found.append(
                Deviation(
                    AnomalyKind.NEW_ADDRESS_RANGE,
                    self.name,
                    item,
                    f"{reason}; now {node}",
                    expected={"nodes": mine},
                    observed={"op": op, "node": node},
                    level="high" if op == WRITE else "medium",
                    techniques=("T0836",) if op == WRITE else ("T0861", "T0801"),
                    event=event,
                )
            )
        for obj, method in opcua_methods(event.fields):
            if (client, server, obj, method) in self.methods.items:
                continue
            mine = sorted(
                f"{m} on {o}" for c, s, o, m in self.methods.items if (c, s) == (client, server)
            )
            anyone = sorted(
                {c for c, s, o, m in self.methods.items if (s, o, m) == (server, obj, method)}
            )
            if mine:
                reason = f"{client} called {join_limited(mine)} on {server} while learning"
            else:
                reason = f"{client} never called a method on {server} while learning"
            reason += f"; now method {method} on object {obj}"
            if anyone:
                reason += f" (which {join_limited(anyone)} called)"
            else:
                reason += " (which nobody called)"
            found.append(
                Deviation(
                    AnomalyKind.NEW_METHOD,
                    self.name,
                    {"client": client, "server": server, "object": obj, "method": method},
                    reason,
                    expected={"methods": mine, "callers": anyone},
                    observed={"object": obj, "method": method},
                    event=event,
                )
            )
        return found

    # -- accept -----------------------------------------------------------------------------
    def accept(self, item: Mapping[str, Any]) -> bool:
        try:
            client, server = str(item["client"]), str(item["server"])
            if "method" in item:
                mkey = (client, server, str(item["object"]), str(item["method"]))
                if mkey not in self.methods:
                    self.methods.put(mkey, Seen.accepted())
                return True
            op = str(item["op"])
            if "node" in item:
                nkey = (client, server, op, str(item["node"]))
                if nkey not in self.nodes:
                    self.nodes.put(nkey, Seen.accepted())
                self._writers = None
                return True
            key = (
                client,
                server,
                str(item["protocol"]),
                int(item.get("unit", -1)),
                str(item["table"]),
                op,
            )
            lo, hi = parse_span(item["range"], "range")
        except (KeyError, TypeError, ValueError):
            return False
        if key not in self.range_seen:
            self.range_seen.put(key, Seen.accepted())
            self.ranges[key] = Ranges()
        self.ranges[key].add(lo, hi)
        self._writers = None
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "ranges": len(self.range_seen),
            "nodes": len(self.nodes),
            "methods": len(self.methods),
        }


def _range_item(key: RangeKey, lo: int, hi: int) -> dict[str, Any]:
    client, server, protocol, unit, table, op = key
    item: dict[str, Any] = {"client": client, "server": server, "protocol": protocol}
    if unit >= 0:
        item["unit"] = unit
    item.update(table=table, op=op, range=span(lo, hi))
    return item
