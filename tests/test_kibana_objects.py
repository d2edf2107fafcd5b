"""The bundled Kibana saved objects: generated (not hand-edited), well-formed, self-contained,
built only on mapped fields, for Kibana 8.11; and docker-compose.yml's consistency."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
import typer
import yaml

from otsentry.config import load_config
from tests.conftest import LAB_PCAPS, replay_events

ROOT = Path(__file__).resolve().parents[1]
NDJSON = ROOT / "otsentry" / "data" / "kibana.ndjson"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_objects", ROOT / "kibana" / "make_objects.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
OBJECTS: list[dict[str, Any]] = [json.loads(line) for line in NDJSON.read_text().splitlines()]


def by_type(kind: str) -> list[dict[str, Any]]:
    return [o for o in OBJECTS if o["type"] == kind]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(dashboard["attributes"]["panelsJSON"])
    return found


def lens_panels() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for d in by_type("dashboard"):
        for p in panels(d):
            if p["type"] == "lens":
                yield d, p


def source_json(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
    )
    return found


# --- a small KQL parser: the subset the objects use, and evaluation against documents ----------

_TOKEN = re.compile(r'\s*(?:(\(|\)|<=|>=|<|>|:)|"((?:[^"\\]|\\.)*)"|([^\s()<>:"]+))')


class Kql:
    """``field : value``, ``field : (a or b)``, ``field >= n``, and / or / not, parentheses.
    Free text (a value without a field) is refused: every clause must name a field."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f"cannot read KQL at {text[pos:]!r}")
            op, quoted, word = m.groups()
            self.tokens.append(
                ("op", op) if op else ("str", quoted) if quoted is not None else ("word", word)
            )
            pos = m.end()
        self.i = 0
        self.fields: set[str] = set()
        self.tree: Any = self._or() if self.tokens else ("all",)
        if self.i != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.i]} in {text!r}")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise ValueError("KQL ends too early")
        self.i += 1
        return tok

    def _keyword(self, word: str) -> bool:
        tok = self._peek()
        if tok and tok[0] == "word" and tok[1].lower() == word:
            self.i += 1
            return True
        return False

    def _or(self) -> Any:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        return ("or", parts) if len(parts) > 1 else parts[0]

    def _and(self) -> Any:
        parts = [self._not()]
        while self._keyword("and"):
            parts.append(self._not())
        return ("and", parts) if len(parts) > 1 else parts[0]

    def _not(self) -> Any:
        if self._keyword("not"):
            return ("not", self._not())
        return self._atom()

    def _atom(self) -> Any:
        tok = self._next()
        if tok == ("op", "("):
            inner = self._or()
            if self._next() != ("op", ")"):
                raise ValueError("unbalanced parentheses")
            return inner
        if tok[0] != "word":
            raise ValueError(f"expected a field name, got {tok}")
        field = tok[1]
        op = self._next()
        if op[0] != "op" or op[1] in "()":
            raise ValueError(f"free text or missing operator after {field!r}")
        self.fields.add(field)
        if op[1] != ":":
            value = self._next()
            if value[0] == "op":
                raise ValueError(f"no value after {field} {op[1]}")
            return ("cmp", field, op[1], float(value[1]))
        if self._peek() == ("op", "("):
            self.i += 1
            values = [self._value()]
            while self._keyword("or"):
                values.append(self._value())
            if self._next() != ("op", ")"):
                raise ValueError("unbalanced value list")
            return ("match", field, values)
        return ("match", field, [self._value()])

    def _value(self) -> tuple[bool, str]:
        kind, text = self._next()
        if kind == "op":
            raise ValueError(f"expected a value, got {text!r}")
        return kind == "word", text  # (wildcards allowed, text)

    def matches(self, doc: dict[str, Any]) -> bool:
        return self._eval(self.tree, doc)

    def _eval(self, node: Any, doc: dict[str, Any]) -> bool:
        kind = node[0]
        if kind == "all":
            return True
        if kind == "or":
            return any(self._eval(n, doc) for n in node[1])
        if kind == "and":
            return all(self._eval(n, doc) for n in node[1])
        if kind == "not":
            return not self._eval(node[1], doc)
        values = field_values(doc, node[1])
        if kind == "cmp":
            ops = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}
            return any(
                ops[node[2]](float(v), node[3]) for v in values if isinstance(v, int | float)
            )
        return any(
            (fnmatch.fnmatchcase(str(v), text) if wild else str(v) == text)
            for v in values
            for wild, text in node[2]
        )


