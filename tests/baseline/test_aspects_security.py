"""Aspect ``security``: OPC UA endpoint security and S7 engineering stations."""

from __future__ import annotations

from typing import Any

from otsentry.baseline.aspect import AnomalyKind
from otsentry.baseline.security import SecurityAspect, facts_of
from otsentry.model import Event
from tests.baseline.conftest import events_of


def learned(events: list[Event]) -> SecurityAspect:
    aspect = SecurityAspect()
    for e in events:
        if e.envelope.protocol in SecurityAspect.protocols:
            aspect.learn(e)
    return aspect


def with_channel(event: Event, **channel: Any) -> Event:
    fields = {**event.fields, "channel": {**event.fields["channel"], **channel}}
    return Event(event.envelope, event.action, fields)


def test_facts_of_the_normal_captures(normal_events: list[Event]) -> None:
    data = learned(normal_events).to_data()
    assert [(f["endpoint"], f["attribute"], f["value"]) for f in data["opcua_endpoints"]] == [
        ("10.10.30.7:4840", "mode", "None"),
        ("10.10.30.7:4840", "policy", "None"),
        ("10.10.30.7:4840", "token", "anonymous"),
    ]
    assert SecurityAspect.from_data(data).to_data() == data


def test_weaker_deprecated_and_merely_other_policies() -> None:
    secure = [e for e in events_of("opcua_secure.pcap") if e.envelope.protocol == "opcua"]
    aspect = learned(secure)
    learned_policies = {v for w, a, v in aspect.table.items if a == "policy"}
    assert learned_policies and "None" not in learned_policies
    event = next(e for e in secure if isinstance(e.fields.get("channel"), dict))
    devs = aspect.check(with_channel(event, security_policy="None", security_mode="None"))
    kinds = {(d.item["attribute"], d.effective_level) for d in devs}
    assert ("policy", "high") in kinds and ("mode", "high") in kinds
    assert all(d.kind is AnomalyKind.SECURITY_DOWNGRADE and "(weaker)" in d.reason for d in devs)

    normal = learned(events_of("opcua_normal.pcap"))
    event = next(e for e in events_of("opcua_normal.pcap") if e.action == "opcua-read")
    [dev] = normal.check(with_channel(event, security_policy="Basic256Sha256"))
    assert dev.effective_level == "low"  # another policy, not a weaker one
    [dev] = normal.check(with_channel(event, security_policy="Basic256"))
    assert dev.effective_level == "high" and "Basic256 is deprecated" in dev.reason


def test_certificates_and_identities() -> None:
    auth = [e for e in events_of("opcua_auth.pcap") if e.envelope.protocol == "opcua"]
    aspect = learned(auth)
    event = next(e for e in auth if "server_certificate_thumbprint" in e.fields.get("channel", {}))
    assert aspect.check(event) == []
    [dev] = aspect.check(with_channel(event, server_certificate_thumbprint="ab" * 20))
    assert dev.kind is AnomalyKind.CERTIFICATE_CHANGE
    assert dev.reason.startswith("certificate of the server at 10.10.30.7:4840 has thumbprint abab")
    assert "83534a1499bb63aca2d0f92b33379e2021486cfa" in dev.reason
    [dev] = aspect.check(with_channel(event, client_certificate_thumbprint="cd" * 20))
    assert dev.kind is AnomalyKind.CERTIFICATE_CHANGE  # the client had another certificate
    activate = next(e for e in auth if e.action == "opcua-activate-session")
    changed = Event(activate.envelope, activate.action, {**activate.fields, "user_name": "admin"})
    [dev] = aspect.check(changed)
    assert dev.kind is AnomalyKind.NEW_IDENTITY and dev.effective_techniques == ("T0859", "T0812")
    assert "user name admin; learned: operator" in dev.reason


def test_engineering_stations() -> None:
    engineering = events_of("s7comm_engineering.pcap")
    facts = {f for e in engineering for f in facts_of(e)}
    assert {
        (("10.10.30.6", "engineering_station", "10.10.30.20"), "pg_connection"),
        (("10.10.30.6", "engineering_station", "10.10.30.20"), "download"),
        (("10.10.30.6", "engineering_station", "10.10.30.20"), "upload"),
    } <= facts
    assert not any(f[0][2] == "10.10.30.10" for f in facts)  # the HMI's "op" connection
    aspect = learned(engineering)
    [station] = aspect.to_data()["s7_engineering_stations"]
    assert station["activities"] == ["download", "pg_connection", "upload"]
    attack = [e for e in events_of("s7comm_attacks.pcap") if facts_of(e)]
    [dev] = {d.item["station"]: d for e in attack for d in aspect.check(e)}.values()
    assert dev.item["station"] == "10.10.30.66" and dev.effective_techniques == ("T0848", "T0886")
    assert dev.reason == (
        "10.10.30.66 set up an engineering session with 10.10.30.6 (pg_connection); "
        "the PLC's engineering stations while learning: 10.10.30.20"
    )
    assert aspect.accept(dev.item)
    assert all(aspect.check(e) == [] for e in attack)
