"""Install otsentry's templates and lifecycle policy on a cluster, and check a cluster.

``setup_cluster`` compares what is installed with what it would send and writes only what is
missing or outdated, so a second run reports everything unchanged; users' ``@custom`` templates
are created empty when missing and never overwritten. ``check_cluster`` reports connectivity,
version, privileges, the templates and a test write. See docs/elasticsearch.md.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from otsentry.sinks.clients import ClusterClient, ClusterKind, ClusterUnavailable
from otsentry.sinks.routing import DATASETS, stream_name
from otsentry.sinks.templates import (
    MANAGED_BY,
    POLICY_NAME,
    RETENTION_DAYS,
    component_templates,
    custom_template,
    custom_template_name,
    ilm_policy,
    index_templates,
    ism_policy,
)

#: oldest cluster versions otsentry supports
MIN_ELASTICSEARCH: Final = (8, 11)
MIN_OPENSEARCH: Final = (2, 0)
#: OpenSearch learned ``flat_object`` in 2.7; before, free-form objects are kept opaque
FLAT_OBJECT_SINCE: Final = (2, 7)
#: ``es check`` test documents: ``otsentry-check-<uuid>``
CHECK_ID_PREFIX: Final = "otsentry-check-"

Kind = Literal["policy", "component", "custom", "index"]


class Outcome(StrEnum):
    """What setup did with one object."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    PLANNED = "planned"  # dry run: nothing sent
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Request:
    """One object setup installs: the PUT that installs it and the GET that reads it back."""

    kind: Kind
    name: str
    path: str
    body: dict[str, Any]

    @property
    def what(self) -> str:
        """``component template otsentry@mappings``."""
        label = {
            "policy": "lifecycle policy",
            "component": "component template",
            "custom": "component template",
            "index": "index template",
        }[self.kind]
        return f"{label} {self.name}"

    def step(self, outcome: Outcome, reason: str = "") -> Step:
        """This request's PUT with an outcome."""
        return Step(self.what, "PUT", self.path, self.body, outcome, reason)


