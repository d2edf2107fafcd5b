"""Generate otsentry's Kibana saved objects: data views, saved searches and dashboards.

Usage: ``python kibana/make_objects.py [--check] [-o otsentry/data/kibana.ndjson]``

The objects are written as Kibana's export format (one JSON object a line) for the lowest
supported Kibana, 8.11: ``coreMigrationVersion`` 8.8.0 and each type's migration version as 8.11
writes it, so Kibana 8.11 and every newer release migrate them on import. Every object and every
dashboard panel has a fixed id derived from its name, so a re-import overwrites instead of
duplicating and a regeneration gives the same bytes. Lens panels are stored by value inside the
dashboards; saved searches are panels by reference. ``--check`` exits 1 when the committed file
differs from what this script generates.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from otsentry.dissectors.modbus.constants import FUNCTIONS as MODBUS_FUNCTIONS
from otsentry.dissectors.modbus.constants import WRITE_FUNCTIONS as MODBUS_WRITE_FUNCTIONS
from otsentry.dissectors.opcua.services import SERVICE_NAMES as OPCUA_SERVICES
from otsentry.dissectors.s7comm.constants import FUNCTIONS as S7_FUNCTIONS
from otsentry.dissectors.s7comm.constants import PI_SERVICES as S7_PI_SERVICES
from otsentry.dissectors.s7comm.plus import FUNCTIONS as S7_PLUS_FUNCTIONS
from otsentry.dissectors.s7comm.userdata import SUBFUNCTIONS as S7_USERDATA_SUBFUNCTIONS

OUTPUT = Path(__file__).resolve().parents[1] / "otsentry" / "data" / "kibana.ndjson"

#: the lowest Kibana the objects are written for, and the versions its export stamps
MIN_KIBANA = "8.11.0"
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSIONS: dict[str, str] = {
    "index-pattern": "8.0.0",
    "search": "8.0.0",
    "dashboard": "8.9.0",
}

#: data view ids (and the index patterns they name)
LOGS, ALERTS, ASSETS = "otsentry-logs", "otsentry-alerts", "otsentry-assets"
DATA_VIEWS: dict[str, tuple[str, str]] = {
    LOGS: ("logs-otsentry.*", "otsentry: all logs"),
    ALERTS: ("logs-otsentry.alert-*", "otsentry: alerts"),
    ASSETS: ("logs-otsentry.asset-*", "otsentry: assets"),
}

#: dashboard ids, in navigation order, with their link text
DASHBOARDS: dict[str, str] = {
    "otsentry-dashboard-overview": "OT alerts overview",
    "otsentry-dashboard-modbus": "Modbus",
    "otsentry-dashboard-s7comm": "S7comm",
    "otsentry-dashboard-opcua": "OPC UA",
    "otsentry-dashboard-assets": "Assets",
}

#: Lens data type of every field a Lens column aggregates on (the test checks them against the
#: index template's mapping: keyword → string, ip → ip, numbers → number, dates → date)
LENS_TYPES: dict[str, str] = {
    "@timestamp": "date",
    "destination.ip": "ip",
    "device.model.name": "string",
    "event.action": "string",
    "event.severity": "number",
    "labels.segment": "string",
    "otsentry.anomaly.kind": "string",
    "otsentry.asset.ip": "ip",
    "otsentry.asset.last_seen": "date",
    "otsentry.asset.mac": "string",
    "otsentry.asset.protocols": "string",
    "otsentry.asset.roles": "string",
    "otsentry.asset.vendor": "string",
    "otsentry.modbus.address": "number",
    "otsentry.modbus.anomalies": "string",
    "otsentry.modbus.exception": "string",
    "otsentry.modbus.unit_id": "number",
    "otsentry.opcua.anomalies": "string",
    "otsentry.opcua.channel.security_mode": "string",
    "otsentry.opcua.channel.security_policy": "string",
    "otsentry.s7comm.anomalies": "string",
    "otsentry.s7comm.block": "string",
    "otsentry.s7comm.connection.connection_type": "string",
    "rule.name": "string",
    "rule.ruleset": "string",
    "source.ip": "ip",
    "threat.tactic.name": "string",
    "threat.technique.name": "string",
}

SEVERITIES: tuple[tuple[str, str], ...] = (
    ("critical", "event.severity >= 99"),
    ("high", "event.severity >= 73 and event.severity < 99"),
    ("medium", "event.severity >= 47 and event.severity < 73"),
    ("low", "event.severity < 47"),
)
ALERT_COLUMNS = (
    "message",
    "rule.name",
    "event.severity",
    "source.ip",
    "destination.ip",
    "threat.technique.name",
    "labels.segment",
)

_NAMESPACE = uuid.UUID("6a0d1f38-6f0b-4c7e-9a55-0f2c1e0b7a11")


def uid(*parts: str) -> str:
    """A fixed UUID for a name (panel indexes, Lens layers and columns)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def kql_any(field: str, values: Iterable[str]) -> str:
    """``field : (a or b or c)``."""
    return f"{field} : ({' or '.join(values)})"