def field_values(doc: dict[str, Any], dotted: str) -> list[Any]:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return []
        node = node[part]
    return node if isinstance(node, list) else [node]


def all_queries() -> Iterator[tuple[str, str]]:
    """(where, KQL) of every query in the file: searches, dashboards, Lens states, Lens column
    filters and filter buckets."""
    for s in by_type("search"):
        yield s["id"], source_json(s)["query"]["query"]
    for d in by_type("dashboard"):
        yield d["id"], source_json(d)["query"]["query"]
    for d, p in lens_panels():
        state = p["embeddableConfig"]["attributes"]["state"]
        where = f"{d['id']} / {p['title']}"
        yield where, state["query"]["query"]
        for layer in state["datasourceStates"]["formBased"]["layers"].values():
            for col in layer["columns"].values():
                if "filter" in col:
                    yield where, col["filter"]["query"]
                for bucket in col.get("params", {}).get("filters", ()):
                    yield where, bucket["input"]["query"]


def used_fields() -> dict[str, set[str]]:
    """Field → where it is used: search columns and sorts, Lens source fields, KQL queries,
    data view formats and labels."""
    used: dict[str, set[str]] = {}

    def add(field: str, where: str) -> None:
        used.setdefault(field, set()).add(where)

    for s in by_type("search"):
        for c in s["attributes"]["columns"]:
            add(c, s["id"])
        for field, _ in s["attributes"]["sort"]:
            add(field, s["id"])
    for d, p in lens_panels():
        for layer in p["embeddableConfig"]["attributes"]["state"]["datasourceStates"]["formBased"][
            "layers"
        ].values():
            for col in layer["columns"].values():
                if col.get("sourceField") not in (None, "___records___"):
                    add(col["sourceField"], f"{d['id']} / {p['title']}")
                if "sortField" in col.get("params", {}):
                    add(col["params"]["sortField"], f"{d['id']} / {p['title']}")
    for where, query in all_queries():
        for field in Kql(query).fields:
            add(field, where)
    for v in by_type("index-pattern"):
        add(v["attributes"]["timeFieldName"], v["id"])
        for key in ("fieldFormatMap", "fieldAttrs"):
            for field in json.loads(v["attributes"][key]):
                add(field, v["id"])
    return used


@pytest.fixture(scope="module")
def mapping() -> dict[str, str]:
    try:
        from otsentry.sinks.templates import mapped_fields
    except ImportError:
        pytest.skip("otsentry/sinks/templates.py (mapped_fields) has not landed yet")
    return mapped_fields(flavour="elasticsearch")


# --- the file ----------------------------------------------------------------------------------


def test_committed_file_is_what_the_generator_writes() -> None:
    assert NDJSON.read_text(encoding="utf-8") == GEN.render(GEN.build()), (
        "otsentry/data/kibana.ndjson is stale: run python kibana/make_objects.py"
    )


def test_generator_check_mode(tmp_path: Path) -> None:
    stale = tmp_path / "kibana.ndjson"
    stale.write_text("{}\n")
    assert GEN.main(["--check", "-o", str(stale)]) == 1
    assert GEN.main(["-o", str(stale)]) == 0
    assert GEN.main(["--check", "-o", str(stale)]) == 0
    assert stale.read_text() == NDJSON.read_text()


