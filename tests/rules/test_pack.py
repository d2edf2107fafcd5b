"""The built-in rule pack: it loads, its fixtures hold, its anomaly catalogue is complete."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from otsentry.detect.compile import CompiledRule
from otsentry.detect.engine import fixture_results
from otsentry.detect.loader import builtin_rule_paths, collect_rules
from otsentry.rules import make_catalog
from tests.conftest import ROOT

RULES_DIR = ROOT / "rules"
DISSECTORS = ROOT / "dissectors"
PREFIXES = ("modbus", "s7comm", "s7comm_plus", "opcua")
#: a quoted anomaly id in dissector source: "modbus.invalid_length", 's7comm.non_s7_payload'
_ANY = "|".join(PREFIXES)
QUOTED_ID = re.compile(rf"""["']((?:{_ANY})\.[a-z0-9_]+)["']""")
#: an anomaly id put together at run time: f"modbus.{x}", "opcua." + name, "s7comm.%s"
BUILT_ID = re.compile(
    rf"""(f["'](?:{_ANY})\.\{{)|(["'](?:{_ANY})\.["']\s*[+%])|(["'](?:{_ANY})\.%)"""
)


def _pack() -> list[CompiledRule]:
    rules, errors = collect_rules()
    assert not errors, "\n".join(map(str, errors))
    return rules


PACK = _pack()
BY_ID = {c.rule.id: c for c in PACK}


def test_every_rule_file_loads_and_ids_are_unique() -> None:
    files = builtin_rule_paths()
    assert len(files) == len(PACK) >= 38
    assert len(BY_ID) == len(PACK)
    assert all(Path(p).resolve().is_relative_to(RULES_DIR.resolve()) for p in files)


@pytest.mark.parametrize("rule_id", sorted(BY_ID))
def test_rule_metadata(rule_id: str) -> None:
    rule = BY_ID[rule_id].rule
    raw: dict[str, Any] = dict(rule.raw)
    assert re.fullmatch(r"OTS-[A-Z0-9]+(-[A-Z0-9]+)*", rule.id)
    assert rule.author == "otsentry"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", rule.date)
    assert rule.status in ("stable", "test", "experimental")
    assert len(rule.description) >= 200, "say what it means for a plant and what to check"
    assert rule.falsepositives
    # every tag resolves to an ATT&CK for ICS technique, whose page is referenced
    assert rule.tags and len(rule.techniques) == len(rule.tags)
    assert rule.attack_version == "18.0"
    for technique in rule.techniques:
        assert technique.name and technique.tactic_ids
        assert f"https://attack.mitre.org/techniques/{technique.id}/" in rule.references
    fixtures = raw["fixtures"]
    assert fixtures.get("match") and fixtures.get("nomatch")
    correlation = raw.get("correlation")
    if correlation is not None:
        # a threshold rule explains its threshold
        (bound,) = correlation["condition"].values()
        assert str(bound) in rule.description, "the description must give and defend the threshold"


@pytest.mark.parametrize("rule_id", sorted(BY_ID))
def test_fixtures_hold(rule_id: str) -> None:
    results = fixture_results(BY_ID[rule_id])
    failed = [str(r) for r in results if not r.passed]
    assert results and not failed, failed


def test_fixture_check_can_fail() -> None:
    """The fixture runner is no rubber stamp: a rule's match fixtures fail as nomatch ones."""
    compiled = BY_ID["OTS-MODBUS-FORCE-LISTEN-ONLY"]
    fixtures = compiled.rule.raw["fixtures"]
    swapped_raw = {
        **compiled.rule.raw,
        "fixtures": {"match": fixtures["nomatch"], "nomatch": fixtures["match"]},
    }
    swapped = CompiledRule(
        rule=type(compiled.rule)(**{**_fields(compiled.rule), "raw": swapped_raw}),
        predicate=compiled.predicate,
        actions=compiled.actions,
        pins=compiled.pins,
        correlation=compiled.correlation,
        message=compiled.message,
        reason=compiled.reason,
    )
    assert not any(r.passed for r in fixture_results(swapped))


def _fields(rule: Any) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in rule.__slots__}


