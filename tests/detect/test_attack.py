"""ATT&CK for ICS as data: the bundled mapping, tag resolution, the builder script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otsentry.data.make_attack_ics import build, main
from otsentry.detect.attack import AttackError, attack_ics, resolve_tags
from otsentry.model import Technique


def test_bundled_mapping_is_attack_for_ics_18() -> None:
    data = attack_ics()
    assert data.version == "18.0"
    assert len(data.techniques) == 83
    assert len(data.tactics) == 12
    assert data.technique("t0814") == Technique(
        "T0814", "Denial of Service", ("TA0107",), ("Inhibit Response Function",)
    )
    assert data.technique("T0855") == Technique(
        "T0855", "Unauthorized Command Message", ("TA0106",), ("Impair Process Control",)
    )
    assert data.technique("T0858") == Technique(
        "T0858", "Change Operating Mode", ("TA0104", "TA0103"), ("Execution", "Evasion")
    )
    assert data.tactics["TA0100"] == "Collection"
    assert "T0850" in data.deprecated and data.technique("T0850") is None
    for technique in data.techniques.values():
        assert technique.tactic_ids, technique
        assert all(t in data.tactics for t in technique.tactic_ids)


def test_tags_resolve_to_techniques() -> None:
    techniques, version = resolve_tags(
        ["attack.t0843", "ics", "attack.ta0109", "attack.lateral-movement", "attack.t0843"]
    )
    assert [t.id for t in techniques] == ["T0843"]
    assert techniques[0].name == "Program Download"
    assert version == "18.0"


@pytest.mark.parametrize(
    ("tag", "fragment"),
    [
        ("attack.t0999", "unknown ATT&CK for ICS technique T0999"),
        ("attack.t0850", "T0850 (Role Identification) is deprecated in ATT&CK for ICS 18.0"),
        ("attack.t1059", "unknown ATT&CK for ICS technique T1059"),
        ("attack.ta0001", "names no ATT&CK for ICS technique or tactic"),
        ("attack.credential-access", "names no ATT&CK for ICS technique or tactic"),
        ("attack.t814", "names no ATT&CK for ICS technique or tactic"),
    ],
)
def test_unknown_tags_are_errors(tag: str, fragment: str) -> None:
    with pytest.raises(AttackError) as err:
        resolve_tags(["ics", tag])
    assert err.value.index == 1
    assert fragment in str(err.value)


def test_builder_reads_a_stix_bundle(tmp_path: Path) -> None:
    def ref(tid: str) -> list[dict[str, str]]:
        return [{"source_name": "mitre-attack", "external_id": tid}]

    objects = [
        {"type": "x-mitre-collection", "x_mitre_version": "99.1"},
        {
            "type": "x-mitre-tactic",
            "id": "x-mitre-tactic--b",
            "name": "Impact",
            "x_mitre_shortname": "impact",
            "external_references": ref("TA0105"),
        },
        {
            "type": "x-mitre-tactic",
            "id": "x-mitre-tactic--a",
            "name": "Discovery",
            "x_mitre_shortname": "discovery",
            "external_references": ref("TA0102"),
        },
        {"type": "x-mitre-matrix", "tactic_refs": ["x-mitre-tactic--b", "x-mitre-tactic--a"]},
        {
            "type": "attack-pattern",
            "name": "Two Tactics",
            "external_references": ref("T0001"),
            "kill_chain_phases": [
                {"kill_chain_name": "mitre-ics-attack", "phase_name": "discovery"},
                {"kill_chain_name": "mitre-attack", "phase_name": "impact"},
                {"kill_chain_name": "mitre-ics-attack", "phase_name": "impact"},
            ],
        },
        {
            "type": "attack-pattern",
            "name": "Gone",
            "revoked": True,
            "external_references": ref("T0002"),
        },
        {
            "type": "attack-pattern",
            "name": "Old",
            "x_mitre_deprecated": True,
            "external_references": ref("T0003"),
        },
        {"type": "relationship", "source_ref": "x", "target_ref": "y"},
    ]
    data = build(objects, "test")
    assert data["attack_version"] == "99.1"
    assert list(data["tactics"]) == ["TA0105", "TA0102"]
    assert data["techniques"] == {"T0001": {"name": "Two Tactics", "tactics": ["TA0102", "TA0105"]}}
    assert data["deprecated"] == {"T0002": "Gone", "T0003": "Old"}
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"type": "bundle", "objects": objects}))
    out = tmp_path / "out.json"
    main([str(bundle), "-o", str(out)])
    assert json.loads(out.read_text())["source"] == "bundle.json"