def test_objects_are_complete_and_ids_unique() -> None:
    kinds = [o["type"] for o in OBJECTS]
    assert kinds.count("index-pattern") == 3
    assert kinds.count("search") >= 6
    assert {o["id"] for o in by_type("dashboard")} == {
        "otsentry-dashboard-overview",
        "otsentry-dashboard-modbus",
        "otsentry-dashboard-s7comm",
        "otsentry-dashboard-opcua",
        "otsentry-dashboard-assets",
    }
    ids = [o["id"] for o in OBJECTS]
    assert len(ids) == len(set(ids))
    for o in OBJECTS:
        assert set(o) == {
            "type",
            "id",
            "attributes",
            "references",
            "coreMigrationVersion",
            "typeMigrationVersion",
        }
        assert o["id"].startswith("otsentry-")
        assert o["attributes"]["title"]
    # data views before what uses them: an import resolves references within the file anyway,
    # but a reader of the file finds them first
    assert kinds[:3] == ["index-pattern"] * 3


def test_migration_versions_are_the_declared_minimum() -> None:
    assert GEN.MIN_KIBANA == "8.11.0"
    versions = {"index-pattern": "8.0.0", "search": "8.0.0", "dashboard": "8.9.0"}
    for o in OBJECTS:
        assert o["coreMigrationVersion"] == "8.8.0"
        assert o["typeMigrationVersion"] == versions[o["type"]]
    for d in by_type("dashboard"):
        assert {p["version"] for p in panels(d)} == {"8.11.0"}


def test_data_views() -> None:
    views = {v["id"]: v["attributes"] for v in by_type("index-pattern")}
    assert views["otsentry-logs"]["title"] == "logs-otsentry.*"
    assert views["otsentry-alerts"]["title"] == "logs-otsentry.alert-*"
    assert views["otsentry-assets"]["title"] == "logs-otsentry.asset-*"
    for attrs in views.values():
        assert attrs["timeFieldName"] == "@timestamp"
        for key in ("fields", "fieldFormatMap", "fieldAttrs", "runtimeFieldMap", "typeMeta"):
            json.loads(attrs[key])
    severity = json.loads(views["otsentry-alerts"]["fieldFormatMap"])["event.severity"]
    lookup = {e["key"]: e["value"] for e in severity["params"]["lookupEntries"]}
    assert lookup == {"21": "low", "47": "medium", "73": "high", "99": "critical"}


def test_saved_searches() -> None:
    searches = {s["id"]: s["attributes"] for s in by_type("search")}
    assert searches["otsentry-search-alerts"]["columns"] == [
        "message",
        "rule.name",
        "event.severity",
        "source.ip",
        "destination.ip",
        "threat.technique.name",
        "labels.segment",
    ]
    anomaly = source_json(by_type("search")[2])
    assert "rule.ruleset : otsentry-anomaly" in anomaly["query"]["query"]
    for proto in ("modbus", "s7comm", "opcua"):
        assert f"otsentry-search-{proto}-writes" in searches
    allowed = {
        "title", "description", "columns", "sort", "grid", "rowHeight", "rowsPerPage", "hideChart",
        "breakdownField", "kibanaSavedObjectMeta", "isTextBasedQuery", "usesAdHocDataView",
        "timeRestore", "timeRange", "refreshInterval", "viewMode", "hideAggregatedPreview", "hits",
        "version",
    }  # fmt: skip
    for attrs in searches.values():
        assert set(attrs) <= allowed  # Kibana validates a search's attributes on import
        assert attrs["sort"] == [["@timestamp", "desc"]]


def test_dashboard_attributes_are_what_kibana_accepts() -> None:
    allowed = {
        "title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo",
        "refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version",
    }  # fmt: skip
    for d in by_type("dashboard"):
        attrs = d["attributes"]
        assert set(attrs) <= allowed  # Kibana forbids unknown dashboard attributes
        assert set(attrs["kibanaSavedObjectMeta"]) == {"searchSourceJSON"}
        assert attrs["timeRestore"] is False  # replayed captures keep their own time
        json.loads(attrs["optionsJSON"])
        for p in panels(d):
            assert p["type"] in ("lens", "search", "visualization")
            assert set(p) <= {
                "type", "title", "embeddableConfig", "panelIndex", "gridData", "version",
                "panelRefName",
            }  # fmt: skip


# --- references --------------------------------------------------------------------------------