def _dashed(name: str) -> str:
    return name.replace("_", "-")


def modbus_writes() -> list[str]:
    """``event.action`` of the Modbus functions that change a device (write, mask, file)."""
    return sorted("modbus-" + _dashed(MODBUS_FUNCTIONS[c]) for c in MODBUS_WRITE_FUNCTIONS)


def s7comm_changes() -> list[str]:
    """``event.action`` of S7 jobs that write data, change the program or the CPU's state."""
    jobs = [S7_FUNCTIONS[c] for c in (0x05, 0x1A, 0x1B, 0x1C, 0x29)]
    # every PI service changes the CPU (start, insert / delete / copy blocks, compress, NC
    # programs); one the dissector does not name is s7comm-pi-service
    pi = [*S7_PI_SERVICES.values(), "pi_service"]
    userdata = {name for group in S7_USERDATA_SUBFUNCTIONS.values() for name in group.values()}
    commands = ["force", "modify_variable", "memory_reset", "set_clock", "set_clock_2"]
    commands.append("clear_password")
    missing = [c for c in commands if c not in userdata]
    if missing:
        raise SystemExit(f"userdata sub-functions not in the S7 dissector: {missing}")
    plus = ["set_variable", "set_multi_variables", "create_object", "delete_object"]
    plus.append("set_var_substreamed")
    if any(p not in S7_PLUS_FUNCTIONS.values() for p in plus):
        raise SystemExit("an S7comm-plus function is not in the S7 dissector")
    names = ["s7comm-" + _dashed(n) for n in (*jobs, *pi, *commands)]
    return sorted(names + ["s7comm-plus-" + _dashed(p) for p in plus])


def opcua_writes() -> list[str]:
    """``event.action`` of OPC UA services that change the address space or call methods."""
    services = ["Write", "Call", "AddNodes", "DeleteNodes", "AddReferences", "DeleteReferences"]
    services.append("HistoryUpdate")
    known = set(OPCUA_SERVICES.values())
    actions = []
    for service in services:
        if f"{service}Request" not in known:
            raise SystemExit(f"{service}Request is not in the OPC UA dissector")
        words = "".join("-" + ch.lower() if ch.isupper() else ch for ch in service)
        actions.append("opcua" + words)
    return sorted(actions)


#: per protocol: title, ``network.protocol``, ``event.dataset`` and the KQL of its writes
PROTOCOLS: dict[str, dict[str, str]] = {
    "modbus": {
        "title": "Modbus",
        "dataset": "otsentry.modbus",
        "writes": kql_any("event.action", modbus_writes()),
        "writes_label": "Writes",
    },
    "s7comm": {
        "title": "S7comm",
        "dataset": "otsentry.s7comm",
        "writes": kql_any("event.action", s7comm_changes()),
        "writes_label": "Writes and program changes",
    },
    "opcua": {
        "title": "OPC UA",
        "dataset": "otsentry.opcua",
        "writes": kql_any("event.action", opcua_writes()),
        "writes_label": "Writes and method calls",
    },
}


# --- Lens columns ------------------------------------------------------------------------------


