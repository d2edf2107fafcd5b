"""ATT&CK for ICS: technique ids → ``Technique`` (name, tactic ids and names), kept as data.

The mapping lives in ``otsentry/data/attack_ics.json`` with the ATT&CK version it was made from
(``otsentry/data/make_attack_ics.py`` builds it from MITRE's STIX bundle). Rule tags name
techniques as ``attack.t0814`` (or ``attack.tNNNN.NNN``); tactics may be tagged too, by id
(``attack.ta0107``) or short name (``attack.inhibit-response-function``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Final

from otsentry.model import Technique

__all__ = ["AttackError", "AttackIcs", "attack_ics", "resolve_tags"]

_TECHNIQUE_TAG: Final = re.compile(r"attack\.(t\d{4}(?:\.\d{3})?)")
_TACTIC_TAG: Final = re.compile(r"attack\.(ta\d{4})")


class AttackError(ValueError):
    """A tag naming no current ATT&CK for ICS technique or tactic; ``index`` is the tag's."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(problem)
        self.index = index


@dataclass(frozen=True, slots=True)
class AttackIcs:
    """The ATT&CK for ICS mapping of one ATT&CK version."""

    version: str
    techniques: Mapping[str, Technique]
    tactics: Mapping[str, str]  # TA0107 → Inhibit Response Function
    tactic_shortnames: Mapping[str, str]  # inhibit-response-function → TA0107
    deprecated: Mapping[str, str]  # T0850 → Role Identification

    def technique(self, technique_id: str) -> Technique | None:
        """The technique with this id (``T0814``, any case), or None."""
        return self.techniques.get(technique_id.upper())


def _load(raw: Mapping[str, Any]) -> AttackIcs:
    tactics = {tid: str(t["name"]) for tid, t in raw["tactics"].items()}
    shortnames = {str(t["shortname"]): tid for tid, t in raw["tactics"].items()}
    techniques = {
        tid: Technique(
            id=tid,
            name=str(t["name"]),
            tactic_ids=tuple(t["tactics"]),
            tactic_names=tuple(tactics[x] for x in t["tactics"]),
        )
        for tid, t in raw["techniques"].items()
    }
    return AttackIcs(
        version=str(raw["attack_version"]),
        techniques=techniques,
        tactics=tactics,
        tactic_shortnames=shortnames,
        deprecated=dict(raw.get("deprecated", {})),
    )


@cache
def attack_ics() -> AttackIcs:
    """The bundled mapping (``otsentry/data/attack_ics.json``), loaded once."""
    text = files("otsentry").joinpath("data", "attack_ics.json").read_text(encoding="utf-8")
    return _load(json.loads(text))


def resolve_tags(tags: Iterable[str]) -> tuple[tuple[Technique, ...], str]:
    """The techniques a rule's tags name, and the ATT&CK version; AttackError on a bad tag.

    Tags outside the ``attack.`` namespace are left alone.
    """
    data = attack_ics()
    found: list[Technique] = []
    for index, tag in enumerate(tags):
        if not tag.startswith("attack."):
            continue
        m = _TECHNIQUE_TAG.fullmatch(tag)
        if m:
            tid = m.group(1).upper()
            technique = data.technique(tid)
            if technique is None:
                if tid in data.deprecated:
                    raise AttackError(
                        index,
                        f"{tid} ({data.deprecated[tid]}) is deprecated in ATT&CK for ICS "
                        f"{data.version}",
                    )
                raise AttackError(
                    index, f"unknown ATT&CK for ICS technique {tid} (ATT&CK {data.version})"
                )
            if technique not in found:
                found.append(technique)
            continue
        m = _TACTIC_TAG.fullmatch(tag)
        if m and m.group(1).upper() in data.tactics:
            continue
        if tag.removeprefix("attack.") in data.tactic_shortnames:
            continue
        raise AttackError(
            index,
            f"{tag!r} names no ATT&CK for ICS technique or tactic "
            f"(attack.tNNNN, attack.taNNNN or a tactic such as attack.impair-process-control)",
        )
    return tuple(found), data.version
