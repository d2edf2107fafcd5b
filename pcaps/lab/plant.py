"""The plant network: a switch namespace holding a bridge, and one namespace per host.

Every host is a network namespace wired to the bridge by a veth pair. The capture runs on
the bridge, so it sees what a switch mirror port would. Offloads are switched off on every
veth end and on the bridge, so frames are wire-sized (no 64 KB super-segments) and carry
real checksums. IPv6 is off, so the captures hold only the plant's IPv4 traffic and ARP.
The hosts get no default route: nothing they send can leave the 10.10.30.0/24 segment.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass

SUBNET = "10.10.30.0/24"
PREFIX_LEN = 24
MTU = 1500
BRIDGE = "span0"
HOST_IFACE = "eth0"
NS_PREFIX = "otlab"
#: ethtool -K features switched off on every interface of the capture path
OFFLOADS = ("tso", "gso", "gro", "lro", "tx")
#: ethtool -k lines that must read "off" afterwards
OFFLOAD_STATES = (
    "tcp-segmentation-offload",
    "generic-segmentation-offload",
    "generic-receive-offload",
    "large-receive-offload",
    "tx-checksumming",
)


class LabError(RuntimeError):
    """The lab cannot be built, run or verified; the message says why."""


@dataclass(frozen=True)
class Host:
    """One station of the plant."""

    name: str
    ip: str
    mac: str
    vendor: str
    part: str


HOSTS: dict[str, Host] = {
    h.name: h
    for h in (
        Host("plc1", "10.10.30.5", "00:80:f4:0c:30:05", "Schneider Electric", "Modbus/TCP PLC"),
        Host("plc2", "10.10.30.6", "00:1b:1b:3f:30:06", "Siemens", "S7-300 PLC (S7comm)"),
        Host("opcsrv", "10.10.30.7", "00:1e:0b:7a:30:07", "Hewlett Packard", "OPC UA server"),
        Host("rtu1", "10.10.30.8", "00:30:de:4b:30:08", "WAGO", "Modbus/TCP I/O coupler"),
        Host("hmi", "10.10.30.10", "00:d0:c9:1a:30:0a", "Advantech", "HMI panel PC"),
        Host("eng", "10.10.30.20", "00:14:22:5e:30:14", "Dell", "engineering workstation"),
        Host("attacker", "10.10.30.66", "a4:c3:f0:5d:30:42", "Intel", "rogue laptop"),
    )
}


def run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, raising LabError with its stderr when it fails and check is set."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _kill_ns_pids(ns: str) -> None:
    """Kill what still runs inside one of the lab's own namespaces."""
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    for pid in (int(p) for p in out.split() if p.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces a killed earlier run left behind (its pid is gone); return their names."""
    out = run(["ip", "netns", "list"], check=False).stdout
    stale = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{NS_PREFIX}(\d+)-\w+", name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_ns_pids(name)
            run(["ip", "netns", "del", name], check=False)
            stale.append(name)
    return stale


class Plant:
    """Builds the namespaced plant network on enter and always removes it on exit."""

    def __init__(self, hosts: dict[str, Host] = HOSTS) -> None:
        self.hosts = hosts
        self.prefix = f"{NS_PREFIX}{os.getpid()}"
        self.switch = f"{self.prefix}-switch"
        self._created: list[str] = []

    def ns(self, host: str) -> str:
        """The namespace of a plant host."""
        if host not in self.hosts:
            raise LabError(f"unknown plant host {host!r}; hosts: {', '.join(self.hosts)}")
        return f"{self.prefix}-{host}"

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        """argv that runs a command inside namespace ns."""
        return ["ip", "netns", "exec", ns, *argv]

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
            path = f"net.ipv6.conf.{key}.disable_ipv6=1"
            run(self.exec_argv(ns, ["sysctl", "-q", "-w", path]), check=False)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _offloads_off(self, ns: str, iface: str) -> None:
        argv = ["ethtool", "-K", iface]
        for feature in OFFLOADS:
            argv += [feature, "off"]
        run(self.exec_argv(ns, argv))
        state = run(self.exec_argv(ns, ["ethtool", "-k", iface])).stdout
        for feature in OFFLOAD_STATES:
            match = re.search(rf"^{feature}: (\w+)", state, re.MULTILINE)
            if match is None or match.group(1) != "off":
                found = match.group(1) if match else "missing"
                raise LabError(f"{ns}/{iface}: {feature} is {found}, must be off")

    def build(self) -> None:
        """Create the switch, the hosts and their links."""
        remove_stale_namespaces()
        sw = self.switch
        self._add_ns(sw)
        bridge = ["type", "bridge", "stp_state", "0", "mcast_snooping", "0"]
        run(["ip", "-n", sw, "link", "add", BRIDGE, *bridge])
        run(["ip", "-n", sw, "link", "set", BRIDGE, "mtu", str(MTU), "up"])
        self._offloads_off(sw, BRIDGE)
        for host in self.hosts.values():
            ns = self.ns(host.name)
            port = f"p-{host.name}"[:15]
            self._add_ns(ns)
            veth = ["type", "veth", "peer", "name", HOST_IFACE, "mtu", str(MTU), "netns", ns]
            run(["ip", "-n", sw, "link", "add", port, "mtu", str(MTU), *veth])
            run(["ip", "-n", ns, "link", "set", HOST_IFACE, "address", host.mac])
            self._offloads_off(sw, port)
            self._offloads_off(ns, HOST_IFACE)
            run(["ip", "-n", sw, "link", "set", port, "master", BRIDGE, "up"])
            run(["ip", "-n", ns, "addr", "add", f"{host.ip}/{PREFIX_LEN}", "dev", HOST_IFACE])
            run(["ip", "-n", ns, "link", "set", HOST_IFACE, "up"])

    def teardown(self) -> None:
        """Kill what runs in the lab's namespaces and delete them (idempotent)."""
        for ns in reversed(self._created):
            _kill_ns_pids(ns)
            run(["ip", "netns", "del", ns], check=False)
        self._created.clear()
