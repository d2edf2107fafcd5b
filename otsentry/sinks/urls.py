"""Cluster URLs: checked before use, and shown without credentials."""

from __future__ import annotations

from urllib.parse import urlsplit


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a cluster, or None. Credentials inside a URL are refused: they
    would end up in shell history, process lists and logs (use the config or the environment)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, got {url!r}"
    if not parts.hostname:
        return f"no host in {url!r}"
    if parts.username is not None or parts.password is not None:
        return (
            "credentials in the URL are not accepted; give them in the config file or the "
            "environment (OTSENTRY_ES_API_KEY, OTSENTRY_ES_USERNAME/OTSENTRY_ES_PASSWORD, ...)"
        )
    if port == 0:
        return f"port 0 in {url!r}"
    return None


def display_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to print and log."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"
