"""Fixtures for cluster sink tests: a fault-injecting proxy in front of a fresh osmem cluster,
and readers of what the cluster really holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.sinks import faultproxy
from tests.sinks.faultproxy import FaultProxy


@pytest.fixture
def fault_proxy(osmem_url: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of this test's osmem clone; closed afterwards."""
    with FaultProxy(osmem_url) as proxy:
        yield proxy


@pytest.fixture
def osmem_count() -> Callable[[str, str], int]:
    """``osmem_count(url, index_pattern)``: refresh, then the number of documents."""
    return faultproxy.osmem_count


@pytest.fixture
def osmem_ids() -> Callable[[str, str], list[str]]:
    """``osmem_ids(url, index_pattern)``: refresh, then every ``_id``, sorted."""
    return faultproxy.osmem_ids
