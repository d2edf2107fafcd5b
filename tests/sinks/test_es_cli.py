"""``otsentry es setup|check`` as a user runs them, against the in-memory OpenSearch server."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from otsentry.cli.app import app
from otsentry.sinks.routing import DATASETS, template_name


def otsentry(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def closed_port() -> str:
    """A local URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def outcomes(result: Result) -> dict[str, str]:
    (cluster,) = json.loads(result.stdout)["clusters"]
    return {step["what"]: step["outcome"] for step in cluster["steps"]}


def index_templates(url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_index_template") as resp:
        body: dict[str, Any] = json.load(resp)
    return sorted(t["name"] for t in body["index_templates"])


def test_setup_then_setup_again(osmem_url: str) -> None:
    first = otsentry("es", "setup", "--opensearch", osmem_url, "--no-data-streams", "--json")
    assert first.exit_code == 0, first.output
    done = outcomes(first)
    assert done["lifecycle policy otsentry"] == "skipped"
    assert [w for w, o in done.items() if o != "created"] == ["lifecycle policy otsentry"]
    assert index_templates(osmem_url) == sorted(template_name(d) for d in DATASETS)
    second = otsentry("es", "setup", "--opensearch", osmem_url, "--no-data-streams", "--json")
    assert second.exit_code == 0
    assert set(outcomes(second).values()) == {"skipped", "unchanged"}


def test_setup_table_on_stderr(osmem_url: str) -> None:
    result = otsentry("es", "setup", "--opensearch", osmem_url)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "index template logs-otsentry.alert" in result.stderr
    assert result.stderr.count(" created ") == 14
    assert "skipped" in result.stderr


def test_dry_run_prints_the_requests_and_sends_nothing(osmem_url: str) -> None:
    result = otsentry("es", "setup", "--opensearch", osmem_url, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "PUT /_component_template/otsentry@mappings\n{" in result.stdout
    assert "PUT /_index_template/metrics-otsentry.stats\n{" in result.stdout
    assert index_templates(osmem_url) == []
    as_json = otsentry("es", "setup", "--opensearch", osmem_url, "--dry-run", "--json")
    (cluster,) = json.loads(as_json.stdout)["clusters"]
    steps = {s["path"]: s for s in cluster["steps"]}
    assert steps["/_index_template/logs-otsentry.alert"]["body"]["priority"] == 200
    assert {s["outcome"] for s in cluster["steps"]} == {"planned"}


def test_check_after_setup(osmem_url: str) -> None:
    assert otsentry("es", "setup", "--opensearch", osmem_url, "--no-data-streams").exit_code == 0
    result = otsentry("es", "check", "--opensearch", osmem_url, "--no-data-streams", "--json")
    assert result.exit_code == 0, result.output
    (cluster,) = json.loads(result.stdout)["clusters"]
    assert cluster["ok"] is True
    checks = {c["name"]: c["status"] for c in cluster["checks"]}
    assert checks == {
        "connectivity": "ok",
        "version": "ok",
        "privileges": "skipped",
        "templates": "ok",
        "test write": "ok",
    }


def test_check_an_unreachable_cluster_fails_in_one_line() -> None:
    url = closed_port()
    result = otsentry("es", "check", "--opensearch", url)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {url}: connectivity: connection refused"]
    assert "Traceback" not in result.output


def test_setup_on_an_unreachable_cluster() -> None:
    url = closed_port()
    result = otsentry("es", "setup", "--es", url)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot reach {url}: connection refused"


def test_credentials_in_the_url_are_refused() -> None:
    result = otsentry("es", "setup", "--es", "http://u:p@127.0.0.1:9200")
    assert result.exit_code == 2
    assert "credentials in the URL are not accepted" in result.stderr
    assert "p@" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no cluster"),
        (("--opensearch", "http://127.0.0.1:9", "--namespace", "Bad-NS"), "--namespace"),
        (("--es", "ftp://host"), "expected an http:// or https:// URL"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    empty = tmp_path / "otsentry.yaml"
    empty.write_text("{}\n")
    result = otsentry("es", "check", "--config", str(empty), *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_url_and_namespace_from_the_config(osmem_url: str, tmp_path: Path) -> None:
    config = tmp_path / "otsentry.yaml"
    config.write_text(
        f"outputs:\n  opensearch:\n    url: {osmem_url}\n    namespace: plant1\n"
        "    data_streams: false\n"
    )
    assert otsentry("es", "setup", "--config", str(config)).exit_code == 0
    result = otsentry("es", "check", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    (cluster,) = json.loads(result.stdout)["clusters"]
    write = {c["name"]: c["detail"] for c in cluster["checks"]}["test write"]
    assert write.endswith("in logs-otsentry.alert-plant1")
