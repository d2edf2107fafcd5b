"""Connections to Elasticsearch (official ``elasticsearch`` 8.x client) and OpenSearch
(``opensearch-py``), built from the config and the environment.

The Elasticsearch client is pinned to 8.x: it sends ``compatible-with=8``, which 8.x clusters and
9.x clusters (REST compatibility) both accept, while the 9.x client is refused by 8.x clusters — so
one install serves both. Clients are built with ``max_retries=0``: the bulk helper owns 429
backoff and the sink owns outages (the spool). Both libraries are imported only when a cluster is
actually used.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from otsentry.config import ClusterConfig, Config, ConfigError
from otsentry.sinks.urls import display_url, url_problem

ClusterKind = Literal["elasticsearch", "opensearch"]

#: environment variable prefix per kind: ``<prefix>API_KEY``, ``USERNAME``, ``PASSWORD``,
#: ``CA_FILE``, ``FINGERPRINT``
ENV_PREFIX: dict[str, str] = {"elasticsearch": "OTSENTRY_ES_", "opensearch": "OTSENTRY_OPENSEARCH_"}


class ClusterUnavailable(Exception):
    """The cluster could not be reached: connection refused or reset, timeout, TLS failure."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Everything needed to reach one cluster. Secrets are kept out of ``repr``."""

    kind: ClusterKind
    hosts: tuple[str, ...]
    namespace: str = "default"
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    fingerprint: str | None = None
    verify_certs: bool = True
    request_timeout: float = 10.0
    data_streams: bool = True
    options: ClusterConfig = field(default_factory=ClusterConfig, repr=False)

    @property
    def display_url(self) -> str:
        """The first host, without credentials: safe for logs and stats."""
        return display_url(self.hosts[0]) if self.hosts else "<none>"


def settings_for(
    kind: ClusterKind,
    url: str | None,
    config: Config,
    environ: Mapping[str, str] | None = None,
) -> ClusterSettings:
    """Settings for ``kind``: the URL from ``url`` (a command-line option) or the config's
    ``outputs.<kind>.url``; secrets from the environment, then the config. Raises ConfigError."""
    env = os.environ if environ is None else environ
    section = config.outputs.elasticsearch if kind == "elasticsearch" else config.outputs.opensearch
    options = section or ClusterConfig()
    option = "--es" if kind == "elasticsearch" else "--opensearch"
    target = url or options.url
    if not target:
        raise ConfigError(
            option, None, None, f"no {kind} URL (give {option} URL or outputs.{kind}.url)"
        )
    problem = url_problem(target)
    if problem:
        raise ConfigError(option, None, None, problem)
    prefix = ENV_PREFIX[kind]

    def secret(name: str, configured: str | None) -> str | None:
        value = env.get(prefix + name.upper())
        return value if value else configured

    api_key = secret("api_key", options.api_key)
    if api_key and kind == "opensearch":
        raise ConfigError(
            f"{prefix}API_KEY",
            None,
            None,
            "OpenSearch takes a username and password, not an API key",
        )
    ca_text = env.get(prefix + "CA_FILE")
    ca_file = Path(ca_text).expanduser() if ca_text else options.ca_file
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(str(ca_file), None, None, "CA file not found")
    username = secret("username", options.username)
    password = secret("password", options.password)
    if (username is None) != (password is None):
        raise ConfigError(f"outputs.{kind}", None, None, "username and password go together")
    return ClusterSettings(
        kind=kind,
        hosts=(target.strip().rstrip("/"),),
        namespace=options.namespace,
        api_key=api_key,
        username=username,
        password=password,
        ca_file=ca_file,
        fingerprint=secret("fingerprint", options.fingerprint),
        verify_certs=options.verify_certs,
        request_timeout=options.request_timeout,
        data_streams=options.data_streams,
        options=options,
    )


