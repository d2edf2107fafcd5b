"""Network namespaces joined by veth pairs for live-capture tests, entered per thread with setns.

Every namespace is named ``ots-lc-<pid>-<n>-<role>`` and deleted again by ``Netns.close``;
interfaces live only inside them, so nothing reaches the host's networks.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_CLONE_NEWNET = 0x40000000
_counter = itertools.count()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def run(*argv: str) -> str:
    """Run a command, raising with its stderr when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def namespaces_unavailable() -> str | None:
    """Why the tests cannot build namespaces here, or None when they can."""
    if os.geteuid() != 0:
        return "live capture tests need root (network namespaces, AF_PACKET)"
    probe = f"ots-lc-{os.getpid()}-probe"
    try:
        run("ip", "netns", "add", probe)
    except (OSError, RuntimeError) as err:
        return f"ip netns is not usable here: {err}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``ns`` (sockets made there stay)."""
    libc = _libc()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            yield
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(home)


class Netns:
    """A peer and a sensor namespace; ``link`` adds a veth pair between them."""

    def __init__(self) -> None:
        base = f"ots-lc-{os.getpid()}-{next(_counter)}"
        self.peer = f"{base}-p"
        self.sensor = f"{base}-s"
        self._made: list[str] = []
        try:
            for ns in (self.peer, self.sensor):
                run("ip", "netns", "add", ns)
                self._made.append(ns)
                for scope in ("all", "default"):  # no IPv6 chatter (router solicitations, MLD)
                    run("ip", "netns", "exec", ns, "sysctl", "-qw",
                        f"net.ipv6.conf.{scope}.disable_ipv6=1")  # fmt: skip
        except BaseException:
            self.close()
            raise

    def link(self, peer_if: str, sensor_if: str, mtu: int = 1500) -> None:
        """A veth pair, both ends up: ``peer_if`` in the peer namespace, ``sensor_if`` in the
        sensor namespace (no address there)."""
        run("ip", "link", "add", peer_if, "netns", self.peer, "mtu", str(mtu), "type", "veth",
            "peer", "name", sensor_if, "netns", self.sensor, "mtu", str(mtu))  # fmt: skip
        run("ip", "-n", self.peer, "link", "set", peer_if, "up")
        run("ip", "-n", self.sensor, "link", "set", sensor_if, "up")

    def close(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._made = []


def link_counters(ns: str, ifname: str) -> dict[str, int]:
    """rx/tx packet counters of an interface in namespace ``ns``."""
    info = json.loads(run("ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname))[0]
    stats = info["stats64"]
    return {"rx": int(stats["rx"]["packets"]), "tx": int(stats["tx"]["packets"])}


def promiscuity(ns: str, ifname: str) -> int:
    """The interface's promiscuity count (how many users asked for promiscuous mode)."""
    info = json.loads(run("ip", "-n", ns, "-d", "-j", "link", "show", "dev", ifname))[0]
    return int(info["promiscuity"])


def raw_sender(ns: str, ifname: str) -> socket.socket:
    """An AF_PACKET socket in ``ns`` bound to ``ifname``, for sending whole Ethernet frames."""
    with inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind((ifname, 0))
    return sock
