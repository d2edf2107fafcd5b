"""The contract between the baseline's learner, its detector and the aspects that learn.

An **aspect** learns one part of a segment's normal communication (its assets, its links, the
Modbus functions each link uses, the registers' values…) and later tells what in an event
departs from it. The learner keeps one instance of every registered aspect per segment and feeds
each the segment's events; the store writes each instance's ``to_data()`` under the aspect's
``name`` in ``DIR/<segment>.yaml``; the detector rebuilds them with ``from_data`` and asks
``check(event)`` for every event of the segment (and ``tick(ts)`` now and then, ``finish(ts)`` at
the end of a run), turning each ``Deviation`` into an anomaly alert.

Events (``otsentry.model.Event``): protocol events (``modbus``, ``s7comm``, ``s7comm_plus``,
``opcua``; ``fields`` as written under ``otsentry.<protocol>`` in events.ndjson) and network events
(``otsentry.netevents``: ``network-flow-start`` / ``network-flow-end`` for every TCP/UDP flow, ARP
``network-ip-mac-change`` / ``network-arp-conflict``). Times are packet times in ns.

Rules every aspect keeps:
- ``to_data()`` returns plain YAML data (dict / list / str / int / float / bool / None), sorted so
  that the same input gives the same bytes and ``git diff`` of two baselines reads like a change
  log; never a wall-clock time. Per item: ``first_seen`` / ``last_seen`` (ISO time, see
  ``iso``) and ``count`` where it means something.
- ``from_data(data)`` accepts what ``to_data`` wrote; a problem raises ``AspectDataError`` naming
  the key (the store adds the file and line).
- Bounded state: every table has a cap; what does not fit is counted (``dropped``) and written.
- ``check`` must be cheap for the common case (a dict lookup of a known item) and must not learn:
  a detector run leaves the baseline as it was. It returns a deviation for every event that
  departs; the detector reports each distinct ``item`` once per run (a bounded ``ReportedOnce``
  set) and folds the repeats into the alert's count.
- ``accept(item)`` folds back what a ``Deviation.item`` described ("learn this"): afterwards
  ``check`` no longer reports it. Returns False when the item is not this aspect's to fold.

Adding an aspect (e.g. value models, polling periods, an ML model):
1. subclass ``Aspect`` in a module of ``otsentry/baseline/`` and give it a unique ``name``;
2. add the class to ``ASPECTS`` in ``otsentry/baseline/registry.py`` (one import, one entry).
An aspect that keeps a side file (the ML model: ``DIR/<segment>.model.joblib``) overrides
``save_side`` / ``load_side``; the store calls them with the path stem ``DIR/<segment>``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from otsentry.ecs import iso_time
from otsentry.model import Event

__all__ = [
    "KINDS",
    "MAPPINGS",
    "AnomalyKind",
    "Aspect",
    "AspectContext",
    "AspectDataError",
    "Deviation",
    "KindInfo",
    "ReportedOnce",
    "iso",
    "rule_id",
]


#: ``isinstance(x, MAPPINGS)``: whether ``x`` is a Mapping, a dict (every event's records)
#: found by the exact type test before the ``Mapping`` ABC's slower one
MAPPINGS: Final = (dict, Mapping)


class AnomalyKind(StrEnum):
    """What a deviation is (``otsentry.anomaly.kind``)."""

    NEW_ASSET = "new_asset"
    NEW_LINK = "new_link"
    NEW_FUNCTION = "new_function"
    NEW_ADDRESS_RANGE = "new_address_range"
    NEW_WRITER = "new_writer"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    PERIOD_CHANGE = "period_change"
    CHANNEL_SILENT = "channel_silent"
    SECURITY_DOWNGRADE = "security_downgrade"
    NEW_IDENTITY = "new_identity"
    CERTIFICATE_CHANGE = "certificate_change"
    NEW_METHOD = "new_method"
    VOLUME_CHANGE = "volume_change"
    MODEL_OUTLIER = "model_outlier"


@dataclass(frozen=True, slots=True)
class KindInfo:
    """A kind's defaults: alert title, ATT&CK for ICS technique ids, level (``LEVELS`` key)."""

    title: str
    techniques: tuple[str, ...]
    level: str


