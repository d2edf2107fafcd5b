"""A bounded table that a sweep cannot flush: keys seen once wait in a small probation LRU and
move to the main LRU when seen again.

A register sweep, a port scan or a browse of a whole address space touches thousands of keys
once each; they churn through probation (evictions counted as ``dropped``) while the keys that
recur — polled registers, polling cycles, busy links — stay in the main tier. Both tiers are
LRU (``OrderedDict``), every operation is O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TieredTable(Generic[K, V]):
    """Main LRU of ``cap`` keys seen at least twice, probation LRU of ``probation_cap`` keys seen
    once; ``dropped`` counts keys evicted from probation, ``evicted`` those pushed out of main."""

    __slots__ = ("cap", "dropped", "evicted", "main", "probation", "probation_cap")

    def __init__(self, cap: int, probation_cap: int | None = None) -> None:
        self.cap = max(1, cap)
        self.probation_cap = max(1, probation_cap if probation_cap is not None else cap)
        self.main: OrderedDict[K, V] = OrderedDict()
        self.probation: OrderedDict[K, V] = OrderedDict()
        self.dropped = 0
        self.evicted = 0

    def touch(self, key: K, make: Callable[[], V]) -> V:
        """The entry of ``key``, made with ``make`` on first sight (into probation)."""
        main = self.main
        value = main.get(key)
        if value is not None:
            main.move_to_end(key)
            return value
        value = self.probation.pop(key, None)
        if value is not None:
            main[key] = value
            if len(main) > self.cap:
                main.popitem(last=False)
                self.evicted += 1
            return value
        value = make()
        probation = self.probation
        probation[key] = value
        if len(probation) > self.probation_cap:
            probation.popitem(last=False)
            self.dropped += 1
        return value

    def get(self, key: K) -> V | None:
        """The entry of ``key`` in either tier, without touching it."""
        value = self.main.get(key)
        return value if value is not None else self.probation.get(key)

    def items(self) -> Iterator[tuple[K, V]]:
        """Every entry, main tier first."""
        yield from self.main.items()
        yield from self.probation.items()

    def __len__(self) -> int:
        return len(self.main) + len(self.probation)
