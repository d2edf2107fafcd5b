"""The wheel: dissectors/ and rules/ ship inside the otsentry namespace and replay works from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_replays_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    wheel = next(wheels.glob("otsentry-*.whl"))
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "otsentry/dissectors/__init__.py" in names
    assert "otsentry/rules/__init__.py" in names
    assert "otsentry/data/kibana.ndjson" in names
    assert "otsentry/data/attack_ics.json" in names
    assert not any(line.startswith(("dissectors/", "rules/")) for line in names.split())

    env_dir = tmp_path / "venv"
    # the dependencies come from this interpreter's site-packages; otsentry itself from the wheel
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import otsentry, otsentry.dissectors, otsentry.rules; "
            "print(otsentry.__file__); print(otsentry.dissectors.__file__); "
            "print(otsentry.rules.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=elsewhere,
        env=env,
    ).stdout.split()
    site = str(env_dir)
    assert all(path.startswith(site) for path in where), where

    capture = elsewhere / "cell.pcap"
    wrpcap(
        str(capture),
        [
            Ether() / IP(src="10.1.1.10", dst="10.1.1.5") / TCP(sport=40000, dport=502, flags="S"),
            Ether() / IP(src="10.1.1.5", dst="10.1.1.10") / TCP(sport=502, dport=40000, flags="SA"),
        ],
    )
    res = subprocess.run(
        [
            str(env_dir / "bin" / "otsentry"),
            "replay",
            "cell.pcap",
            "--out",
            "out",
            "--quiet",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["packets"] == 2
    assert (elsewhere / "out" / "events.ndjson").is_file()
    # the compiled module came along (the machines that build this have a C compiler)
    assert any(name.startswith("otsentry/_speedups") for name in names.split()), names
    version = subprocess.run(
        [str(env_dir / "bin" / "otsentry"), "version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=elsewhere,
        env={k: v for k, v in env.items() if k != "OTSENTRY_PURE_PYTHON"},
    ).stdout
    assert "speedups: compiled" in version, version