def test_levels_follow_triage() -> None:
    """Run-state and program changes high or critical; protocol violations low."""
    level = {rid: c.rule.level for rid, c in BY_ID.items()}
    for rid in ("OTS-S7-PLC-STOP", "OTS-MODBUS-UMAS-PLC-STOP"):
        assert level[rid] == "critical"
    for rid in (
        "OTS-S7-PROGRAM-DOWNLOAD",
        "OTS-MODBUS-UMAS-PROGRAM-DOWNLOAD",
        "OTS-MODBUS-FORCE-LISTEN-ONLY",
    ):
        assert level[rid] == "high"
    for rid in (
        "OTS-MODBUS-PROTOCOL-VIOLATION",
        "OTS-S7-PROTOCOL-VIOLATION",
        "OTS-S7PLUS-PROTOCOL-VIOLATION",
        "OTS-OPCUA-PROTOCOL-VIOLATION",
        "OTS-S7-SZL-IDENTITY-READ",
    ):
        assert level[rid] == "low"


# -- the anomaly catalogue ---------------------------------------------------------------------


def _source_ids() -> tuple[set[str], list[str]]:
    """Anomaly ids quoted in the dissectors (catalogues left out), and any built at run time."""
    quoted: set[str] = set()
    built: list[str] = []
    for path in sorted(DISSECTORS.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name == "constants.py":
            text = text.split("ANOMALIES:", 1)[0]
        quoted.update(QUOTED_ID.findall(text))
        built.extend(f"{path.relative_to(ROOT)}: {m.group(0)}" for m in BUILT_ID.finditer(text))
    return quoted, built


def test_anomaly_catalogue_equals_the_ids_in_the_source() -> None:
    quoted, built = _source_ids()
    assert not built, f"anomaly ids built at run time cannot be catalogued: {built}"
    catalogue = make_catalog.anomaly_catalogue()
    assert set(catalogue) == quoted, (
        f"not catalogued: {sorted(quoted - set(catalogue))}; "
        f"catalogued but never emitted: {sorted(set(catalogue) - quoted)}"
    )
    assert all(meaning.strip() for meaning in catalogue.values())


def test_the_source_scan_finds_ids() -> None:
    """The scan would see a new id: it finds the ones we know, digits included."""
    quoted, _ = _source_ids()
    assert {"modbus.invalid_length", "s7comm.non_s7_payload", "s7comm_plus.truncated"} <= quoted
    assert BUILT_ID.search('x = f"modbus.{name}"') and BUILT_ID.search('"opcua." + kind')


@pytest.mark.parametrize("anomaly", sorted(make_catalog.anomaly_catalogue()))
def test_every_anomaly_id_raises_a_fixture_tested_rule(anomaly: str) -> None:
    hits = make_catalog.rules_for_anomaly(anomaly, PACK)
    assert hits, f"no rule matches {anomaly}"
    in_fixtures = [
        rid
        for rid in hits
        if any(_mentions(f, anomaly) for f in BY_ID[rid].rule.raw["fixtures"]["match"])
    ]
    assert in_fixtures, f"{anomaly}: matched by {hits}, but none has a match fixture carrying it"


def _mentions(fixture: Any, anomaly: str) -> bool:
    items = fixture if isinstance(fixture, list) else [fixture]
    return any(anomaly in (item.get("anomalies") or ()) for item in items)


# -- the generated documentation ---------------------------------------------------------------


def test_exercise_table_covers_the_pack() -> None:
    table = make_catalog.load_exercised()
    assert set(table) == set(BY_ID)
    for rid, entry in table.items():
        capture = entry.get("capture")
        if capture is None or not capture.startswith("lab/"):
            assert entry.get("why_not_lab"), f"{rid}: say why no lab capture raises it"
        if capture is not None:
            assert capture.startswith(("lab/", "shared/")), rid


def test_rule_pack_doc_is_up_to_date() -> None:
    assert make_catalog.main(["--check"]) == 0, "run python rules/make_catalog.py"
    text = (ROOT / "docs" / "rule-pack.md").read_text(encoding="utf-8")
    for rid in BY_ID:
        assert f"`{rid}`" in text