class ClusterClient:
    """One cluster: the raw client, plain requests that report the HTTP status instead of
    raising, and the kind's bulk helper."""

    def __init__(self, settings: ClusterSettings, raw: Any) -> None:
        self.settings = settings
        self.kind: ClusterKind = settings.kind
        #: the ``Elasticsearch`` or ``OpenSearch`` client object
        self.raw = raw

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return (HTTP status, decoded body). An error status is returned, not
        raised; ClusterUnavailable when the cluster cannot be reached."""
        if params:
            from urllib.parse import urlencode

            path = f"{path}?{urlencode(params)}"
        if self.kind == "elasticsearch":
            return self._es_request(method, path, body)
        return self._os_request(method, path, body)

    def _es_request(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        from elastic_transport import ApiError as TransportApiError
        from elastic_transport import TransportError
        from elasticsearch import ApiError

        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            resp = self.raw.perform_request(method, path, headers=headers, body=body)
        except (ApiError, TransportApiError) as exc:
            return int(exc.meta.status), exc.body
        except TransportError as exc:
            raise ClusterUnavailable(describe_error(exc)) from exc
        return int(resp.meta.status), resp.body

    def _os_request(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        from opensearchpy.exceptions import ConnectionError as OsConnectionError
        from opensearchpy.exceptions import TransportError as OsTransportError

        try:
            result = self.raw.transport.perform_request(method, path, body=body)
        except OsConnectionError as exc:
            raise ClusterUnavailable(describe_error(exc)) from exc
        except OsTransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 500
            return status, exc.info
        return 200, result

    def info(self) -> dict[str, Any]:
        """The cluster's root answer (name, version); ClusterUnavailable if it does not answer
        with 200."""
        status, body = self.request("GET", "/")
        if status != 200 or not isinstance(body, dict):
            raise ClusterUnavailable(f"{self.settings.display_url} answered HTTP {status}")
        return body

    def streaming_bulk(self, actions: Iterable[dict[str, Any]], **kwargs: Any) -> Iterator[Any]:
        """The client library's ``helpers.streaming_bulk`` over ``actions``."""
        if self.kind == "elasticsearch":
            from elasticsearch import helpers as es_helpers

            return iter(es_helpers.streaming_bulk(self.raw, actions, **kwargs))
        from opensearchpy import helpers as os_helpers

        kwargs.pop("flush_after_seconds", None)
        return iter(os_helpers.streaming_bulk(self.raw, actions, **kwargs))

    def close(self) -> None:
        """Release pooled connections."""
        with contextlib.suppress(Exception):  # closing must never fail a run
            self.raw.close()


def connect(settings: ClusterSettings, *, node_class: Any = None) -> ClusterClient:
    """Build the client for ``settings`` (no request is sent). ``node_class`` is for tests: a
    transport node class for the Elasticsearch client (e.g. one that speaks plain JSON)."""
    if settings.kind == "elasticsearch":
        return ClusterClient(settings, _elasticsearch(settings, node_class))
    return ClusterClient(settings, _opensearch(settings))


def _elasticsearch(settings: ClusterSettings, node_class: Any) -> Any:
    from elasticsearch import Elasticsearch
    from elasticsearch.serializer import OrjsonSerializer

    kwargs: dict[str, Any] = {
        "serializer": OrjsonSerializer(),  # bulk action lines and answers: ~5x json's speed
        "max_retries": 0,
        "retry_on_timeout": False,
        "request_timeout": settings.request_timeout,
    }
    if node_class is not None:
        kwargs["node_class"] = node_class
    if settings.api_key:
        kwargs["api_key"] = settings.api_key
    elif settings.username is not None:
        kwargs["basic_auth"] = (settings.username, settings.password or "")
    return Elasticsearch(list(settings.hosts), **kwargs, **_tls(settings))


def _opensearch(settings: ClusterSettings) -> Any:
    from opensearchpy import OpenSearch
    from opensearchpy.serializer import JSONSerializer

    class OrjsonSerializer(JSONSerializer):
        """opensearch-py's JSON serializer on orjson (bulk action lines and answers)."""

        def loads(self, s: str | bytes) -> Any:
            return orjson.loads(s)

        def dumps(self, data: Any) -> Any:
            if isinstance(data, str | bytes):
                return data
            return orjson.dumps(data, default=self.default).decode()

    kwargs: dict[str, Any] = {
        "serializer": OrjsonSerializer(),
        "max_retries": 0,
        "retry_on_timeout": False,
        "timeout": settings.request_timeout,
    }
    if settings.username is not None:
        kwargs["http_auth"] = (settings.username, settings.password or "")
    return OpenSearch(list(settings.hosts), **kwargs, **_tls(settings))


def _tls(settings: ClusterSettings) -> dict[str, Any]:
    """The TLS options both clients take under the same names."""
    options: dict[str, Any] = {"verify_certs": settings.verify_certs}
    if settings.ca_file is not None:
        options["ca_certs"] = str(settings.ca_file)
    if settings.fingerprint:
        options["ssl_assert_fingerprint"] = settings.fingerprint
    if not settings.verify_certs:
        options["ssl_show_warn"] = False
    return options


_TLS = re.compile(r"(certificate verify failed[^()\[\]'\"]*|Fingerprints did not match[^'\"]*)")
_ERRNO = re.compile(r"\[Errno (-?\d+)\] ([^)'\"]+)")


def describe_error(exc: BaseException) -> str:
    """A one-line description of a transport failure, without credentials or tracebacks:
    ``connection refused``, ``timed out``, or the error's first line."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = str(cause)
        tls = _TLS.search(text)
        if tls:
            return f"TLS: {tls.group(1).strip()}"
        match = _ERRNO.search(text)
        if match:
            return match.group(2).strip().lower()
        if isinstance(cause, TimeoutError) or "timed out" in text.lower():
            return "timed out"
        for inner in getattr(cause, "errors", ()) or ():
            if isinstance(inner, BaseException):
                found = describe_error(inner)
                if found != type(inner).__name__:
                    return found
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text[:300]}" if text else name
