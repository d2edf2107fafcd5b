"""Where each ECS document goes in a cluster: data stream (or index) names.

Names follow Elastic's data stream scheme ``<type>-<dataset>-<namespace>``: alerts in
``logs-otsentry.alert-<ns>``, protocol events in ``logs-otsentry.<protocol>-<ns>``, assets in
``logs-otsentry.asset-<ns>``, sensor health in ``metrics-otsentry.stats-<ns>``. The document's
``event.dataset`` picks the stream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

#: ``event.dataset`` → data stream type, for every dataset otsentry writes.
DATASETS: Final[dict[str, str]] = {
    "otsentry.alert": "logs",
    "otsentry.modbus": "logs",
    "otsentry.s7comm": "logs",
    "otsentry.opcua": "logs",
    "otsentry.asset": "logs",
    "otsentry.stats": "metrics",
}

#: A namespace as Elastic allows it: lowercase, no ``-``, ``\\ / * ? " < > | , #`` or spaces.
_NAMESPACE: Final = re.compile(r"[a-z0-9_.]{1,100}")


def valid_namespace(namespace: str) -> bool:
    """Whether ``namespace`` can end a data stream name."""
    return bool(_NAMESPACE.fullmatch(namespace)) and namespace not in (".", "..")


def stream_name(dataset: str, namespace: str) -> str:
    """The data stream (or index) for documents of ``dataset``; unknown datasets are logs."""
    return f"{DATASETS.get(dataset, 'logs')}-{dataset}-{namespace}"


def template_name(dataset: str) -> str:
    """The index template for ``dataset`` (``logs-otsentry.alert``); it matches ``<name>-*``."""
    return f"{DATASETS.get(dataset, 'logs')}-{dataset}"


def target(doc: Mapping[str, Any], namespace: str) -> str:
    """The data stream a document goes to, from its ``event.dataset``."""
    event = doc.get("event")
    dataset = event.get("dataset") if isinstance(event, Mapping) else None
    return stream_name(dataset if isinstance(dataset, str) else "otsentry.alert", namespace)
