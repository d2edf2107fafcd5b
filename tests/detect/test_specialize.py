"""Rules specialised to one (protocol, action): ``condition.fold`` against ``condition.build``,
and every built-in rule's specialised predicate against its general one on every event the
lab captures give the rule engine (protocol events and the flows' network events)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.detect.compile import CompiledRule
from otsentry.detect.condition import All, Any_, Name, Node, Not, build, fold
from otsentry.detect.loader import load_rules
from otsentry.model import Event
from otsentry.pipeline import Pipeline
from tests.detect.conftest import PCAPS

NAMES = ("a", "b", "c", "d")
trees: st.SearchStrategy[Node] = st.recursive(
    st.sampled_from(NAMES).map(Name),
    lambda inner: (
        inner.map(Not)
        | st.lists(inner, min_size=2, max_size=4).map(lambda items: All(tuple(items)))
        | st.lists(inner, min_size=2, max_size=4).map(lambda items: Any_(tuple(items)))
    ),
    max_leaves=10,
)
#: what a selection is: a constant decided in advance, or a test of the input's bit
leaves = st.fixed_dictionaries({name: st.sampled_from([True, False, 0, 1, 2, 3]) for name in NAMES})


def _as_test(value: bool | int) -> Callable[[int], bool]:
    if isinstance(value, bool):
        return lambda x: value
    return lambda x: bool(x >> value & 1)


@settings(max_examples=500, deadline=None)
@given(trees, leaves)
def test_folding_constants_keeps_the_truth_table(node: Node, leaf: dict[str, bool | int]) -> None:
    general = build(node, lambda name: _as_test(leaf[name]))

    def folded_leaf(name: str) -> Callable[[int], bool] | bool:
        value = leaf[name]
        return value if isinstance(value, bool) else _as_test(value)

    folded = fold(node, folded_leaf)
    for x in range(16):
        got = folded if isinstance(folded, bool) else folded(x)
        assert got == general(x), (node, leaf, x)


class _Recorder:
    """Stands for the rule engine: keeps every event it is asked to match."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def match(self, event: Event) -> tuple[Any, ...]:
        self.events.append(event)
        return ()


def _engine_events(path: Path, out: Path) -> list[Event]:
    pipeline = Pipeline(Config(), out)
    recorder = _Recorder()
    pipeline.replace_rules(recorder)  # type: ignore[arg-type]
    reader = open_capture(path)
    try:
        pipeline.run(iter(reader))
    finally:
        reader.close()
    pipeline.table.close_all(pipeline.counters.last_ts or 0)
    return recorder.events


def test_specialised_rules_agree_with_their_predicates(tmp_path: Path) -> None:
    rules: list[CompiledRule] = load_rules()
    events = [
        event
        for path in sorted(PCAPS.glob("*.pcap"))
        for event in _engine_events(path, tmp_path / path.stem)
    ]
    protocols = {e.envelope.protocol for e in events}
    assert {"network", "modbus", "s7comm", "opcua"} <= protocols
    specialised = decided = 0
    cache: dict[tuple[str, str, str], Any] = {}
    for event in events:
        protocol, action = event.envelope.protocol, event.action
        for rule in rules:
            key = (rule.rule.id, protocol, action)
            if key not in cache:
                cache[key] = rule.specialize(protocol, action)
            special = cache[key]
            expected = bool(rule.predicate(event))
            if isinstance(special, bool):
                decided += 1
                assert special == expected, (rule.rule.id, protocol, action)
            else:
                specialised += 1
                assert bool(special(event)) == expected, (rule.rule.id, protocol, action)
    assert decided and specialised  # both kinds were checked
