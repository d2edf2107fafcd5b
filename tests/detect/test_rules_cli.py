"""``otsentry rules list|validate|test``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from otsentry.cli.app import app
from tests.detect.conftest import PCAPS, RULES

runner = CliRunner()
GOOD = (RULES / "modbus_listen_only.yml").read_text()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["rules", *args])
    return result.exit_code, result.stdout, result.stderr


def test_validate_builtin_pack() -> None:
    code, out, err = run("validate")
    assert code == 0, err
    assert out.strip().endswith("rules valid")
    assert int(out.split()[0]) > 0


def test_validate_reports_every_error_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        GOOD.replace("rev: 2", "rev: 0").replace("condition: selection", "condition: sel")
    )
    broken = tmp_path / "broken.yml"
    broken.write_text(GOOD.replace("level: high", "level: severe"))
    code, _, err = run("validate", str(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [
        f"{bad}:2: rev: expected a number at least 1, got 0",
        f"{broken}:9: level: expected one of: informational, low, medium, high, critical; "
        "got 'severe'",
    ]
    bad.write_text(GOOD.replace("condition: selection", "condition: sel"))
    code, _, err = run("validate", str(bad))
    assert code == 2
    assert err.strip() == (
        f"{bad}:15: detection.condition: unknown selection 'sel' at column 1 (selections: selection)"
    )


def test_list_shows_rules() -> None:
    code, out, _ = run("list", str(RULES))
    assert code == 0
    assert "4 rules" in out
    assert "OTS-TEST-MODBUS-LISTEN-ONLY" in out and "T0814" in out
    code, out, _ = run("list", str(RULES), "--builtin")
    assert "OTS-TEST-MODBUS-LISTEN-ONLY" in out and "OTS-MODBUS-FORCE-LISTEN-ONLY" in out


def test_fixtures_pass_and_fail(tmp_path: Path) -> None:
    code, out, _ = run("test", str(RULES))
    assert code == 0
    assert out.strip().splitlines()[-1] == "4 passed, 0 failed, 0 without fixtures"
    failing = tmp_path / "failing.yml"
    failing.write_text(GOOD.replace("sub_function: 0, unit_id: 1}", "sub_function: 4, unit_id: 1}"))
    code, out, _ = run("test", str(failing))
    assert code == 1
    assert "FAIL OTS-TEST-MODBUS-LISTEN-ONLY" in out
    assert "fixtures.nomatch[0]: FAILED (1 match)" in out


def test_pcap_replay_prints_matches() -> None:
    code, out, _ = run("test", str(RULES), "--pcap", str(PCAPS / "modbus_attacks.pcap"))
    assert code == 0
    lines = out.strip().splitlines()
    listen = [line for line in lines[:-1] if "OTS-TEST-MODBUS-LISTEN-ONLY" in line]
    assert len(listen) == 1
    assert listen[0].endswith(
        "OTS-TEST-MODBUS-LISTEN-ONLY rev 2 high 10.10.30.66 -> 10.10.30.5:502 "
        "listen-only from 10.10.30.66 to 10.10.30.5 unit 1"
    )
    assert lines[-1].startswith("738 events, ")
    assert "OTS-TEST-MODBUS-ADDRESS-SCAN 6" in lines[-1]


def test_missing_path_is_an_error() -> None:
    code, _, err = run("validate", "/nonexistent/rules")
    assert code == 2
    assert "no such file or directory" in err