def test_every_reference_resolves_within_the_file() -> None:
    present = {(o["type"], o["id"]) for o in OBJECTS}
    for o in OBJECTS:
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in present, (o["id"], ref)
    for d, p in lens_panels():
        for ref in p["embeddableConfig"]["attributes"]["references"]:
            assert (ref["type"], ref["id"]) in present, (d["id"], p["title"], ref)


def test_searches_name_their_data_view() -> None:
    for s in by_type("search"):
        source = source_json(s)
        [ref] = s["references"]
        assert ref["name"] == source["indexRefName"]
        assert ref["type"] == "index-pattern"


def test_dashboard_references_match_the_panels_exactly() -> None:
    for d in by_type("dashboard"):
        expected = set()
        for p in panels(d):
            index = p["panelIndex"]
            if "panelRefName" in p:
                expected.add((f"{index}:{p['panelRefName']}", "search"))
            if p["type"] == "lens":
                attrs = p["embeddableConfig"]["attributes"]
                layers = attrs["state"]["datasourceStates"]["formBased"]["layers"]
                names = {r["name"] for r in attrs["references"]}
                assert names == {f"indexpattern-datasource-layer-{lid}" for lid in layers}
                expected |= {(f"{index}:{n}", "index-pattern") for n in names}
        got = [(r["name"], r["type"]) for r in d["references"]]
        assert len(got) == len(set(got))
        assert set(got) == expected, d["id"]


def test_navigation_links_name_every_dashboard() -> None:
    ids = {d["id"] for d in by_type("dashboard")}
    for d in by_type("dashboard"):
        [nav] = [p for p in panels(d) if p["type"] == "visualization"]
        text = nav["embeddableConfig"]["savedVis"]["params"]["markdown"]
        assert set(re.findall(r"\(#/view/([\w-]+)\)", text)) == ids - {d["id"]}


# --- layout and Lens state ---------------------------------------------------------------------


