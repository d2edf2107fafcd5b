"""The example baseline in baselines/: learned by baselines/make.sh from the lab's learning runs,
and learning it again gives the same files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BASELINES = ROOT / "baselines"
MAKE = BASELINES / "make.sh"
LEARNED_FROM = sorted(
    ["modbus_learn.pcap", "opcua_learn.pcap", "s7comm_learn.pcap"]
    + ["modbus_normal.pcap", "opcua_normal.pcap", "s7comm_normal.pcap"]
)


def _has_baseline_cli() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "otsentry", "baseline", "learn", "--help"],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


pytestmark = pytest.mark.skipif(
    not _has_baseline_cli(), reason="otsentry has no `baseline learn` yet"
)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.suffix == ".yaml" or p.name.endswith(".model.joblib")
    }


def test_example_baseline_is_learned_from_the_learning_runs() -> None:
    files = sorted(BASELINES.glob("*.yaml"))
    assert [p.name for p in files] == ["10.10.30.0_24.yaml"]
    doc = yaml.safe_load(files[0].read_text())
    learning = doc["learning"]
    assert sorted(learning["sources"]) == LEARNED_FROM
    assert learning["sufficient"] is True
    assert set(learning["events_by_protocol"]) >= {"modbus", "s7comm", "opcua"}
    hosts = {h["ip"] for h in doc["aspects"]["assets"]["hosts"]}
    assert hosts == {
        "10.10.30.5",
        "10.10.30.6",
        "10.10.30.7",
        "10.10.30.8",
        "10.10.30.10",
        "10.10.30.20",
    }  # every plant station; never the attacker (.66)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_learning_again_gives_the_same_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", str(MAKE), str(tmp_path)], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    committed, again = _files(BASELINES), _files(tmp_path)
    assert sorted(again) == sorted(committed) and committed
    for name, data in committed.items():
        assert again[name] == data, (
            f"{name} differs when learned again: if learning changed on purpose, run"
            " `sh baselines/make.sh` and commit baselines/"
        )