class Layer:
    """One Lens data layer: columns in order, with ids derived from the layer's name."""

    def __init__(self, name: str) -> None:
        self.id = uid("layer", name)
        self.columns: dict[str, dict[str, Any]] = {}

    def _add(self, key: str, column: dict[str, Any], kql: str | None = None) -> str:
        cid = uid(self.id, key)
        if kql:
            column["filter"] = {"language": "kuery", "query": kql}
        self.columns[cid] = column
        return cid

    def count(self, label: str, kql: str | None = None) -> str:
        """Document count (optionally of the documents matching ``kql``)."""
        return self._add(
            "count:" + label,
            {
                "label": label,
                "customLabel": True,
                "dataType": "number",
                "operationType": "count",
                "isBucketed": False,
                "scale": "ratio",
                "sourceField": "___records___",
                "params": {"emptyAsNull": False},
            },
            kql,
        )

    def metric(self, op: str, field: str, label: str, kql: str | None = None) -> str:
        """``unique_count``, ``max`` or ``min`` of a field."""
        data_type = "number" if op == "unique_count" else LENS_TYPES[field]
        params: dict[str, Any] = {"emptyAsNull": True}
        return self._add(
            f"{op}:{field}:{label}",
            {
                "label": label,
                "customLabel": True,
                "dataType": data_type,
                "operationType": op,
                "isBucketed": False,
                "scale": "ratio",
                "sourceField": field,
                "params": params,
            },
            kql,
        )

    def last_value(self, field: str, label: str) -> str:
        """The field's value in the newest document of the bucket (arrays shown whole)."""
        return self._add(
            "last:" + field,
            {
                "label": label,
                "customLabel": True,
                "dataType": LENS_TYPES[field],
                "operationType": "last_value",
                "isBucketed": False,
                "scale": "ordinal",
                "sourceField": field,
                "params": {"sortField": "@timestamp", "showArrayValues": True},
            },
        )

    def terms(self, field: str, label: str, size: int, order_by: str | None = None) -> str:
        """Top ``size`` values of ``field``, by the ``order_by`` column (else alphabetical)."""
        order: dict[str, Any] = (
            {"type": "column", "columnId": order_by}
            if order_by
            else {"type": "alphabetical", "fallback": False}
        )
        return self._add(
            "terms:" + field,
            {
                "label": label,
                "customLabel": True,
                "dataType": LENS_TYPES[field],
                "operationType": "terms",
                "isBucketed": True,
                "scale": "ordinal",
                "sourceField": field,
                "params": {
                    "size": size,
                    "orderBy": order,
                    "orderDirection": "desc" if order_by else "asc",
                    "otherBucket": False,
                    "missingBucket": False,
                    "parentFormat": {"id": "terms"},
                    "include": [],
                    "exclude": [],
                    "includeIsRegex": False,
                    "excludeIsRegex": False,
                },
            },
        )

    def filters(self, label: str, buckets: Sequence[tuple[str, str]]) -> str:
        """One bucket per (label, KQL) pair."""
        return self._add(
            "filters:" + label,
            {
                "label": label,
                "customLabel": True,
                "dataType": "string",
                "operationType": "filters",
                "isBucketed": True,
                "scale": "ordinal",
                "params": {
                    "filters": [
                        {"label": name, "input": {"language": "kuery", "query": kql}}
                        for name, kql in buckets
                    ]
                },
            },
        )

    def over_time(self) -> str:
        """``@timestamp`` in automatic intervals."""
        return self._add(
            "date_histogram",
            {
                "label": "@timestamp",
                "dataType": "date",
                "operationType": "date_histogram",
                "isBucketed": True,
                "scale": "interval",
                "sourceField": "@timestamp",
                "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
            },
        )

    def state(self, order: Sequence[str]) -> dict[str, Any]:
        """The form-based datasource layer, columns in ``order``."""
        if sorted(order) != sorted(self.columns):
            raise ValueError("column order must list every column once")
        return {
            "columnOrder": list(order),
            "columns": self.columns,
            "incompleteColumns": {},
            "sampling": 1,
        }


# --- Lens visualizations -----------------------------------------------------------------------


def lens(
    title: str,
    data_view: str,
    layer: Layer,
    order: Sequence[str],
    vis_type: str,
    visualization: dict[str, Any],
    query: str = "",
) -> dict[str, Any]:
    """A by-value Lens panel's ``attributes``."""
    refs = [
        {
            "type": "index-pattern",
            "id": data_view,
            "name": f"indexpattern-datasource-layer-{layer.id}",
        }
    ]
    return {
        "title": title,
        "description": "",
        "type": "lens",
        "visualizationType": vis_type,
        "references": refs,
        "state": {
            "datasourceStates": {"formBased": {"layers": {layer.id: layer.state(order)}}},
            "visualization": visualization,
            "query": {"language": "kuery", "query": query},
            "filters": [],
            "internalReferences": [],
            "adHocDataViews": {},
        },
    }


def metric_panel(title: str, data_view: str, label: str, kql: str | None = None) -> dict[str, Any]:
    """One big number: the documents matching ``kql``."""
    layer = Layer(f"metric/{title}/{data_view}/{label}")
    m = layer.count(label, kql)
    return lens(
        title,
        data_view,
        layer,
        [m],
        "lnsMetric",
        {"layerId": layer.id, "layerType": "data", "metricAccessor": m},
    )


def unique_panel(
    title: str, data_view: str, field: str, label: str, kql: str = ""
) -> dict[str, Any]:
    """One big number: distinct values of ``field``."""
    layer = Layer(f"unique/{title}/{data_view}/{field}")
    m = layer.metric("unique_count", field, label, kql or None)
    return lens(
        title,
        data_view,
        layer,
        [m],
        "lnsMetric",
        {"layerId": layer.id, "layerType": "data", "metricAccessor": m},
    )