def test_panels_fit_the_grid_without_overlap() -> None:
    for d in by_type("dashboard"):
        taken: set[tuple[int, int]] = set()
        indexes = [p["panelIndex"] for p in panels(d)]
        assert len(indexes) == len(set(indexes))
        for p in panels(d):
            g = p["gridData"]
            assert g["i"] == p["panelIndex"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 48 and g["h"] > 0
            cells = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & taken, (d["id"], p["title"])
            taken |= cells


def accessors(vis: dict[str, Any]) -> set[str]:
    """Every column id a Lens visualization state points at."""
    found: set[str] = set()
    for layer in vis.get("layers", [vis]):
        for key in ("xAccessor", "splitAccessor", "metricAccessor"):
            if key in layer:
                found.add(layer[key])
        for key in ("accessors", "primaryGroups", "metrics"):
            found |= set(layer.get(key, ()))
        found |= {c["columnId"] for c in layer.get("columns", ())}
    return found


def test_lens_states_are_consistent() -> None:
    vis_types = set()
    for d, p in lens_panels():
        attrs = p["embeddableConfig"]["attributes"]
        vis_types.add(attrs["visualizationType"])
        state = attrs["state"]
        [(layer_id, layer)] = state["datasourceStates"]["formBased"]["layers"].items()
        columns = layer["columns"]
        assert sorted(layer["columnOrder"]) == sorted(columns), (d["id"], p["title"])
        assert accessors(state["visualization"]) == set(columns), (d["id"], p["title"])
        vis_layers = state["visualization"].get("layers", [state["visualization"]])
        assert {vl["layerId"] for vl in vis_layers} == {layer_id}
        for col in columns.values():
            order = col.get("params", {}).get("orderBy", {})
            if order.get("type") == "column":
                assert order["columnId"] in columns
                assert columns[order["columnId"]]["operationType"] != "last_value"
            if col["operationType"] == "count":
                assert col["sourceField"] == "___records___"
    assert vis_types == {"lnsMetric", "lnsXY", "lnsDatatable", "lnsPie"}


# --- fields and queries ------------------------------------------------------------------------


def test_every_query_parses_and_names_fields_only() -> None:
    queries = list(all_queries())
    assert len(queries) > 30
    for where, query in queries:
        try:
            Kql(query)
        except ValueError as exc:
            pytest.fail(f"{where}: {query!r}: {exc}")


@pytest.mark.parametrize("bad", ["modbus write", "event.action :", "(a : b", "a : (b or", "x >= y"])
def test_kql_checker_refuses_bad_queries(bad: str) -> None:
    with pytest.raises(ValueError):
        Kql(bad)


def test_every_used_field_is_mapped(mapping: dict[str, str]) -> None:
    missing = {f: sorted(w) for f, w in used_fields().items() if f not in mapping}
    assert not missing, f"fields used by the Kibana objects but not mapped: {missing}"


LENS_OF_MAPPING = {
    "keyword": "string",
    "constant_keyword": "string",
    "wildcard": "string",
    "ip": "ip",
    "date": "date",
    "date_nanos": "date",
    "boolean": "boolean",
    **dict.fromkeys(
        ("long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"),
        "number",
    ),
}


def test_lens_columns_aggregate_fields_of_the_right_type(mapping: dict[str, str]) -> None:
    for d, p in lens_panels():
        layers = p["embeddableConfig"]["attributes"]["state"]["datasourceStates"]["formBased"][
            "layers"
        ]
        for layer in layers.values():
            for col in layer["columns"].values():
                field = col.get("sourceField")
                if field in (None, "___records___"):
                    continue
                kind = LENS_OF_MAPPING.get(mapping[field])
                assert kind is not None, f"{d['id']} / {p['title']}: {field} is {mapping[field]}"
                if col["operationType"] != "unique_count":
                    assert col["dataType"] == kind, (d["id"], p["title"], field)
                if col["operationType"] in ("max", "min"):
                    assert kind in ("number", "date")


def test_search_columns_are_mapped_fields(mapping: dict[str, str]) -> None:
    for s in by_type("search"):
        for c in s["attributes"]["columns"]:
            assert mapping[c] not in ("object", "flattened", "flat_object"), (s["id"], c)


# --- the queries select what they say ----------------------------------------------------------


def test_severity_buckets_split_the_four_severities() -> None:
    buckets = [(label, Kql(kql)) for label, kql in GEN.SEVERITIES]
    for value, label in ((21, "low"), (47, "medium"), (73, "high"), (99, "critical")):
        hits = [name for name, q in buckets if q.matches({"event": {"severity": value}})]
        assert hits == [label]


@pytest.fixture(scope="module")
def lab_events(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The protocol events of the lab's attack and engineering captures."""
    docs: list[dict[str, Any]] = []
    for name in ("modbus_attacks", "s7comm_engineering", "s7comm_attacks", "opcua_attacks"):
        out = tmp_path_factory.mktemp(name)
        replay_events(LAB_PCAPS / f"{name}.pcap", out=out)
        docs += [json.loads(line) for line in (out / "events.ndjson").read_text().splitlines()]
    return docs


CHANGES = {
    "modbus": lambda action: "write" in action,
    "s7comm": lambda action: (
        action
        in {
            "s7comm-write-var",
            "s7comm-request-download",
            "s7comm-download-block",
            "s7comm-download-ended",
            "s7comm-plc-stop",
            "s7comm-plc-start",
            "s7comm-delete-block",
            "s7comm-compress-memory",
            "s7comm-copy-ram-to-rom",
            "s7comm-set-clock",
            "s7comm-force",
            "s7comm-modify-variable",
            "s7comm-clear-password",
            "s7comm-pi-service",
        }
    ),
    "opcua": lambda action: action in {"opcua-write", "opcua-call"},
}


@pytest.mark.parametrize("proto", ["modbus", "s7comm", "opcua"])
def test_writes_searches_select_the_changing_operations(
    proto: str, lab_events: list[dict[str, Any]]
) -> None:
    [search] = [s for s in by_type("search") if s["id"] == f"otsentry-search-{proto}-writes"]
    query = Kql(source_json(search)["query"]["query"])
    events = [e for e in lab_events if e["event"]["dataset"] == f"otsentry.{proto}"]
    actions = {e["event"]["action"] for e in events}
    selected = {e["event"]["action"] for e in events if query.matches(e)}
    expected = {a for a in actions if CHANGES[proto](a)}
    assert expected, f"the lab captures hold no {proto} writes"
    assert selected == expected


# --- docker-compose.yml ------------------------------------------------------------------------

COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_compose_services_and_volumes_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"setup", "es01", "kibana", "otsentry", "sensor"}
    declared = set(compose["volumes"])
    used = set()
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
        for mount in svc.get("volumes", ()):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)
                used.add(source)
    assert used == declared
    assert services["otsentry"]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()