@dataclass(frozen=True, slots=True)
class Step:
    """One setup step: the request (method, path, JSON body) and its outcome."""

    what: str
    method: str
    path: str
    body: dict[str, Any] | None
    outcome: Outcome
    reason: str = ""

    def to_json(self, *, with_body: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (the body only when asked: it is large)."""
        out: dict[str, Any] = {
            "what": self.what,
            "method": self.method,
            "path": self.path,
            "outcome": str(self.outcome),
            "reason": self.reason,
        }
        if with_body:
            out["body"] = self.body
        return out


class SetupError(Exception):
    """A request failed (HTTP error status other than "this API does not exist")."""


def policy_request(kind: ClusterKind, retention_days: int = RETENTION_DAYS) -> Request:
    """The lifecycle policy: ILM on Elasticsearch, ISM on OpenSearch."""
    if kind == "elasticsearch":
        return Request(
            "policy", POLICY_NAME, f"/_ilm/policy/{POLICY_NAME}", ilm_policy(retention_days)
        )
    path = f"/_plugins/_ism/policies/{POLICY_NAME}"
    return Request("policy", POLICY_NAME, path, ism_policy(retention_days))


def template_requests(
    kind: ClusterKind,
    *,
    data_streams: bool = True,
    lifecycle: bool = True,
    flat_object: bool = True,
) -> list[Request]:
    """The templates setup installs, in order: component templates, the ``@custom`` hooks
    (OpenSearch), index templates. ``lifecycle``: name the ILM policy in the settings."""
    out: list[Request] = []
    components = component_templates(
        kind, lifecycle=lifecycle and data_streams, flat_object=flat_object
    )
    for name, body in components.items():
        out.append(Request("component", name, f"/_component_template/{name}", body))
    if kind == "opensearch":  # no ignore_missing_component_templates: the hooks must exist
        for dataset in DATASETS:
            name = custom_template_name(dataset)
            out.append(Request("custom", name, f"/_component_template/{name}", custom_template()))
    for name, body in index_templates(kind, data_streams=data_streams).items():
        out.append(Request("index", name, f"/_index_template/{name}", body))
    return out


# -- comparing what is installed with what we would send -------------------------------------
def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested or dotted settings → ``{"index.x.y": "value"}`` (clusters answer nested
    strings)."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_settings(value, f"{path}."))
        else:
            out[path if path.startswith("index.") else f"index.{path}"] = _scalar(value)
    return out


def _normal(body: Any) -> Any:
    """``body`` with every ``settings`` object flattened, for comparison."""
    if isinstance(body, Mapping):
        return {
            k: _flat_settings(v) if k == "settings" and isinstance(v, Mapping) else _normal(v)
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [_normal(v) for v in body]
    return body


def _contains(have: Any, want: Any) -> bool:
    """Whether the installed ``have`` holds everything of ``want`` (clusters add defaults)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            k in have and _contains(have[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(_contains(h, w) for h, w in zip(have, want, strict=True))
        )
    return have == want or _scalar(have) == _scalar(want)


def _meta_digest(body: Mapping[str, Any]) -> str | None:
    meta = body.get("_meta")
    if not isinstance(meta, Mapping):
        policy = body.get("policy")
        meta = policy.get("_meta") if isinstance(policy, Mapping) else None
    digest = meta.get("digest") if isinstance(meta, Mapping) else None
    return digest if isinstance(digest, str) else None


def is_current(installed: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether an installed object equals what setup would send: same content digest (catches
    removals) and every value present (catches hand edits)."""
    if _meta_digest(installed) != _meta_digest(wanted):
        return False
    return _contains(_normal(installed), _normal(wanted))


def _error_text(body: Any) -> str:
    """A one-line reason from an error answer."""
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            kind, reason = err.get("type"), err.get("reason")
            return f"{kind}: {reason}" if kind else str(reason)
        return str(err)
    return str(body)[:300]


def _api_missing(status: int, body: Any) -> bool:
    """The cluster has no such API (ILM/ISM/security absent): 400 "no handler", 404/405/501
    without a "resource not found"."""
    text = _error_text(body).lower()
    if status == 400 and ("no handler" in text or "invalid_index_name" in text):
        return True
    return status in (404, 405, 410, 501) and "not_found" not in text and "not found" not in text


@dataclass(frozen=True, slots=True)
class Installed:
    """What the cluster holds for one request's object."""

    state: Literal["missing", "current", "outdated", "unavailable"]
    body: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    params: dict[str, str] = field(default_factory=dict)  # for an update (ISM: seq_no)


def _unwrap(req: Request, body: Any) -> dict[str, Any] | None:
    """The object inside a GET answer, shaped like the PUT body."""
    if not isinstance(body, Mapping):
        return None
    if req.kind == "policy":
        if req.name in body and isinstance(body[req.name], Mapping):  # ILM
            inner = body[req.name]
            return {"policy": inner.get("policy", {})}
        if "policy" in body:  # ISM
            return {"policy": body["policy"]}
        return None
    key, inner_key = (
        ("index_templates", "index_template")
        if req.kind == "index"
        else ("component_templates", "component_template")
    )
    for item in body.get(key, ()):
        if isinstance(item, Mapping) and item.get("name") == req.name:
            found = item.get(inner_key)
            return dict(found) if isinstance(found, Mapping) else None
    return None


def read_installed(client: ClusterClient, req: Request) -> Installed:
    """GET one object and compare it with what setup would send. Raises SetupError on an
    unexpected answer, ClusterUnavailable when the cluster is gone."""
    status, body = client.request("GET", req.path)
    if status == 404 and not _api_missing(status, body):
        return Installed("missing")
    if status == 404 and req.kind == "policy" and client.kind == "opensearch":
        return Installed("missing")  # ISM answers a missing policy with a bare 404
    if _api_missing(status, body):
        return Installed("unavailable", reason=_error_text(body))
    if status != 200:
        raise SetupError(f"GET {req.path}: HTTP {status}: {_error_text(body)}")
    installed = _unwrap(req, body)
    if installed is None:
        return Installed("missing")
    params: dict[str, str] = {}
    if req.kind == "policy" and "_seq_no" in body and "_primary_term" in body:  # ISM
        params = {
            "if_seq_no": str(body["_seq_no"]),
            "if_primary_term": str(body["_primary_term"]),
        }
    if req.kind == "custom":
        return Installed("current", installed)  # the user's: whatever it holds is right
    state: Literal["current", "outdated"] = (
        "current" if is_current(installed, req.body) else "outdated"
    )
    return Installed(state, installed, params=params)


def _unavailable_reason(req: Request, client: ClusterClient, detail: str) -> str:
    api = "ILM" if client.kind == "elasticsearch" else "ISM"
    if req.kind == "policy":
        return f"{api} is not available on this cluster ({detail}); indices are kept until deleted"
    return f"not available on this cluster ({detail})"


def _apply(client: ClusterClient, req: Request) -> Step:
    """Install one object unless it is already current."""
    found = read_installed(client, req)
    if found.state == "unavailable":
        return req.step(Outcome.SKIPPED, _unavailable_reason(req, client, found.reason))
    if found.state == "current":
        reason = "exists: a user hook, never overwritten" if req.kind == "custom" else ""
        return req.step(Outcome.UNCHANGED, reason)
    params = dict(found.params)
    if req.kind == "custom":
        params["create"] = "true"  # never replace one created meanwhile
    status, body = client.request("PUT", req.path, req.body, params or None)
    if status in (200, 201):
        return req.step(Outcome.CREATED if found.state == "missing" else Outcome.UPDATED)
    if req.kind == "custom" and "already exists" in _error_text(body):
        return req.step(Outcome.UNCHANGED, "exists: a user hook, never overwritten")
    if req.kind == "policy" and _api_missing(status, body):
        return req.step(Outcome.SKIPPED, _unavailable_reason(req, client, _error_text(body)))
    return req.step(Outcome.FAILED, f"HTTP {status}: {_error_text(body)}")


def version_of(info: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    """(distribution, version numbers) from a cluster's root answer: ``elasticsearch`` or
    ``opensearch``."""
    version = info.get("version")
    version = version if isinstance(version, Mapping) else {}
    distribution = str(version.get("distribution") or "elasticsearch").lower()
    numbers = tuple(int(n) for n in re.findall(r"\d+", str(version.get("number", "")))[:3])
    return distribution, numbers


def setup_cluster(
    client: ClusterClient,
    *,
    dry_run: bool = False,
    data_streams: bool = True,
    retention_days: int = RETENTION_DAYS,
) -> list[Step]:
    """Install the lifecycle policy, component templates, ``@custom`` hooks (OpenSearch) and
    index templates, idempotently. A dry run sends nothing and returns the requests as
    ``planned``. Stops at the first failed step (the rest are ``skipped``). Without ILM/ISM the
    policy is skipped and the settings do not name it. Raises ClusterUnavailable when the
    cluster cannot be reached."""
    policy = policy_request(client.kind, retention_days)
    steps: list[Step] = []
    lifecycle = data_streams
    if not data_streams:
        reason = "plain indices (no data streams) cannot roll over; no lifecycle policy attached"
        steps.append(policy.step(Outcome.SKIPPED, reason))
    elif dry_run:
        steps.append(policy.step(Outcome.PLANNED, "dry run"))
    else:
        steps.append(_apply_safely(client, policy))
        lifecycle = steps[0].outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED)
    flat_object = True
    if not dry_run and client.kind == "opensearch":
        _, numbers = version_of(client.info())
        flat_object = not numbers or numbers >= FLAT_OBJECT_SINCE
    failed = steps[0].outcome is Outcome.FAILED
    requests = template_requests(
        client.kind, data_streams=data_streams, lifecycle=lifecycle, flat_object=flat_object
    )
    for req in requests:
        if dry_run:
            steps.append(req.step(Outcome.PLANNED, "dry run"))
        elif failed:
            steps.append(req.step(Outcome.SKIPPED, "an earlier step failed"))
        else:
            steps.append(_apply_safely(client, req))
            failed = steps[-1].outcome is Outcome.FAILED
    return steps


def _apply_safely(client: ClusterClient, req: Request) -> Step:
    try:
        return _apply(client, req)
    except SetupError as exc:
        return req.step(Outcome.FAILED, str(exc))


# -- check --------------------------------------------------------------------------------------
class Status(StrEnum):
    """A check's result."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its name, result and a one-line explanation."""

    name: str
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict."""
        return {"name": self.name, "status": str(self.status), "detail": self.detail}


#: what the sink needs on otsentry's streams, and what setup needs on the cluster
SINK_INDEX_PRIVILEGES: Final = ("create_doc", "auto_configure")
SETUP_CLUSTER_PRIVILEGES: Final = ("manage_index_templates", "manage_ilm")
CHECK_INDEX_PRIVILEGES: Final = ("delete",)


def _version_check(client: ClusterClient, info: Mapping[str, Any]) -> Check:
    distribution, numbers = version_of(info)
    shown = ".".join(map(str, numbers)) or "unknown"
    label = f"{distribution} {shown}"
    if distribution != client.kind:
        other = "--opensearch" if distribution == "opensearch" else "--es"
        return Check("version", Status.FAIL, f"{label}: this is {distribution}, use {other}")
    if distribution == "elasticsearch":
        if numbers and numbers < MIN_ELASTICSEARCH:
            return Check("version", Status.WARN, f"{label}: unsupported (8.11 or newer needed)")
        if numbers and numbers[0] > 9:
            return Check("version", Status.WARN, f"{label}: newer than tested (8.11 to 9.x)")
    else:
        if numbers and numbers < MIN_OPENSEARCH:
            return Check("version", Status.WARN, f"{label}: unsupported (2.0 or newer needed)")
        if numbers and numbers[0] > 3:
            return Check("version", Status.WARN, f"{label}: newer than tested (2.x and 3.x)")
        if numbers and numbers < FLAT_OBJECT_SINCE:
            return Check(
                "version",
                Status.WARN,
                f"{label}: no flat_object before 2.7 (free-form objects not searchable)",
            )
    return Check("version", Status.OK, label)


def _es_privileges(client: ClusterClient) -> Check:
    patterns = sorted({f"{kind}-otsentry.*" for kind in DATASETS.values()})
    body = {
        "cluster": list(SETUP_CLUSTER_PRIVILEGES),
        "index": [
            {"names": patterns, "privileges": [*SINK_INDEX_PRIVILEGES, *CHECK_INDEX_PRIVILEGES]}
        ],
    }
    status, answer = client.request("POST", "/_security/user/_has_privileges", body)
    if status != 200 or not isinstance(answer, Mapping):
        text = _error_text(answer)
        if _api_missing(status, answer) or "security" in text.lower():
            return Check(
                "privileges", Status.SKIPPED, f"security not enabled: not checked ({text})"
            )
        return Check("privileges", Status.WARN, f"could not check: HTTP {status}: {text}")
    if answer.get("has_all_requested"):
        return Check("privileges", Status.OK, f"user {answer.get('username', '?')}: all needed")
    missing_cluster = [p for p, ok in answer.get("cluster", {}).items() if not ok]
    missing_index = sorted(
        {p for granted in answer.get("index", {}).values() for p, ok in granted.items() if not ok}
    )
    sink_missing = [p for p in missing_index if p in SINK_INDEX_PRIVILEGES]
    parts = []
    if sink_missing:
        parts.append(f"the sink needs {', '.join(sink_missing)} on {', '.join(patterns)}")
    if missing_cluster:
        parts.append(f"es setup needs {', '.join(missing_cluster)}")
    other = [p for p in missing_index if p not in SINK_INDEX_PRIVILEGES]
    if other:
        parts.append(f"es check needs {', '.join(other)} to remove its test document")
    return Check("privileges", Status.FAIL if sink_missing else Status.WARN, "; ".join(parts))


def _os_privileges(client: ClusterClient) -> Check:
    status, answer = client.request("GET", "/_plugins/_security/api/account")
    if status == 200 and isinstance(answer, Mapping):
        roles = ", ".join(answer.get("roles", ())) or "none"
        return Check(
            "privileges",
            Status.OK,
            f"user {answer.get('user_name', '?')} (roles: {roles}); the test write checks access",
        )
    if _api_missing(status, answer):
        return Check("privileges", Status.SKIPPED, "no security plugin: not checked")
    return Check(
        "privileges", Status.WARN, f"could not check: HTTP {status}: {_error_text(answer)}"
    )


def _templates_check(
    client: ClusterClient, data_streams: bool, flat_object: bool
) -> tuple[Check, bool]:
    """Whether every template (and the lifecycle policy) setup installs is there and current.
    Missing ones are a warning: the sink still writes (Elasticsearch's built-in ``logs``
    template takes the documents), but with the wrong field types. The flag: whether a
    template is missing."""
    missing: list[str] = []
    outdated: list[str] = []
    lifecycle = data_streams
    if data_streams:  # without ILM/ISM there is no policy, and the settings do not name it
        policy = read_installed(client, policy_request(client.kind))
        lifecycle = policy.state != "unavailable"
        if policy.state in ("missing", "outdated"):
            (missing if policy.state == "missing" else outdated).append(f"policy {POLICY_NAME}")
    wanted = template_requests(
        client.kind, data_streams=data_streams, lifecycle=lifecycle, flat_object=flat_object
    )
    for req in wanted:
        found = read_installed(client, req)
        if found.state == "missing":
            missing.append(req.name)
        elif found.state == "outdated":
            outdated.append(req.name)
    if missing:
        detail = f"missing {', '.join(missing)}: run otsentry es setup"
        return Check("templates", Status.WARN, detail), missing != [f"policy {POLICY_NAME}"]
    if outdated:
        detail = f"outdated {', '.join(outdated)}: run otsentry es setup"
        return Check("templates", Status.WARN, detail), False
    return Check("templates", Status.OK, "installed and current"), False


def check_document(doc_id: str, now: datetime) -> dict[str, Any]:
    """The test document ``es check`` writes: an ``event`` (not an ``alert``, so Elastic
    Security's External Alerts rule ignores it)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "@timestamp": stamp,
        "message": "otsentry es check: test write, deleted right away",
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["info"],
            "action": "otsentry-check",
            "dataset": "otsentry.alert",
            "module": "otsentry",
            "id": doc_id,
            "created": stamp,
        },
        "tags": ["otsentry", "otsentry-check"],
        "observer": {"type": "sensor", "vendor": MANAGED_BY, "product": MANAGED_BY},
    }


def _write_check(client: ClusterClient, namespace: str) -> Check:
    target = stream_name("otsentry.alert", namespace)
    doc_id = f"{CHECK_ID_PREFIX}{uuid.uuid4()}"
    doc = check_document(doc_id, datetime.now(UTC))
    status, answer = client.request("PUT", f"/{target}/_create/{doc_id}", doc, {"refresh": "true"})
    if status not in (200, 201) or not isinstance(answer, Mapping):
        return Check("test write", Status.FAIL, f"{target}: HTTP {status}: {_error_text(answer)}")
    index = str(answer.get("_index", target))
    status, answer = client.request("DELETE", f"/{index}/_doc/{doc_id}", None, {"refresh": "true"})
    if status not in (200, 202):
        return Check(
            "test write",
            Status.WARN,
            f"wrote {doc_id} to {target} but could not delete it: HTTP {status}: {_error_text(answer)}",
        )
    return Check("test write", Status.OK, f"created and deleted {doc_id} in {target}")


def check_cluster(
    client: ClusterClient, *, namespace: str | None = None, data_streams: bool | None = None
) -> list[Check]:
    """Connectivity, version and distribution, privileges, templates, a test write. An
    unreachable cluster gives one failed ``connectivity`` check and nothing more."""
    settings = client.settings
    ns = namespace if namespace is not None else settings.namespace
    streams = settings.data_streams if data_streams is None else data_streams
    try:
        info = client.info()
    except ClusterUnavailable as exc:
        return [Check("connectivity", Status.FAIL, str(exc))]
    checks = [
        Check(
            "connectivity", Status.OK, f"{settings.display_url} ({info.get('cluster_name', '?')})"
        )
    ]
    try:
        checks.append(_version_check(client, info))
        checks.append(
            _es_privileges(client) if client.kind == "elasticsearch" else _os_privileges(client)
        )
        try:
            _, numbers = version_of(info)
            flat = client.kind == "elasticsearch" or not numbers or numbers >= FLAT_OBJECT_SINCE
            templates, missing = _templates_check(client, streams, flat)
        except SetupError as exc:
            templates, missing = Check("templates", Status.FAIL, str(exc)), True
        checks.append(templates)
        if missing:  # a first write would create the stream with the wrong mapping, for good
            reason = "not tried while templates are missing (run otsentry es setup first)"
            checks.append(Check("test write", Status.SKIPPED, reason))
        else:
            checks.append(_write_check(client, ns))
    except ClusterUnavailable as exc:
        checks.append(Check("connectivity", Status.FAIL, f"lost the cluster: {exc}"))
    return checks
