"""Aspect ``security``: OPC UA endpoint security and S7 engineering stations →
``security_downgrade``, ``new_identity``, ``certificate_change``.

OPC UA, per endpoint (server address and port): the security policies and modes of its secure
channels, the identity token types (and user names) of its sessions, the server certificate
thumbprints, and per client the client certificate thumbprints.

- a policy or mode weaker than every learned one for the endpoint (None < Sign <
  SignAndEncrypt; the deprecated Basic128Rsa15 and Basic256 below the current policies) is a
  ``security_downgrade`` (high); an unseen policy that is not weaker is one too, at low level
  ("a policy other than the endpoint's learned one");
- an identity token type or user name unseen at the endpoint is a ``new_identity`` (T0859,
  T0812); a client certificate unseen for that client one too;
- a server certificate other than the learned ones is a ``certificate_change`` (T0830, T0849),
  as is a known client presenting another certificate than it had.

S7comm: per PLC, the engineering stations — clients that set up a ``pg`` connection, or ever
downloaded or uploaded a block. Another host doing so is a ``new_identity`` "new engineering
station" (T0848, T0886; high).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Self

from otsentry.baseline.aspect import MAPPINGS, AnomalyKind, Aspect, AspectContext, Deviation
from otsentry.baseline.items import (
    DEFAULT_CAP,
    ItemTable,
    Seen,
    as_list,
    as_map,
    join_limited,
    text_of,
)
from otsentry.model import Event

#: (endpoint "server:port", attribute, value): attributes ``policy``, ``mode``, ``token``,
#: ``user``, ``server_cert``, ``client_cert:<client ip>``; S7: ``engineering_station``
SecurityKey = tuple[str, str, str]

_MODE_RANK: Final = {"None": 0, "Sign": 1, "SignAndEncrypt": 2}
_POLICY_RANK: Final = {
    "None": 0,
    "Basic128Rsa15": 1,
    "Basic256": 1,
    "Basic256Sha256": 2,
    "Aes128_Sha256_RsaOaep": 2,
    "Aes256_Sha256_RsaPss": 2,
}
#: S7 actions that make a client an engineering station of the PLC
_ENGINEERING: Final = {
    "s7comm-request-download": "download",
    "s7comm-download-block": "download",
    "s7comm-download-ended": "download",
    "s7comm-start-upload": "upload",
    "s7comm-upload": "upload",
    "s7comm-end-upload": "upload",
}
STATION = "engineering_station"


def facts_of(event: Event) -> list[tuple[SecurityKey, str]]:
    """(key, what the client did) pairs an event shows."""
    env = event.envelope
    conn = env.conn
    f = event.fields
    out: list[tuple[SecurityKey, str]] = []
    if env.protocol == "opcua":
        endpoint = f"{conn.server_ip}:{conn.server_port}"
        channel = f.get("channel")
        if isinstance(channel, MAPPINGS):
            policy = channel.get("security_policy")
            mode = channel.get("security_mode")
            if isinstance(policy, str):
                out.append(((endpoint, "policy", policy), ""))
            if isinstance(mode, str):
                out.append(((endpoint, "mode", mode), ""))
            cert = channel.get("server_certificate_thumbprint")
            if isinstance(cert, str):
                out.append(((endpoint, "server_cert", cert), ""))
            cert = channel.get("client_certificate_thumbprint")
            if isinstance(cert, str):
                out.append(((endpoint, f"client_cert:{conn.client_ip}", cert), ""))
        if event.action == "opcua-activate-session":
            token = f.get("identity_token_type")
            if isinstance(token, str):
                out.append(((endpoint, "token", token), ""))
            user = f.get("user_name")
            if isinstance(user, str):
                out.append(((endpoint, "user", user), ""))
    elif env.protocol == "s7comm":
        activity = _ENGINEERING.get(event.action)
        if activity is None and event.action in (
            "s7comm-cotp-connection-request",
            "s7comm-setup-communication",
        ):
            connection = f.get("connection")
            kind = (
                connection.get("connection_type")
                if isinstance(connection, Mapping)
                else f.get("connection_type")
            )
            if kind == "pg":
                activity = "pg_connection"
        if activity is not None:
            out.append(((conn.server_ip, STATION, conn.client_ip), activity))
    return out


class SecurityAspect(Aspect):
    """OPC UA endpoint security facts and S7 engineering stations."""

    name = "security"
    protocols = frozenset({"opcua", "s7comm"})

    def __init__(self, context: AspectContext | None = None, cap: int = DEFAULT_CAP) -> None:
        super().__init__(context)
        self.table: ItemTable[SecurityKey] = ItemTable(cap)
        #: engineering station key → activities seen (pg_connection, download, upload)
        self.activities: dict[SecurityKey, set[str]] = {}

    def learn(self, event: Event) -> None:
        ts = event.envelope.ts
        for key, activity in facts_of(event):
            self.table.add(key, ts)
            if activity and key in self.table:
                self.activities.setdefault(key, set()).add(activity)

    def to_data(self) -> dict[str, Any]:
        opcua: list[dict[str, Any]] = []
        stations: list[dict[str, Any]] = []
        for key, seen in self.table.sorted():
            where, attribute, value = key
            if attribute == STATION:
                stations.append(
                    {
                        "plc": where,
                        "station": value,
                        "activities": sorted(self.activities.get(key, ())),
                        **seen.as_data(),
                    }
                )
            else:
                opcua.append(
                    {"endpoint": where, "attribute": attribute, "value": value, **seen.as_data()}
                )
        return {
            "opcua_endpoints": opcua,
            "s7_engineering_stations": stations,
            "dropped": self.table.dropped,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        out = cls(context)
        for i, raw in enumerate(as_list(data.get("opcua_endpoints"), "opcua_endpoints")):
            k = f"opcua_endpoints[{i}]"
            e = as_map(raw, k)
            key = (text_of(e, "endpoint", k), text_of(e, "attribute", k), text_of(e, "value", k))
            out.table.put(key, Seen.from_data(e, k))
        stations = data.get("s7_engineering_stations")
        for i, raw in enumerate(as_list(stations, "s7_engineering_stations")):
            k = f"s7_engineering_stations[{i}]"
            e = as_map(raw, k)
            key = (text_of(e, "plc", k), STATION, text_of(e, "station", k))
            out.table.put(key, Seen.from_data(e, k))
            acts = {str(a) for a in as_list(e.get("activities"), f"{k}.activities")}
            out.activities[key] = acts
        out.table.dropped = int(data.get("dropped", 0) or 0)
        return out

    def _values(self, where: str, attribute: str) -> list[str]:
        return sorted(v for w, a, v in self.table.items if w == where and a == attribute)

    def check(self, event: Event) -> list[Deviation]:
        found: list[Deviation] = []
        for key, activity in facts_of(event):
            if key in self.table.items:
                continue
            where, attribute, value = key
            learned = self._values(where, attribute)
            item = {"endpoint": where, "attribute": attribute, "value": value}
            observed = {attribute: value, "action": event.action}
            conn = event.envelope.conn
            if attribute == STATION:
                item = {"plc": where, "station": value, "activity": activity}
                reason = (
                    f"{value} set up an engineering session with {where} ({activity}); "
                    f"the PLC's engineering stations while learning: {join_limited(learned)}"
                )
                found.append(
                    Deviation(
                        AnomalyKind.NEW_IDENTITY,
                        self.name,
                        item,
                        reason,
                        expected={"engineering_stations": learned},
                        observed={"station": value, "activity": activity},
                        techniques=("T0848", "T0886"),
                        event=event,
                    )
                )
                continue
            if attribute in ("policy", "mode"):
                ranks = _POLICY_RANK if attribute == "policy" else _MODE_RANK
                rank = ranks.get(value, 2)
                weaker = bool(learned) and rank < min(ranks.get(v, 2) for v in learned)
                deprecated = attribute == "policy" and rank == 1
                what = "security policy" if attribute == "policy" else "security mode"
                reason = (
                    f"{conn.client_ip} opened a secure channel to {where} with {what} {value}; "
                    f"learned: {join_limited(learned)}"
                )
                if weaker:
                    reason += " (weaker)"
                elif deprecated:
                    reason += f" ({value} is deprecated)"
                found.append(
                    Deviation(
                        AnomalyKind.SECURITY_DOWNGRADE,
                        self.name,
                        item,
                        reason,
                        expected={attribute: learned},
                        observed=observed,
                        level="high" if weaker or deprecated else "low",
                        event=event,
                    )
                )
            elif attribute in ("token", "user"):
                what = "identity token type" if attribute == "token" else "user name"
                found.append(
                    Deviation(
                        AnomalyKind.NEW_IDENTITY,
                        self.name,
                        item,
                        f"{conn.client_ip} activated a session at {where} with {what} {value}; "
                        f"learned: {join_limited(learned)}",
                        expected={attribute: learned},
                        observed=observed,
                        event=event,
                    )
                )
            else:
                server_cert = attribute == "server_cert"
                whose = "the server" if server_cert else f"client {attribute.partition(':')[2]}"
                changed = server_cert or bool(learned)
                found.append(
                    Deviation(
                        AnomalyKind.CERTIFICATE_CHANGE if changed else AnomalyKind.NEW_IDENTITY,
                        self.name,
                        item,
                        f"certificate of {whose} at {where} has thumbprint {value}; learned: "
                        f"{join_limited(learned)}",
                        expected={attribute: learned},
                        observed=observed,
                        event=event,
                    )
                )
        return found

    def accept(self, item: Mapping[str, Any]) -> bool:
        if "station" in item:
            key = (str(item.get("plc", "")), STATION, str(item["station"]))
            self.activities.setdefault(key, set()).add(str(item.get("activity", "")))
        elif {"endpoint", "attribute", "value"} <= item.keys():
            key = (str(item["endpoint"]), str(item["attribute"]), str(item["value"]))
        else:
            return False
        if key not in self.table:
            self.table.put(key, Seen.accepted())
        return True

    def stats(self) -> dict[str, Any]:
        return {"facts": len(self.table), "dropped": self.table.dropped}