def test_compose_variables_come_from_env_example(compose: dict[str, Any]) -> None:
    names = set(re.findall(r"\$\{(\w+)\}", COMPOSE.read_text()))
    example = env_example()
    assert names == set(example)
    for secret in ("ELASTIC_PASSWORD", "KIBANA_PASSWORD", "KIBANA_ENCRYPTION_KEY"):
        assert example[secret] == "", f"{secret} must be set by the user, not shipped"
    assert not (ROOT / ".env").exists() or ".env" not in _tracked_files()


def _tracked_files() -> set[str]:
    import subprocess

    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    return set(out.split())


def otsentry_commands(compose: dict[str, Any]) -> list[list[str]]:
    [script] = compose["services"]["otsentry"]["command"]
    commands = [shlex.split(part) for part in script.split(";")]
    return [c for c in commands if c and c[0] == "otsentry"]


def test_compose_runs_es_setup_kibana_setup_then_replay(compose: dict[str, Any]) -> None:
    commands = otsentry_commands(compose)
    assert [c[1:3] for c in commands] == [
        ["es", "setup"],
        ["kibana", "setup"],
        ["replay", "/opt/otsentry/pcaps"],
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pcaps/*.pcap /opt/otsentry/pcaps/" in dockerfile
    # outputs in the otsentry user's home, which is the named volume
    assert "--home-dir /var/lib/otsentry" in dockerfile
    replay = commands[2]
    assert replay[replay.index("--out") + 1].startswith("/var/lib/otsentry/")
    assert "otsentry-data:/var/lib/otsentry" in compose["services"]["otsentry"]["volumes"]
    env = dict(e.split("=", 1) for e in compose["services"]["otsentry"]["environment"])
    assert env["OTSENTRY_ES_CA_FILE"].startswith("/certs/")
    assert "certs:/certs:ro" in compose["services"]["otsentry"]["volumes"]
    assert env["OTSENTRY_ES_PASSWORD"] == "${ELASTIC_PASSWORD}"


def test_compose_commands_parse_with_the_cli(compose: dict[str, Any]) -> None:
    from otsentry.cli.app import app

    root = typer.main.get_command(app)
    for argv in otsentry_commands(compose):
        group: Any = root
        args = argv[1:]
        while isinstance(group, click.Group):
            sub = group.get_command(click.Context(group), args[0])
            if sub is None and argv[1:3] == ["es", "setup"]:
                pytest.skip("otsentry es setup has not landed yet")
            assert sub is not None, argv
            group, args = sub, args[1:]
        group.make_context("otsentry", list(args))  # raises on an unknown option


def test_compose_config_file_loads_and_names_the_cluster(compose: dict[str, Any]) -> None:
    config = load_config(ROOT / "docker" / "otsentry.yaml")
    assert config.outputs.elasticsearch is not None
    es_setup, kibana_setup, replay = otsentry_commands(compose)
    for command in (es_setup, replay):
        assert config.outputs.elasticsearch.url == command[command.index("--es") + 1]
    assert str(config.outputs.dir) == replay[replay.index("--out") + 1]
    assert kibana_setup[kibana_setup.index("--url") + 1] == "http://kibana:5601"


def test_kibana_folder_links_to_the_packaged_objects() -> None:
    link = ROOT / "kibana" / "otsentry.ndjson"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "otsentry" / "data" / "kibana.ndjson").resolve()
    assert link.read_bytes().count(b"\n") >= 15
