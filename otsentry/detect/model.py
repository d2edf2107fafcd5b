"""What the rule engine hands to the alert stage: compiled rules and their matches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from otsentry.model import Event, Technique

#: level → (event.severity, event.risk_score)
LEVELS: Mapping[str, tuple[int, float]] = {
    "informational": (21, 10.0),
    "low": (21, 21.0),
    "medium": (47, 47.0),
    "high": (73, 73.0),
    "critical": (99, 99.0),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated, compiled rule (see docs/rules.md)."""

    id: str
    rev: int
    title: str
    status: str
    level: str
    protocol: str  # logsource.protocol
    description: str = ""
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    techniques: tuple[Technique, ...] = ()
    attack_version: str = ""
    falsepositives: tuple[str, ...] = ()
    author: str = ""
    date: str = ""
    source: str = ""  # file the rule came from
    message: str | None = None  # template
    reason: str | None = None  # template
    #: the raw mapping as loaded (fixtures included), for ``rules list`` and ``rules test``
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def severity(self) -> int:
        """ECS ``event.severity`` (21/47/73/99)."""
        return LEVELS[self.level][0]

    @property
    def risk_score(self) -> float:
        """ECS ``event.risk_score``."""
        return LEVELS[self.level][1]


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule held for an event (for a correlation rule: the event that crossed the threshold).

    ``count`` is 1 for a plain rule and the count reached for a correlation; ``group`` holds the
    correlation's group-by values; ``message`` and ``reason`` are rendered from the templates.
    """

    rule: Rule
    event: Event
    ts: int
    message: str
    reason: str
    count: int = 1
    group: tuple[tuple[str, Any], ...] = ()


#: a compiled predicate over an event
Predicate = Callable[[Event], bool]