def _xy(layer: Layer, series: str, x: str, y: str, split: str | None) -> dict[str, Any]:
    data_layer: dict[str, Any] = {
        "layerId": layer.id,
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x,
        "accessors": [y],
    }
    if split:
        data_layer["splitAccessor"] = split
    return {
        "legend": {"isVisible": split is not None, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "preferredSeriesType": series,
        "axisTitlesVisibilitySettings": {"x": False, "yLeft": False, "yRight": False},
        "layers": [data_layer],
    }


def over_time_panel(
    title: str,
    data_view: str,
    count_label: str,
    *,
    split_field: str | None = None,
    split_label: str = "",
    split_size: int = 10,
    severity: bool = False,
    kql: str = "",
) -> dict[str, Any]:
    """Stacked bars over time, split by a field's top values or by severity."""
    layer = Layer(f"time/{title}/{data_view}/over-time")
    y = layer.count(count_label)
    split: str | None = None
    if severity:
        split = layer.filters("Severity", SEVERITIES)
    elif split_field:
        split = layer.terms(split_field, split_label, split_size, order_by=y)
    x = layer.over_time()
    order = [c for c in (split, x, y) if c]
    return lens(
        title, data_view, layer, order, "lnsXY", _xy(layer, "bar_stacked", x, y, split), kql
    )


def bars_panel(
    title: str,
    data_view: str,
    field: str,
    label: str,
    *,
    size: int = 10,
    unique: str | None = None,
    metric_label: str = "Documents",
    severity: bool = False,
    kql: str = "",
) -> dict[str, Any]:
    """Horizontal bars: the top values of ``field`` by count (or by distinct ``unique`` values),
    optionally stacked by severity."""
    layer = Layer(f"bars/{title}/{data_view}/{field}")
    y = layer.metric("unique_count", unique, metric_label) if unique else layer.count(metric_label)
    x = layer.terms(field, label, size, order_by=y)
    split = layer.filters("Severity", SEVERITIES) if severity else None
    order = [c for c in (x, split, y) if c]
    series = "bar_horizontal_stacked" if severity else "bar_horizontal"
    return lens(title, data_view, layer, order, "lnsXY", _xy(layer, series, x, y, split), kql)


def donut_panel(
    title: str,
    data_view: str,
    field: str,
    label: str,
    *,
    unique: str | None = None,
    metric_label: str = "Documents",
    size: int = 10,
    kql: str = "",
) -> dict[str, Any]:
    """A donut of the top values of ``field``."""
    layer = Layer(f"donut/{title}/{data_view}/{field}")
    m = layer.metric("unique_count", unique, metric_label) if unique else layer.count(metric_label)
    g = layer.terms(field, label, size, order_by=m)
    visualization = {
        "shape": "donut",
        "layers": [
            {
                "layerId": layer.id,
                "layerType": "data",
                "primaryGroups": [g],
                "metrics": [m],
                "numberDisplay": "value",
                "categoryDisplay": "default",
                "legendDisplay": "default",
                "nestedLegend": False,
            }
        ],
    }
    return lens(title, data_view, layer, [g, m], "lnsPie", visualization, kql)


def table_panel(
    title: str,
    data_view: str,
    build: Any,
    *,
    kql: str = "",
) -> dict[str, Any]:
    """A data table; ``build(layer)`` adds the columns and returns their order."""
    layer = Layer(f"table/{title}/{data_view}/table")
    order: list[str] = build(layer)
    visualization = {
        "layerId": layer.id,
        "layerType": "data",
        "columns": [{"columnId": c, "isTransposed": False} for c in order],
        "paging": {"enabled": True, "size": 10},
    }
    return lens(title, data_view, layer, order, "lnsDatatable", visualization, kql)


# --- saved objects -----------------------------------------------------------------------------


def _object(
    kind: str, oid: str, attributes: dict[str, Any], refs: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "type": kind,
        "id": oid,
        "attributes": attributes,
        "references": refs,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[kind],
    }


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def data_view(oid: str) -> dict[str, Any]:
    """A data view with the time field, field labels and formats analysts read at a glance."""
    pattern, name = DATA_VIEWS[oid]
    severity = {
        "id": "static_lookup",
        "params": {
            "lookupEntries": [
                {"key": "21", "value": "low"},
                {"key": "47", "value": "medium"},
                {"key": "73", "value": "high"},
                {"key": "99", "value": "critical"},
            ],
            "unknownKeyValue": None,
        },
    }
    link = {"id": "url", "params": {"type": "a", "urlTemplate": None, "labelTemplate": None}}
    duration = {
        "id": "duration",
        "params": {
            "inputFormat": "nanoseconds",
            "outputFormat": "humanizePrecise",
            "outputPrecision": 1,
            "includeSpaceWithSuffix": True,
        },
    }
    formats: dict[str, Any] = {"event.severity": severity, "rule.reference": link}
    labels = {"event.severity": "Severity", "labels.segment": "Segment"}
    if oid == LOGS:
        formats["event.duration"] = duration
    if oid != ALERTS:
        labels["otsentry.asset.ip"] = "Host"
    if oid == ASSETS:
        formats = {}
        labels = {"labels.segment": "Segment", "otsentry.asset.ip": "Host"}
    return _object(
        "index-pattern",
        oid,
        {
            "title": pattern,
            "name": name,
            "timeFieldName": "@timestamp",
            "fields": "[]",
            "fieldFormatMap": _json(formats),
            "fieldAttrs": _json({k: {"customLabel": v} for k, v in labels.items()}),
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "typeMeta": "{}",
            "allowNoIndex": True,
        },
        [],
    )


def search(
    oid: str, title: str, data_view_id: str, query: str, columns: Sequence[str]
) -> dict[str, Any]:
    """A Discover saved search: ``query`` over a data view, newest first, with ``columns``."""
    source = {
        "query": {"language": "kuery", "query": query},
        "filter": [],
        "highlightAll": True,
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    return _object(
        "search",
        oid,
        {
            "title": title,
            "description": "",
            "columns": list(columns),
            "sort": [["@timestamp", "desc"]],
            "grid": {},
            "hideChart": False,
            "isTextBasedQuery": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _json(source)},
        },
        [
            {
                "type": "index-pattern",
                "id": data_view_id,
                "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
            }
        ],
    )


class Dashboard:
    """Panels laid out in rows on Kibana's 48-column grid."""

    def __init__(self, oid: str, title: str, description: str, query: str = "") -> None:
        self.oid, self.title, self.description, self.query = oid, title, description, query
        self.panels: list[dict[str, Any]] = []
        self.refs: list[dict[str, str]] = []
        self.y = 0
        self._row_x = 0
        self._row_h = 0
        self._navigation()

    def row(self, height: int, *panels: tuple[int, str, dict[str, Any]]) -> None:
        """One row of (width, key, panel) — a panel from ``lens_panel`` or ``search_panel``."""
        x = 0
        for width, key, make in panels:
            index = uid(self.oid, key)
            if any(p["panelIndex"] == index for p in self.panels):
                raise ValueError(f"{self.title}: two panels named {key!r}")
            panel = make | {
                "panelIndex": index,
                "gridData": {"x": x, "y": self.y, "w": width, "h": height, "i": index},
                "version": MIN_KIBANA,
            }
            ref = panel.pop("_ref", None)
            if ref is not None:
                panel["panelRefName"] = f"panel_{index}"
                self.refs.append({"type": "search", "id": ref, "name": f"{index}:panel_{index}"})
            for r in panel["embeddableConfig"].get("attributes", {}).get("references", ()):
                self.refs.append(r | {"name": f"{index}:{r['name']}"})
            self.panels.append(panel)
            x += width
        if x > 48:
            raise ValueError(f"{self.title}: a row is {x} columns wide")
        self.y += height

    def _navigation(self) -> None:
        links = " · ".join(
            f"**{text}**" if oid == self.oid else f"[{text}](#/view/{oid})"
            for oid, text in DASHBOARDS.items()
        )
        markdown = f"otsentry dashboards: {links}"
        vis = {
            "title": "",
            "description": "",
            "type": "markdown",
            "params": {"fontSize": 12, "openLinksInNewTab": False, "markdown": markdown},
            "uiState": {},
            "data": {
                "aggs": [],
                "searchSource": {"query": {"query": "", "language": "kuery"}, "filter": []},
            },
        }
        panel = {
            "type": "visualization",
            "embeddableConfig": {"savedVis": vis, "hidePanelTitles": True, "enhancements": {}},
        }
        self.row(3, (48, "navigation", panel))

    def saved_object(self) -> dict[str, Any]:
        """The dashboard saved object."""
        source = {"query": {"language": "kuery", "query": self.query}, "filter": []}
        options = {
            "useMargins": True,
            "syncColors": False,
            "syncCursor": True,
            "syncTooltips": False,
            "hidePanelTitles": False,
        }
        return _object(
            "dashboard",
            self.oid,
            {
                "title": self.title,
                "description": self.description,
                "version": 1,
                "timeRestore": False,
                "panelsJSON": _json(self.panels),
                "optionsJSON": _json(options),
                "kibanaSavedObjectMeta": {"searchSourceJSON": _json(source)},
            },
            self.refs,
        )


def lens_panel(attributes: dict[str, Any]) -> dict[str, Any]:
    """A dashboard panel holding a Lens visualization by value."""
    return {
        "type": "lens",
        "title": attributes["title"],
        "embeddableConfig": {"attributes": attributes, "enhancements": {}},
    }


def search_panel(search_id: str, title: str) -> dict[str, Any]:
    """A dashboard panel showing a saved search."""
    return {
        "type": "search",
        "title": title,
        "embeddableConfig": {"enhancements": {}},
        "_ref": search_id,
    }


# --- the content -------------------------------------------------------------------------------

HIGH = "event.severity >= 73"
ANOMALY = "rule.ruleset : otsentry-anomaly"
EVENTS = "event.kind : event"
ALERTS_KQL = "event.kind : alert"


def searches() -> list[dict[str, Any]]:
    """The saved searches: alerts (all, high and critical, anomalies), writes per protocol,
    asset documents."""
    found = [
        search("otsentry-search-alerts", "otsentry: all alerts", ALERTS, ALERTS_KQL, ALERT_COLUMNS),
        search(
            "otsentry-search-alerts-high",
            "otsentry: high and critical alerts",
            ALERTS,
            f"{ALERTS_KQL} and {HIGH}",
            ALERT_COLUMNS,
        ),
        search(
            "otsentry-search-alerts-anomaly",
            "otsentry: anomaly alerts (baseline deviations)",
            ALERTS,
            ANOMALY,
            (
                "message",
                "rule.name",
                "otsentry.anomaly.kind",
                "event.severity",
                "source.ip",
                "destination.ip",
                "event.reason",
                "labels.segment",
            ),
        ),
    ]
    detail = {
        "modbus": (
            "otsentry.modbus.unit_id",
            "otsentry.modbus.address",
            "otsentry.modbus.quantity",
        ),
        "s7comm": ("otsentry.s7comm.block", "otsentry.s7comm.connection.connection_type"),
        "opcua": ("otsentry.opcua.channel.security_mode", "otsentry.opcua.channel.security_policy"),
    }
    for proto, facts in PROTOCOLS.items():
        found.append(
            search(
                f"otsentry-search-{proto}-writes",
                f"otsentry: {facts['title']} {facts['writes_label'].lower()}",
                LOGS,
                f"event.dataset : {facts['dataset']} and {facts['writes']}",
                (
                    "event.action",
                    "source.ip",
                    "destination.ip",
                    *detail[proto],
                    "event.outcome",
                    "labels.segment",
                ),
            )
        )
    found.append(
        search(
            "otsentry-search-assets",
            "otsentry: asset documents",
            ASSETS,
            "",
            (
                "otsentry.asset.ip",
                "otsentry.asset.mac",
                "otsentry.asset.vendor",
                "otsentry.asset.roles",
                "otsentry.asset.protocols",
                "device.model.name",
                "labels.segment",
                "otsentry.asset.last_seen",
            ),
        )
    )
    return found


def overview() -> Dashboard:
    """OT alerts overview: volume, rules, severity, ATT&CK for ICS, who talks to whom, segments."""
    d = Dashboard(
        "otsentry-dashboard-overview",
        "otsentry: OT alerts overview",
        "otsentry rule and baseline alerts: over time by rule and severity, ATT&CK for ICS tactics "
        "and techniques, top source → destination pairs, alerts per segment.",
    )
    d.row(
        6,
        (12, "alerts", lens_panel(metric_panel("Alerts", ALERTS, "Alerts"))),
        (
            12,
            "high",
            lens_panel(metric_panel("High and critical", ALERTS, "High and critical", HIGH)),
        ),
        (
            12,
            "anomaly",
            lens_panel(metric_panel("Anomaly alerts", ALERTS, "Anomaly alerts", ANOMALY)),
        ),
        (
            12,
            "sources",
            lens_panel(unique_panel("Alerting sources", ALERTS, "source.ip", "Source hosts")),
        ),
    )
    d.row(
        14,
        (
            24,
            "by-rule",
            lens_panel(
                over_time_panel(
                    "Alerts over time by rule",
                    ALERTS,
                    "Alerts",
                    split_field="rule.name",
                    split_label="Rule",
                )
            ),
        ),
        (
            24,
            "by-severity",
            lens_panel(
                over_time_panel("Alerts over time by severity", ALERTS, "Alerts", severity=True)
            ),
        ),
    )

    def tactics(layer: Layer) -> list[str]:
        n = layer.count("Alerts")
        return [layer.terms("threat.tactic.name", "Tactic", 20, order_by=n), n]

    def techniques(layer: Layer) -> list[str]:
        n = layer.count("Alerts")
        t = layer.terms("threat.technique.name", "Technique", 30, order_by=n)
        targets = layer.metric("unique_count", "destination.ip", "Targets")
        last = layer.metric("max", "@timestamp", "Last seen")
        return [t, n, targets, last]

    d.row(
        14,
        (16, "tactics", lens_panel(table_panel("ATT&CK for ICS tactics", ALERTS, tactics))),
        (
            32,
            "techniques",
            lens_panel(table_panel("ATT&CK for ICS techniques", ALERTS, techniques)),
        ),
    )

    def pairs(layer: Layer) -> list[str]:
        n = layer.count("Alerts")
        s = layer.terms("source.ip", "Source", 10, order_by=n)
        t = layer.terms("destination.ip", "Destination", 5, order_by=n)
        worst = layer.metric("max", "event.severity", "Highest severity")
        last = layer.metric("max", "@timestamp", "Last seen")
        return [s, t, n, worst, last]

    d.row(
        14,
        (28, "pairs", lens_panel(table_panel("Top source → destination pairs", ALERTS, pairs))),
        (
            20,
            "segments",
            lens_panel(
                bars_panel(
                    "Alerts by segment",
                    ALERTS,
                    "labels.segment",
                    "Segment",
                    metric_label="Alerts",
                    severity=True,
                )
            ),
        ),
    )

    def rules(layer: Layer) -> list[str]:
        n = layer.count("Alerts")
        r = layer.terms("rule.name", "Rule", 25, order_by=n)
        kind = layer.terms("rule.ruleset", "Ruleset", 3, order_by=n)
        worst = layer.metric("max", "event.severity", "Highest severity")
        last = layer.metric("max", "@timestamp", "Last seen")
        return [r, kind, n, worst, last]

    d.row(14, (48, "rules", lens_panel(table_panel("Alerts by rule", ALERTS, rules))))
    d.row(16, (48, "alerts-search", search_panel("otsentry-search-alerts", "Alerts")))
    return d


def protocol_dashboard(proto: str) -> Dashboard:
    """One protocol: operations, writes, talkers, alerts and anomalies."""
    facts = PROTOCOLS[proto]
    title, writes, writes_label = facts["title"], facts["writes"], facts["writes_label"]
    events_writes = f"{EVENTS} and {writes}"
    d = Dashboard(
        f"otsentry-dashboard-{proto}",
        f"otsentry: {title}",
        f"{title} seen by otsentry: operations, {writes_label.lower()}, talkers, alerts and "
        "protocol anomalies. The query bar holds the protocol filter.",
        query=f"network.protocol : {proto}",
    )
    d.row(
        6,
        (12, "events", lens_panel(metric_panel("Transactions", LOGS, "Transactions", EVENTS))),
        (12, "writes", lens_panel(metric_panel(writes_label, LOGS, writes_label, events_writes))),
        (12, "alerts", lens_panel(metric_panel("Alerts", LOGS, "Alerts", ALERTS_KQL))),
        (12, "clients", lens_panel(unique_panel("Clients", LOGS, "source.ip", "Clients", EVENTS))),
    )

    def operations(layer: Layer) -> list[str]:
        n = layer.count("Transactions")
        op = layer.terms("event.action", "Operation", 30, order_by=n)
        clients = layer.metric("unique_count", "source.ip", "Clients")
        failed = layer.count("Failed", "event.outcome : failure")
        return [op, n, clients, failed]

    d.row(
        14,
        (
            24,
            "over-time",
            lens_panel(
                over_time_panel(
                    "Operations over time",
                    LOGS,
                    "Transactions",
                    split_field="event.action",
                    split_label="Operation",
                    kql=EVENTS,
                )
            ),
        ),
        (24, "operations", lens_panel(table_panel("Operations", LOGS, operations, kql=EVENTS))),
    )

    def targets(layer: Layer) -> list[str]:
        n = layer.count(writes_label)
        t = layer.terms("destination.ip", "Target", 10, order_by=n)
        op = layer.terms("event.action", "Operation", 10, order_by=n)
        s = layer.terms("source.ip", "Client", 5, order_by=n)
        last = layer.metric("max", "@timestamp", "Last seen")
        return [t, op, s, n, last]

    d.row(
        14,
        (
            24,
            "writes-over-time",
            lens_panel(
                over_time_panel(
                    f"{writes_label} over time by client",
                    LOGS,
                    writes_label,
                    split_field="source.ip",
                    split_label="Client",
                    kql=events_writes,
                )
            ),
        ),
        (
            24,
            "write-targets",
            lens_panel(table_panel(f"{writes_label} by target", LOGS, targets, kql=events_writes)),
        ),
    )

    def talkers(layer: Layer) -> list[str]:
        n = layer.count("Transactions", EVENTS)
        s = layer.terms("source.ip", "Client", 10, order_by=n)
        t = layer.terms("destination.ip", "Server", 5, order_by=n)
        w = layer.count(writes_label, events_writes)
        a = layer.count("Alerts", ALERTS_KQL)
        return [s, t, n, w, a]

    def alert_rules(layer: Layer) -> list[str]:
        n = layer.count("Alerts")
        r = layer.terms("rule.name", "Rule", 20, order_by=n)
        worst = layer.metric("max", "event.severity", "Highest severity")
        return [r, n, worst]

    def anomalies(layer: Layer) -> list[str]:
        n = layer.count("Transactions")
        a = layer.terms(f"otsentry.{proto}.anomalies", "Anomaly", 20, order_by=n)
        return [a, n]

    d.row(
        14,
        (20, "talkers", lens_panel(table_panel("Talkers", LOGS, talkers))),
        (
            16,
            "alert-rules",
            lens_panel(table_panel("Alerts by rule", LOGS, alert_rules, kql=ALERTS_KQL)),
        ),
        (
            12,
            "anomalies",
            lens_panel(table_panel("Protocol anomalies", LOGS, anomalies, kql=EVENTS)),
        ),
    )
    d.row(
        12,
        (
            24,
            "baseline",
            lens_panel(
                bars_panel(
                    "Baseline deviations",
                    LOGS,
                    "otsentry.anomaly.kind",
                    "Deviation",
                    metric_label="Alerts",
                    severity=True,
                    kql=ANOMALY,
                )
            ),
        ),
        *_protocol_specific(proto),
    )
    d.row(16, (48, "writes-search", search_panel(f"otsentry-search-{proto}-writes", writes_label)))
    return d


def _protocol_specific(proto: str) -> list[tuple[int, str, dict[str, Any]]]:
    if proto == "modbus":

        def units(layer: Layer) -> list[str]:
            n = layer.count("Writes")
            u = layer.terms("otsentry.modbus.unit_id", "Unit", 10, order_by=n)
            a = layer.terms("otsentry.modbus.address", "Address", 10, order_by=n)
            return [u, a, n]

        return [
            (
                12,
                "units",
                lens_panel(
                    table_panel(
                        "Written units and addresses",
                        LOGS,
                        units,
                        kql=f"{EVENTS} and {PROTOCOLS['modbus']['writes']}",
                    )
                ),
            ),
            (
                12,
                "exceptions",
                lens_panel(
                    donut_panel(
                        "Exceptions", LOGS, "otsentry.modbus.exception", "Exception", kql=EVENTS
                    )
                ),
            ),
        ]
    if proto == "s7comm":

        def blocks(layer: Layer) -> list[str]:
            n = layer.count("Transactions")
            b = layer.terms("otsentry.s7comm.block", "Block", 20, order_by=n)
            op = layer.terms("event.action", "Operation", 10, order_by=n)
            return [b, op, n]

        return [
            (
                12,
                "connections",
                lens_panel(
                    donut_panel(
                        "Connection types (pg = engineering)",
                        LOGS,
                        "otsentry.s7comm.connection.connection_type",
                        "Connection type",
                        unique="source.ip",
                        metric_label="Clients",
                        kql=EVENTS,
                    )
                ),
            ),
            (12, "blocks", lens_panel(table_panel("Program blocks", LOGS, blocks, kql=EVENTS))),
        ]

    def policies(layer: Layer) -> list[str]:
        n = layer.metric("unique_count", "source.ip", "Clients")
        p = layer.terms("otsentry.opcua.channel.security_policy", "Security policy", 10, order_by=n)
        return [p, n]

    return [
        (
            12,
            "modes",
            lens_panel(
                donut_panel(
                    "Security modes",
                    LOGS,
                    "otsentry.opcua.channel.security_mode",
                    "Security mode",
                    unique="source.ip",
                    metric_label="Clients",
                    kql=EVENTS,
                )
            ),
        ),
        (12, "policies", lens_panel(table_panel("Security policies", LOGS, policies, kql=EVENTS))),
    ]


def assets_dashboard() -> Dashboard:
    """The asset inventory: roles, vendors, protocols, hosts per segment, a host table."""
    d = Dashboard(
        "otsentry-dashboard-assets",
        "otsentry: Assets",
        "Hosts otsentry has seen: roles, vendors, protocols, hosts per segment and a table of "
        "hosts (newest facts per address; every run adds a snapshot).",
    )
    host = "otsentry.asset.ip"
    d.row(
        6,
        (16, "hosts", lens_panel(unique_panel("Hosts", ASSETS, host, "Hosts"))),
        (
            16,
            "segments",
            lens_panel(unique_panel("Segments", ASSETS, "labels.segment", "Segments")),
        ),
        (
            16,
            "vendors",
            lens_panel(unique_panel("Vendors", ASSETS, "otsentry.asset.vendor", "Vendors")),
        ),
    )
    d.row(
        14,
        (
            16,
            "roles",
            lens_panel(
                donut_panel(
                    "Roles",
                    ASSETS,
                    "otsentry.asset.roles",
                    "Role",
                    unique=host,
                    metric_label="Hosts",
                )
            ),
        ),
        (
            16,
            "vendor-bars",
            lens_panel(
                bars_panel(
                    "Hosts by vendor",
                    ASSETS,
                    "otsentry.asset.vendor",
                    "Vendor",
                    unique=host,
                    metric_label="Hosts",
                )
            ),
        ),
        (
            16,
            "protocols",
            lens_panel(
                bars_panel(
                    "Hosts by protocol",
                    ASSETS,
                    "otsentry.asset.protocols",
                    "Protocol",
                    unique=host,
                    metric_label="Hosts",
                )
            ),
        ),
    )

    def hosts(layer: Layer) -> list[str]:
        h = layer.terms(host, "Host", 500)
        cols = [h]
        for field, label in (
            ("otsentry.asset.mac", "MAC"),
            ("otsentry.asset.vendor", "Vendor"),
            ("device.model.name", "Model"),
            ("otsentry.asset.roles", "Roles"),
            ("otsentry.asset.protocols", "Protocols"),
            ("labels.segment", "Segment"),
        ):
            cols.append(layer.last_value(field, label))
        cols.append(layer.metric("max", "otsentry.asset.last_seen", "Last seen"))
        return cols

    d.row(
        16,
        (
            16,
            "per-segment",
            lens_panel(
                bars_panel(
                    "Hosts per segment",
                    ASSETS,
                    "labels.segment",
                    "Segment",
                    unique=host,
                    metric_label="Hosts",
                )
            ),
        ),
        (32, "host-table", lens_panel(table_panel("Hosts", ASSETS, hosts))),
    )
    d.row(16, (48, "documents", search_panel("otsentry-search-assets", "Asset documents")))
    return d


def build() -> list[dict[str, Any]]:
    """Every saved object, in import order: data views, searches, dashboards."""
    dashboards = [overview(), *(protocol_dashboard(p) for p in PROTOCOLS), assets_dashboard()]
    if [d.oid for d in dashboards] != list(DASHBOARDS):
        raise ValueError("dashboards and their navigation disagree")
    return [
        *(data_view(oid) for oid in DATA_VIEWS),
        *searches(),
        *(d.saved_object() for d in dashboards),
    ]


def render(objects: Iterable[dict[str, Any]]) -> str:
    """The ndjson text: one object a line, keys sorted."""
    return "".join(_json(obj) + "\n" for obj in objects)


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or ``--check``) the saved objects file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is stale: run python kibana/make_objects.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} objects to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
