"""Test-only transport node: lets the Elasticsearch client talk to osmem-server.

The 8.x client sends ``application/vnd.elasticsearch+json; compatible-with=8`` media types, which
the in-memory OpenSearch-compatible server answers with 406, and checks the ``X-Elastic-Product``
response header. This node sends plain JSON / NDJSON media types and adds the header. Real
clusters never need it.
"""

from __future__ import annotations

from typing import Any

from elastic_transport import HttpHeaders, NodeConfig, Urllib3HttpNode
from elastic_transport._node._base import NodeApiResponse
from elastic_transport.client_utils import DEFAULT


class PlainJsonNode(Urllib3HttpNode):
    """Urllib3 node with plain JSON media types and the product header filled in."""

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)

    def perform_request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: Any = DEFAULT,
    ) -> NodeApiResponse:
        plain = HttpHeaders(headers or {})
        for name in ("accept", "content-type"):
            value = plain.get(name)
            if value and "vnd.elasticsearch" in value:
                plain[name] = "application/x-ndjson" if "x-ndjson" in value else "application/json"
        resp = super().perform_request(
            method, target, body=body, headers=plain, request_timeout=request_timeout
        )
        resp.meta.headers["x-elastic-product"] = "Elasticsearch"
        return resp