#: kind → title, techniques (../shared/DETECTIONS.md rows typed B) and default level; a deviation
#: may raise or lower the level and name other techniques (a write outranks a read)
KINDS: Mapping[AnomalyKind, KindInfo] = {
    AnomalyKind.NEW_ASSET: KindInfo("New asset in the segment", ("T0864", "T0848"), "medium"),
    AnomalyKind.NEW_LINK: KindInfo("New communication link", ("T0886", "T0885"), "medium"),
    AnomalyKind.NEW_FUNCTION: KindInfo("New function on a link", ("T0855",), "high"),
    AnomalyKind.NEW_ADDRESS_RANGE: KindInfo("Address outside learned ranges", ("T0861",), "medium"),
    AnomalyKind.NEW_WRITER: KindInfo(
        "Write from a host that never wrote", ("T0855", "T0848"), "high"
    ),
    AnomalyKind.VALUE_OUT_OF_RANGE: KindInfo(
        "Value out of learned model", ("T0836", "T0831"), "high"
    ),
    AnomalyKind.PERIOD_CHANGE: KindInfo(
        "Polling period changed", ("T0830", "T0856", "T0831"), "medium"
    ),
    AnomalyKind.CHANNEL_SILENT: KindInfo(
        "Periodic channel went silent", ("T0814", "T0803"), "medium"
    ),
    AnomalyKind.SECURITY_DOWNGRADE: KindInfo("Weaker security than learned", ("T0830",), "high"),
    AnomalyKind.NEW_IDENTITY: KindInfo("New identity", ("T0859", "T0812"), "high"),
    AnomalyKind.CERTIFICATE_CHANGE: KindInfo("Certificate changed", ("T0830", "T0849"), "high"),
    AnomalyKind.NEW_METHOD: KindInfo("New method call", ("T0871", "T0855"), "high"),
    AnomalyKind.VOLUME_CHANGE: KindInfo("Traffic volume changed", ("T0814",), "medium"),
    AnomalyKind.MODEL_OUTLIER: KindInfo("Traffic unlike the learned model", (), "medium"),
}


def rule_id(kind: AnomalyKind) -> str:
    """The alert's ``rule.id`` for a kind: ``new_writer`` → ``OTS-ANOM-NEW-WRITER``."""
    return "OTS-ANOM-" + kind.value.upper().replace("_", "-")


@dataclass(frozen=True, slots=True)
class Deviation:
    """One departure from the baseline, found by an aspect in an event (or at a tick).

    ``item`` is plain data naming what was unseen, enough for the aspect's ``accept`` to fold it
    back (it goes to the alert as ``otsentry.anomaly.item``); ``aspect`` is the aspect's
    ``name``. ``reason`` says in plain words what the baseline expected and what was observed
    ("unit 1 holding registers 0-9 were written by 10.0.0.5 only; 10.0.0.66 wrote 500-509");
    ``expected`` / ``observed`` are the same as data. ``level`` and ``techniques`` override the
    kind's defaults (None: the kind's). ``score`` / ``model`` / ``features`` are for model-based
    aspects. ``event`` is the event that showed it (None for a silence found at a tick).
    """

    kind: AnomalyKind
    aspect: str
    item: Mapping[str, Any]
    reason: str
    expected: Any = None
    observed: Any = None
    level: str | None = None
    techniques: tuple[str, ...] | None = None
    score: float | None = None
    model: str | None = None
    features: Mapping[str, Any] | None = None
    event: Event | None = None
    #: client and server the deviation concerns when there is no event (aggregation key)
    hosts: tuple[str, str] = ("", "")

    @property
    def info(self) -> KindInfo:
        """The kind's defaults."""
        return KINDS[self.kind]

    @property
    def effective_level(self) -> str:
        """``level`` or the kind's default."""
        return self.level or KINDS[self.kind].level

    @property
    def effective_techniques(self) -> tuple[str, ...]:
        """``techniques`` or the kind's default."""
        return self.techniques if self.techniques is not None else KINDS[self.kind].techniques


