#!/bin/sh
# Prepare a mirror (SPAN/TAP) port for otsentry sensor:
#   - NIC offloads off (GRO, LRO, TSO, GSO, scatter-gather, rx/tx checksumming, hardware GRO,
#     GRO lists): with them on, the kernel hands the sensor merged 64 KB "super-packets" instead
#     of the frames on the wire, which breaks TCP segmentation, sizes and packet counts;
#   - the NIC's receive ring at its maximum (fewer drops in bursts), where the driver reports one;
#   - no IPv6 and no ARP on the port, every address removed: the host has no identity on the
#     mirror and the kernel sends nothing out of it (no router solicitations, no DAD, no MLD);
#   - promiscuous and up.
# Idempotent: it reads the current state and changes only what differs, printing each change.
# Run it as root, before the sensor starts (the systemd unit does, on every start).
#
#   nic-offloads.sh [-n] IFACE [IFACE...]     -n: only show what would change
#
# It refuses an interface that carries the default route (the host's own connection).
# Exit codes: 0 ready, 1 something could not be changed, 2 usage (no such interface, the
# default route's interface, not root).
set -eu

OFFLOADS="rx-checksumming tx-checksumming scatter-gather tcp-segmentation-offload
udp-fragmentation-offload generic-segmentation-offload generic-receive-offload
large-receive-offload rx-gro-hw rx-gro-list rx-udp-gro-forwarding"

dry_run=0
failed=0

usage() {
    echo "usage: $0 [-n] IFACE [IFACE...]" >&2
    exit 2
}

# change IFACE DESCRIPTION COMMAND...: run (or with -n show) one change and print it
change() {
    iface=$1
    what=$2
    shift 2
    if [ "$dry_run" -eq 1 ]; then
        echo "$iface: would change $what ($*)"
        changes=$((changes + 1))
    elif "$@" >/dev/null 2>&1; then
        echo "$iface: $what"
        changes=$((changes + 1))
    else
        echo "$iface: could not change $what ($*)" >&2
        failed=1
    fi
}

# write_sys IFACE DESCRIPTION FILE VALUE: set a /proc/sys value (interface names may hold dots)
write_sys() {
    if [ "$dry_run" -eq 1 ]; then
        echo "$1: would change $2 (echo $4 > $3)"
        changes=$((changes + 1))
    elif echo "$4" >"$3" 2>/dev/null; then
        echo "$1: $2"
        changes=$((changes + 1))
    else
        echo "$1: could not change $2 ($3)" >&2
        failed=1
    fi
}

offloads() {
    iface=$1
    if ! command -v ethtool >/dev/null 2>&1; then
        echo "$iface: ethtool is not installed: offloads left as they are" >&2
        failed=1
        return
    fi
    features=$(ethtool -k "$iface" 2>/dev/null) || {
        echo "$iface: ethtool cannot read its offloads: left as they are" >&2
        return
    }
    for name in $OFFLOADS; do
        # top-level lines only: "name: on", "name: off [fixed]", "name: on [requested off]"
        state=$(printf '%s\n' "$features" | awk -v n="$name:" '$1 == n { print $2, $3; exit }')
        case "$state" in
            "on [fixed]") echo "$iface: $name is on and fixed by the driver: cannot be turned off" >&2 ;;
            on*) change "$iface" "$name on -> off" ethtool -K "$iface" "$name" off ;;
        esac
    done
}

rx_ring() {
    iface=$1
    command -v ethtool >/dev/null 2>&1 || return 0
    rings=$(ethtool -g "$iface" 2>/dev/null) || return 0 # virtual NICs have no ring to size
    max=$(printf '%s\n' "$rings" | awk '/^Pre-set maximums/ { s = 1 } s && $1 == "RX:" { print $2; exit }')
    now=$(printf '%s\n' "$rings" | awk '/^Current hardware/ { s = 1 } s && $1 == "RX:" { print $2; exit }')
    case "$max$now" in *[!0-9]* | "") return 0 ;; esac
    if [ "$now" -lt "$max" ]; then
        change "$iface" "rx ring $now -> $max descriptors" ethtool -G "$iface" rx "$max"
    fi
}

link() {
    iface=$1
    ipv6=/proc/sys/net/ipv6/conf/$iface/disable_ipv6
    if [ -e "$ipv6" ] && [ "$(cat "$ipv6")" != 1 ]; then
        write_sys "$iface" "IPv6 off" "$ipv6" 1
    fi
    for addr in $(ip -o addr show dev "$iface" | awk '{ print $4 }'); do
        change "$iface" "address $addr removed" ip addr del "$addr" dev "$iface"
    done
    flags=$(ip -o link show dev "$iface" | sed -n 's/^[^<]*<\([^>]*\)>.*/,\1,/p')
    case "$flags" in *,NOARP,*) ;; *) change "$iface" "ARP off" ip link set dev "$iface" arp off ;; esac
    case "$flags" in *,PROMISC,*) ;; *) change "$iface" "promiscuous on" ip link set dev "$iface" promisc on ;; esac
    case "$flags" in *,UP,*) ;; *) change "$iface" "up" ip link set dev "$iface" up ;; esac
}

while getopts n opt; do
    case "$opt" in
        n) dry_run=1 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "$0: run it as root (or with -n to see what it would change)" >&2
    exit 2
fi

for iface in "$@"; do
    if [ ! -e "/sys/class/net/$iface" ]; then
        echo "$0: no network interface named $iface" >&2
        exit 2
    fi
    # a port with the default route is how this host is reached, not a mirror: leave it alone
    if [ -n "$(ip -4 route show default dev "$iface" 2>/dev/null)$(ip -6 route show default dev "$iface" 2>/dev/null)" ]; then
        echo "$0: $iface carries the default route: not a mirror port, nothing changed" >&2
        exit 2
    fi
done
for iface in "$@"; do
    changes=0
    offloads "$iface"
    rx_ring "$iface"
    link "$iface"
    [ "$changes" -gt 0 ] || echo "$iface: ready, nothing to change"
done
exit "$failed"
