"""Run one scenario: plant up, SPAN capture on, servers, clients, everything down again."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from lab.capture import Tcpdump
from lab.plant import LabError, Plant
from lab.scenarios import Proc, Scenario
from lab.verify import Report, verify

MAKE_LAB = Path(__file__).resolve().parents[1] / "make_lab.py"
READY_TIMEOUT = 20.0
CLIENT_GRACE = 30.0


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


class Processes:
    """The role processes of one scenario, each in its host's namespace."""

    def __init__(self, plant: Plant, logs: Path) -> None:
        self.plant = plant
        self.logs = logs
        self._procs: list[subprocess.Popen[str]] = []
        self._files: list[IO[str]] = []

    def log(self, proc: Proc) -> Path:
        """Where a role's stderr goes."""
        return self.logs / f"{proc.host}-{proc.role}.log"

    def start(self, proc: Proc, duration: float | None = None) -> subprocess.Popen[str]:
        """Start a role inside its host's namespace."""
        args = dict(proc.args) | ({"duration": duration} if duration is not None else {})
        argv = [sys.executable, "-u", str(MAKE_LAB), "--run-role", proc.role]
        argv += ["--role-args", json.dumps(args)]
        err = self.log(proc).open("w")
        self._files.append(err)
        popen = subprocess.Popen(
            self.plant.exec_argv(self.plant.ns(proc.host), argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        self._procs.append(popen)
        return popen

    def start_server(self, proc: Proc) -> None:
        """Start a server role and wait until it prints READY."""
        popen = self.start(proc)
        assert popen.stdout is not None
        ready = threading.Event()

        def watch() -> None:
            assert popen.stdout is not None
            for line in popen.stdout:
                if line.strip() == "READY":
                    ready.set()

        threading.Thread(target=watch, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.wait(0.05):
            if popen.poll() is not None or time.monotonic() > deadline:
                log = _tail(self.log(proc))
                raise LabError(f"{proc.role} on {proc.host} did not start:\n{log}")

    def run_clients(self, clients: tuple[Proc, ...], duration: float) -> list[str]:
        """Run the clients side by side; return their stdout, fail on any non-zero exit."""
        started = [(c, self.start(c, duration)) for c in clients]
        outputs = []
        for client, popen in started:
            try:
                out, _ = popen.communicate(timeout=duration + CLIENT_GRACE)
            except subprocess.TimeoutExpired:
                raise LabError(f"{client.role} on {client.host} ran past its time") from None
            if popen.returncode != 0:
                log = _tail(self.log(client))
                raise LabError(
                    f"{client.role} on {client.host} failed ({popen.returncode}):\n{log}"
                )
            outputs.append(out.strip())
        return outputs

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every role still running, SIGKILL what does not exit in time."""
        for popen in self._procs:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for popen in self._procs:
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout)
        for f in self._files:
            f.close()
        self._procs.clear()
        self._files.clear()


def run_scenario(scenario: Scenario, out_dir: Path, *, quick: bool = False) -> Report:
    """Capture scenario into out_dir/<name>.pcap, verify it, and return what it holds."""
    duration = scenario.quick_duration if quick else scenario.duration
    work = Path(tempfile.mkdtemp(prefix=f"otlab-{scenario.name}-"))
    pcap = work / Path(scenario.file).name
    keep = False
    try:
        with Plant() as plant:
            procs = Processes(plant, work)
            dump = Tcpdump(plant, pcap)
            try:
                dump.start()
                for server in scenario.servers:
                    procs.start_server(server)
                outputs = procs.run_clients(scenario.clients, duration)
                time.sleep(0.3)
                procs.stop()
                dump.stop()
            finally:
                procs.stop()
                dump.kill()
        try:
            report = verify(pcap, scenario)
        except LabError as exc:
            keep = True
            raise LabError(f"{exc}\n(capture and logs kept in {work})") from None
        report.client_output = outputs
        report.path = out_dir / scenario.file
        report.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pcap, report.path)
        return report
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
