"""A small plant for the live sensor: a PLC and an HMI joined by a veth pair, the HMI's port
mirrored with tc to a veth whose peer sits alone in a sensor namespace.

    plc ns                hmi ns                                   sensor ns
    plc0 10.10.30.5 <---> hmi0 10.10.30.10
                          tc clsact on hmi0, ingress and egress:
                          matchall action mirred egress mirror --> mirror0 <---> span0 (no address)

(u32 matching every frame stands in for matchall in kernels built without cls_matchall.)
With ``sender=True`` a fourth namespace holds ``send0``, whose peer ``feed0`` in the HMI
namespace is redirected (``mirred egress redirect``) to mirror0: what a sender replays into
``send0`` reaches ``span0`` like mirrored plant traffic, and nothing else (not the HMI's stack,
not the PLC link).

Every namespace is named ``ots-lp-<pid>-<n>-<role>`` (n counts the plants of a process). IPv6 is
off in each (no router solicitations or DAD on the mirror), and offloads are off on every veth
end, so frames are wire-sized and carry real checksums. The traffic is real: the lab's pymodbus,
python-snap7 and asyncua roles (pcaps/lab/roles/) run inside the namespaces through
``pcaps/make_lab.py --run-role``.

Run as a module, this file sends the Modbus requests the rule pack alerts on
(``python -m tests.live.plant modbus-extras IP``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
MAKE_LAB = REPO / "pcaps" / "make_lab.py"
NS_PREFIX = "ots-lp-"
PLC_IP, HMI_IP, PREFIX_LEN, MTU = "10.10.30.5", "10.10.30.10", 24, 1500
#: the lab's plc1 (Schneider Electric) and hmi (Advantech) addresses, so assets get vendors
PLC_MAC, HMI_MAC = "00:80:f4:0c:30:05", "00:d0:c9:1a:30:0a"
PLC_IF, HMI_IF, MIRROR_IF, SPAN_IF = "plc0", "hmi0", "mirror0", "span0"
SEND_IF, FEED_IF = "send0", "feed0"
#: ethtool -K features switched off on every veth end (rx and tx: checksum offloads)
OFFLOADS = ("tso", "gso", "gro", "lro", "tx", "rx")
#: ethtool -k lines that must read "off" afterwards
OFFLOAD_STATES = (
    "tcp-segmentation-offload",
    "generic-segmentation-offload",
    "generic-receive-offload",
    "large-receive-offload",
    "tx-checksumming",
    "rx-checksumming",
)
TOOLS = ("ip", "tc", "ethtool", "tcpdump")
STACKS = ("pymodbus", "snap7")
READY_TIMEOUT = 30.0
PORTS = {"modbus": 502, "s7comm": 102, "opcua": 4840}
#: tc classifiers that match every frame, in order of preference
MATCH_ALL = (("matchall",), ("u32", "match", "u32", "0", "0"))

_plants = itertools.count(1)


class PlantError(RuntimeError):
    """The plant cannot be built, or something in it failed; the message says why."""


def run(
    argv: list[str], *, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a command; raise PlantError with its stderr when it fails and check is set."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise PlantError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def netns(ns: str, argv: list[str]) -> list[str]:
    """argv that runs a command inside namespace ns."""
    return ["ip", "netns", "exec", ns, *argv]


def _kill_ns_pids(ns: str) -> None:
    for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete plant namespaces that a killed earlier run left behind (its pid is gone)."""
    stale = []
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = re.fullmatch(rf"{NS_PREFIX}(\d+)-[\w-]+", name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_ns_pids(name)
            run(["ip", "netns", "del", name], check=False)
            stale.append(name)
    return stale


def unavailable() -> str | None:
    """Why the plant cannot be built here (None when it can): not root, a tool or protocol
    stack missing, or no network namespaces, veth, clsact or mirred in this kernel."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc, tcpdump)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return "needs " + ", ".join(missing) + " on PATH"
    stacks = [name for name in STACKS if importlib.util.find_spec(name) is None]
    if stacks:
        return f"needs the {', '.join(stacks)} package(s) for {sys.executable}"
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    steps = [
        ["ip", "netns", "add", probe],
        ["ip", "-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "b0"],
        netns(probe, ["tc", "qdisc", "add", "dev", "a0", "clsact"]),
    ]
    try:
        for argv in steps:
            proc = run(argv, check=False)
            if proc.returncode != 0:
                return f"{' '.join(argv)} failed here: {proc.stderr.strip()}"
        try:
            mirror_filter(probe, "a0", "ingress", "b0")
        except PlantError as exc:
            return str(exc)
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def mirror_filter(ns: str, iface: str, direction: str, target: str, *, only: bool = False) -> str:
    """``tc filter add dev IFACE DIRECTION <match all> action mirred egress mirror dev TARGET``
    in namespace ns (``redirect`` instead of ``mirror`` when only is set: the frame goes to
    TARGET and nowhere else); the classifier is matchall, or u32 matching every frame in kernels
    built without cls_matchall. Returns the classifier used."""
    how = "redirect" if only else "mirror"
    action = ["action", "mirred", "egress", how, "dev", target]
    tc = ["tc", "filter", "add", "dev", iface, direction, "protocol", "all"]
    errors = []
    for classifier in MATCH_ALL:
        proc = run(netns(ns, [*tc, *classifier, *action]), check=False)
        if proc.returncode == 0:
            return classifier[0]
        errors.append(f"{classifier[0]}: {proc.stderr.strip().splitlines()[0]}")
    raise PlantError(f"cannot mirror {iface} {direction} with tc ({'; '.join(errors)})")


def counters(ns: str, iface: str) -> dict[str, int]:
    """The interface's /sys/class/net/IF/statistics counters, read inside its namespace."""
    path = f"/sys/class/net/{iface}/statistics"
    script = f'cd {path} && for f in *; do echo "$f $(cat $f)"; done'
    out = run(netns(ns, ["sh", "-c", script])).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def packet_sockets(ns: str, iface: str) -> int:
    """How many packet sockets are bound to iface in namespace ns (/proc/net/packet)."""
    index = run(netns(ns, ["cat", f"/sys/class/net/{iface}/ifindex"])).stdout.strip()
    rows = run(netns(ns, ["cat", "/proc/net/packet"])).stdout.splitlines()[1:]
    return sum(1 for row in rows if len(row.split()) > 4 and row.split()[4] == index)


class Plant:
    """Builds the namespaces and links on enter and always removes them on exit."""

    def __init__(self, *, sender: bool = False) -> None:
        self.prefix = f"{NS_PREFIX}{os.getpid()}-{next(_plants)}-"
        self.plc = self.prefix + "plc"
        self.hmi = self.prefix + "hmi"
        self.sensor = self.prefix + "sensor"
        self.send = self.prefix + "send" if sender else ""
        #: the tc classifier the mirror uses (matchall, or u32 where the kernel lacks it)
        self.classifier = ""
        self._created: list[str] = []

    def __enter__(self) -> Plant:
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def _add_ns(self, ns: str) -> None:
        run(["ip", "netns", "add", ns])
        self._created.append(ns)
        for key in ("all", "default"):
            run(netns(ns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1"]))
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _veth(self, ns: str, name: str, peer_ns: str, peer: str) -> None:
        veth = ["type", "veth", "peer", "name", peer, "mtu", str(MTU), "netns", peer_ns]
        run(["ip", "-n", ns, "link", "add", name, "mtu", str(MTU), *veth])
        for space, iface in ((ns, name), (peer_ns, peer)):
            self._offloads_off(space, iface)
            run(["ip", "-n", space, "link", "set", iface, "up"])

    def _offloads_off(self, ns: str, iface: str) -> None:
        argv = ["ethtool", "-K", iface]
        for feature in OFFLOADS:
            argv += [feature, "off"]
        run(netns(ns, argv))
        state = run(netns(ns, ["ethtool", "-k", iface])).stdout
        for feature in OFFLOAD_STATES:
            match = re.search(rf"^{feature}: (\w+)", state, re.MULTILINE)
            if match is None or match.group(1) != "off":
                raise PlantError(f"{ns}/{iface}: {feature} is not off")

    def _mirror(self, iface: str, directions: tuple[str, ...], *, only: bool = False) -> None:
        """Mirror what crosses iface (in the HMI namespace) to mirror0 (redirect it there when
        only is set)."""
        run(netns(self.hmi, ["tc", "qdisc", "add", "dev", iface, "clsact"]))
        for direction in directions:
            self.classifier = mirror_filter(self.hmi, iface, direction, MIRROR_IF, only=only)

    def build(self) -> None:
        """Create the namespaces, the links and the mirror."""
        remove_stale()
        for ns in (self.plc, self.hmi, self.sensor, self.send):
            if ns:
                self._add_ns(ns)
        self._veth(self.plc, PLC_IF, self.hmi, HMI_IF)
        self._veth(self.hmi, MIRROR_IF, self.sensor, SPAN_IF)
        run(["ip", "-n", self.plc, "link", "set", PLC_IF, "address", PLC_MAC])
        run(["ip", "-n", self.hmi, "link", "set", HMI_IF, "address", HMI_MAC])
        run(["ip", "-n", self.plc, "addr", "add", f"{PLC_IP}/{PREFIX_LEN}", "dev", PLC_IF])
        run(["ip", "-n", self.hmi, "addr", "add", f"{HMI_IP}/{PREFIX_LEN}", "dev", HMI_IF])
        self._mirror(HMI_IF, ("ingress", "egress"))
        if self.send:
            self._veth(self.send, SEND_IF, self.hmi, FEED_IF)
            run(["ip", "-n", self.hmi, "link", "set", FEED_IF, "arp", "off"])
            self._mirror(FEED_IF, ("ingress",), only=True)

    def teardown(self) -> None:
        """Kill what runs in the plant's namespaces and delete them (idempotent)."""
        for ns in reversed(self._created):
            _kill_ns_pids(ns)
            run(["ip", "netns", "del", ns], check=False)
        self._created.clear()

    def span_counters(self) -> dict[str, int]:
        """span0's counters (sensor namespace)."""
        return counters(self.sensor, SPAN_IF)

    def mirror_counters(self) -> dict[str, int]:
        """mirror0's counters (HMI namespace): its rx moves only if span0 transmits."""
        return counters(self.hmi, MIRROR_IF)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Tcpdump:
    """tcpdump -i span0 -w FILE in the sensor namespace: the reference capture beside the
    sensor, started listening and stopped flushed."""

    def __init__(self, plant: Plant, path: Path) -> None:
        self.plant = plant
        self.path = path
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._lines.append(line.rstrip())
            if "listening on" in line:
                self._ready.set()

    def start(self, timeout: float = 10.0) -> None:
        """Start tcpdump; return once it listens."""
        argv = ["tcpdump", "-i", SPAN_IF, "-U", "--immediate-mode", "-s", "0", "-n", "-Z", "root"]
        argv += ["--time-stamp-precision=micro", "-w", str(self.path)]
        self._proc = subprocess.Popen(
            netns(self.plant.sensor, argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise PlantError("tcpdump did not start: " + " | ".join(self._lines))

    def stop(self) -> tuple[int, int]:
        """Stop tcpdump with SIGINT; return (packets captured, packets dropped by kernel)."""
        if self._proc is None:
            raise PlantError("tcpdump was not started")
        self._proc.send_signal(signal.SIGINT)
        try:
            rc = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PlantError("tcpdump did not stop on SIGINT") from None
        self._proc = None
        deadline = time.monotonic() + 5
        text = ""
        while time.monotonic() < deadline:
            text = "\n".join(self._lines)
            if "dropped by kernel" in text:
                break
            time.sleep(0.02)
        captured = re.search(r"(\d+) packets? captured", text)
        dropped = re.search(r"(\d+) packets? dropped by kernel", text)
        if rc != 0 or captured is None or dropped is None:
            raise PlantError(f"tcpdump failed (exit {rc}): {text}")
        return int(captured.group(1)), int(dropped.group(1))

    def kill(self) -> None:
        """Stop tcpdump at once (error paths)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None


@dataclass
class Roles:
    """The lab's protocol roles, each run in a plant namespace; servers stay up until stop()."""

    plant: Plant
    logs: Path
    _servers: list[subprocess.Popen[str]] = field(default_factory=list)
    _files: list[IO[str]] = field(default_factory=list)

    def _popen(self, ns: str, argv: list[str], log: str) -> subprocess.Popen[str]:
        err = (self.logs / f"{log}.log").open("w")
        self._files.append(err)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return subprocess.Popen(
            netns(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO,
            env=env,
        )

    def _role(self, ns: str, role: str, args: dict[str, object]) -> subprocess.Popen[str]:
        argv = [sys.executable, "-u", str(MAKE_LAB), "--run-role", role]
        return self._popen(ns, [*argv, "--role-args", json.dumps(args)], role)

    def start_servers(self, opcua: bool = False) -> None:
        """pymodbus (pump station) and python-snap7 (S7-300) servers on the PLC, and an asyncua
        server when opcua is set; return once each listens."""
        servers = [
            ("modbus-server", {"ip": PLC_IP, "device": "pump-station", "seed": 1005}),
            ("s7-server", {"ip": PLC_IP, "seed": 1006}),
        ]
        if opcua:
            servers.append(("opcua-server", {"ip": PLC_IP, "seed": 1007}))
        started = [(role, self._role(self.plant.plc, role, args)) for role, args in servers]
        for role, popen in started:
            self._servers.append(popen)
            self._wait_ready(role, popen)

    def _wait_ready(self, role: str, popen: subprocess.Popen[str]) -> None:
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
                log = (self.logs / f"{role}.log").read_text(errors="replace")
                raise PlantError(f"{role} did not start:\n{_tail(log)}")

    def traffic(self, seconds: float, opcua: bool = False) -> list[str]:
        """The HMI's session: Modbus polling with writes, S7 polling with writes (and an OPC UA
        session when opcua is set) side by side for about ``seconds``, then the Modbus requests
        the rule pack alerts on. Returns the clients' summaries; fails on any client error."""
        hmi = self.plant.hmi
        clients = [
            ("modbus-hmi", {"plc": PLC_IP, "rtu": PLC_IP, "period": 0.1, "duration": seconds}),
            ("s7-hmi", {"plc": PLC_IP, "period": 0.1, "duration": seconds}),
        ]
        if opcua:
            clients.append(("opcua-client", {"server": PLC_IP, "duration": max(seconds, 3.0)}))
        started = [(role, self._role(hmi, role, args)) for role, args in clients]
        outputs = [self._finish(role, popen, seconds) for role, popen in started]
        extras = [sys.executable, "-m", "tests.live.plant", "modbus-extras", PLC_IP]
        outputs.append(self._finish("modbus-extras", self._popen(hmi, extras, "modbus-extras"), 0))
        return outputs

    def _finish(self, role: str, popen: subprocess.Popen[str], seconds: float) -> str:
        try:
            out, _ = popen.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
            raise PlantError(f"{role} ran past its time") from None
        if popen.returncode != 0:
            log = (self.logs / f"{role}.log").read_text(errors="replace")
            raise PlantError(f"{role} failed ({popen.returncode}):\n{_tail(log)}")
        return out.strip()

    def stop(self) -> None:
        """SIGTERM the servers (SIGKILL what does not exit) and close the logs."""
        for popen in self._servers:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for popen in self._servers:
            try:
                popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=5)
        for f in self._files:
            f.close()
        self._servers.clear()
        self._files.clear()


def wait_for_sockets(
    plant: Plant, count: int, popen: subprocess.Popen[str], timeout: float
) -> None:
    """Wait until ``count`` packet sockets are bound to span0, or fail if popen exits first."""
    deadline = time.monotonic() + timeout
    while packet_sockets(plant.sensor, SPAN_IF) < count:
        if popen.poll() is not None:
            raise PlantError(f"exited ({popen.returncode}) before capturing on {SPAN_IF}")
        if time.monotonic() > deadline:
            raise PlantError(f"no capture socket on {SPAN_IF} after {timeout:.0f} s")
        time.sleep(0.05)


def sensor_available() -> str | None:
    """Why ``otsentry sensor`` cannot run (None when the command exists)."""
    argv = [sys.executable, "-m", "otsentry", "sensor", "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        return "`otsentry sensor` is not available yet: " + _tail(proc.stderr or proc.stdout, 2)
    return None


class Sensor:
    """``otsentry sensor -i span0 --out OUT ARGS`` run in the sensor namespace; its stdout
    and stderr go to OUT-sensor.log beside OUT."""

    def __init__(self, plant: Plant, out: Path, *args: str) -> None:
        self.plant = plant
        self.out = out
        self.log = out.with_name(out.name + "-sensor.log")
        argv = [sys.executable, "-m", "otsentry", "sensor", "-i", SPAN_IF, "--out", str(out)]
        self.argv = netns(plant.sensor, [*argv, *args])
        self._proc: subprocess.Popen[str] | None = None

    def start(self, sockets: int = 1, timeout: float = 30.0) -> None:
        """Start the sensor; return once it has ``sockets`` more capture sockets on span0."""
        before = packet_sockets(self.plant.sensor, SPAN_IF)
        with self.log.open("w") as log:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, text=True, cwd=REPO
            )
        try:
            wait_for_sockets(self.plant, before + sockets, self._proc, timeout)
        except PlantError as exc:
            self.kill()
            raise PlantError(f"otsentry sensor {exc}:\n{self.output()}") from None

    def signal(self, signum: int) -> None:
        """Send a signal to the sensor."""
        assert self._proc is not None
        self._proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the sensor to exit; its exit code (PlantError if it runs past timeout)."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PlantError(f"otsentry sensor still ran after {timeout:.0f} s") from None

    def running(self) -> bool:
        """Whether the sensor process is still running."""
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        """The last lines the sensor wrote to stdout and stderr."""
        return _tail(self.log.read_text(errors="replace")) if self.log.exists() else ""

    def stats(self) -> dict[str, Any]:
        """OUT/stats.json."""
        data: dict[str, Any] = json.loads((self.out / "stats.json").read_text())
        return data

    def kill(self) -> None:
        """Stop the sensor at once (error paths)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)


async def _modbus_extras(ip: str) -> list[str]:
    """FC 8 sub 0 (echo), sub 4 (force listen only) and sub 1 (restart), FC 43/14 and FC 17."""
    import asyncio

    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient(ip, port=PORTS["modbus"], timeout=2, retries=0)
    if not await client.connect():
        raise SystemExit(f"modbus-extras: cannot connect to {ip}")
    done: list[str] = []
    try:
        calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = [
            ("diag_query_data", (b"\x12\x34",), {}),
            # no answer comes to sub-function 4 by the standard; pymodbus does not wait for one
            ("diag_force_listen_only", (), {}),
            ("diag_restart_communication", (False,), {}),
            ("read_device_information", (), {"read_code": 1}),
            ("report_device_id", (), {}),
        ]
        for method, args, kwargs in calls:
            result = await getattr(client, method)(*args, **kwargs)
            if method != "diag_force_listen_only" and result.isError():
                raise SystemExit(f"modbus-extras: {method}: {result}")
            done.append(method)
            await asyncio.sleep(0.05)
    finally:
        client.close()
    await asyncio.sleep(0.2)
    return done


def main(argv: list[str]) -> int:
    """``modbus-extras IP``: send the requests the rule pack alerts on, print what was done."""
    import asyncio

    if len(argv) != 2 or argv[0] != "modbus-extras":
        print("usage: python -m tests.live.plant modbus-extras IP", file=sys.stderr)
        return 2
    print("modbus-extras: " + ", ".join(asyncio.run(_modbus_extras(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
