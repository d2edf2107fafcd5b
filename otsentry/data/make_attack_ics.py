"""Build ``attack_ics.json`` (ATT&CK for ICS technique id → name and tactics) from MITRE's STIX data.

Usage: ``python otsentry/data/make_attack_ics.py ics-attack-18.0.json [-o otsentry/data/attack_ics.json]``

The input is an ATT&CK for ICS STIX 2.1 bundle as MITRE publishes it (``ics-attack/ics-attack-X.Y.json``
in the ``mitre-attack/attack-stix-data`` repository). Revoked and deprecated techniques are left out
of ``techniques`` and listed under ``deprecated``, so a rule naming one is told why it is refused.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_KILL_CHAIN = "mitre-ics-attack"


def _external_id(obj: Mapping[str, Any]) -> str | None:
    for ref in obj.get("external_references", ()):
        if ref.get("source_name") in ("mitre-attack", "mitre-ics-attack") and ref.get(
            "external_id"
        ):
            return str(ref["external_id"])
    return None


def _retired(obj: Mapping[str, Any]) -> bool:
    return bool(obj.get("revoked")) or bool(obj.get("x_mitre_deprecated"))


def build(objects: Iterable[Mapping[str, Any]], source: str) -> dict[str, Any]:
    """The data file's content from the bundle's objects."""
    objects = list(objects)
    version = next(
        (str(o.get("x_mitre_version")) for o in objects if o.get("type") == "x-mitre-collection"),
        "",
    )
    tactics: dict[str, dict[str, str]] = {}
    by_shortname: dict[str, str] = {}
    for obj in objects:
        if obj.get("type") != "x-mitre-tactic" or _retired(obj):
            continue
        tid = _external_id(obj)
        if tid is None:
            continue
        tactics[tid] = {"name": str(obj["name"]), "shortname": str(obj["x_mitre_shortname"])}
        by_shortname[str(obj["x_mitre_shortname"])] = tid
    order = next(
        (
            [r for r in o.get("tactic_refs", ())]
            for o in objects
            if o.get("type") == "x-mitre-matrix"
        ),
        [],
    )
    ref_to_tactic = {
        str(o["id"]): _external_id(o) or "" for o in objects if o.get("type") == "x-mitre-tactic"
    }
    ordered = [ref_to_tactic[r] for r in order if ref_to_tactic.get(r) in tactics]
    ordered += sorted(t for t in tactics if t not in ordered)
    techniques: dict[str, dict[str, Any]] = {}
    deprecated: dict[str, str] = {}
    for obj in objects:
        if obj.get("type") != "attack-pattern":
            continue
        tid = _external_id(obj)
        if tid is None:
            continue
        if _retired(obj):
            deprecated[tid] = str(obj["name"])
            continue
        phases = [
            p["phase_name"]
            for p in obj.get("kill_chain_phases", ())
            if p.get("kill_chain_name") == _KILL_CHAIN
        ]
        techniques[tid] = {
            "name": str(obj["name"]),
            "tactics": [by_shortname[p] for p in phases if p in by_shortname],
        }
    return {
        "source": source,
        "domain": "ics-attack",
        "attack_version": version,
        "tactics": {t: tactics[t] for t in ordered},
        "techniques": dict(sorted(techniques.items())),
        "deprecated": dict(sorted(deprecated.items())),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="ATT&CK for ICS STIX 2.1 bundle (JSON)")
    parser.add_argument(
        "-o", "--out", type=Path, default=Path(__file__).with_name("attack_ics.json")
    )
    parser.add_argument(
        "--source", default=None, help="where the bundle came from (recorded in the output)"
    )
    args = parser.parse_args(argv)
    bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
    data = build(bundle["objects"], args.source or args.bundle.name)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"{args.out}: ATT&CK {data['attack_version']}, {len(data['techniques'])} techniques, "
        f"{len(data['tactics'])} tactics, {len(data['deprecated'])} deprecated"
    )


if __name__ == "__main__":
    main()