class AspectDataError(ValueError):
    """Baseline data an aspect cannot read; ``key`` is the dotted path below the aspect."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def iso(ts: int) -> str:
    """Packet time (ns) as the ISO text baseline files use."""
    return iso_time(ts)


class ReportedOnce:
    """A bounded set of keys already reported in this detector run (LRU; evictions counted)."""

    __slots__ = ("_keys", "cap", "evicted")

    def __init__(self, cap: int = 65_536) -> None:
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self.cap = cap
        self.evicted = 0

    def first(self, key: Hashable) -> bool:
        """True the first time ``key`` is seen (and remembers it)."""
        keys = self._keys
        if key in keys:
            keys.move_to_end(key)
            return False
        keys[key] = None
        if len(keys) > self.cap:
            keys.popitem(last=False)
            self.evicted += 1
        return True

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(slots=True)
class AspectContext:
    """What the learner knows about the segment an aspect belongs to."""

    segment: str = ""
    #: configuration knobs an aspect may read (``baseline.<aspect name>`` in the config), as data
    options: Mapping[str, Any] = field(default_factory=dict)


class Aspect:
    """Base class of every aspect: one part of one segment's baseline (see the module doc).

    Subclasses set ``name`` (the key in the baseline file) and ``protocols`` (the
    ``envelope.protocol`` values they want, None for every event: the learner and detector
    route only those events to them), and implement ``learn``, ``check``, ``to_data`` and
    ``from_data``; ``accept``, ``tick``, ``end_learning``, ``finish``, ``stats``,
    ``save_side`` and ``load_side`` have harmless defaults.
    """

    #: the aspect's key in the baseline file (``assets``, ``links``, ``values``…)
    name: ClassVar[str] = ""
    #: protocols whose events the aspect wants (``modbus``, ``network``…); None: every event
    protocols: ClassVar[frozenset[str] | None] = None
    #: the packet time from which ``tick`` may find something: the detector ticks the aspect
    #: only from then on. An aspect that keeps it exact (updated whenever its state changes)
    #: saves those calls; left at -inf, ``tick`` is called at every tick
    due: float = -math.inf

    def __init__(self, context: AspectContext | None = None) -> None:
        self.context = context if context is not None else AspectContext()

    # -- learning ---------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        """Fold a normal event into the baseline."""
        raise NotImplementedError

    def to_data(self) -> dict[str, Any]:
        """The learned baseline as plain, sorted YAML data."""
        raise NotImplementedError

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        """Rebuild from ``to_data``'s output (raise ``AspectDataError`` on bad data)."""
        raise NotImplementedError

    # -- detection --------------------------------------------------------------------------
    def check(self, event: Event) -> list[Deviation]:
        """What in ``event`` departs from the baseline (an empty list almost always)."""
        raise NotImplementedError

    def tick(self, ts: int) -> list[Deviation]:
        """Time-based checks at packet time ``ts`` (silence); called every few seconds."""
        return []

    def end_learning(self, ts: int) -> None:
        """Learning ended at packet time ``ts``: settle statistics before ``to_data``."""

    def finish(self, ts: int) -> list[Deviation]:
        """The end of a detector run at packet time ``ts``."""
        return []

    def accept(self, item: Mapping[str, Any]) -> bool:
        """Fold back a deviation's ``item``; False when it is not this aspect's."""
        return False

    def stats(self) -> dict[str, Any]:
        """Counters for ``stats.json`` (items, dropped, reported…)."""
        return {}

    # -- side files -------------------------------------------------------------------------
    def save_side(self, stem: Path) -> None:
        """Write any side file next to the baseline (``stem`` is ``DIR/<segment>``)."""

    def load_side(self, stem: Path) -> None:
        """Read the side file ``save_side`` wrote (raise ``AspectDataError`` on a bad one)."""
