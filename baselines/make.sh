#!/bin/sh
# Learn the example baseline from the lab's benign captures (see pcaps/README.md, "The benign
# runs"): five minutes each of Modbus, S7 and OPC UA plant traffic without any attacker, and
# the short normal captures (one more start of each session).
#
#     sh baselines/make.sh [DIR]        # default DIR: baselines/ (the committed example)
#
# Learning is deterministic: the same captures give the same files, so rerunning this leaves
# git clean unless otsentry's learning changed.
set -eu
cd "$(dirname "$0")/.."
out="${1:-baselines}"
mkdir -p "$out"
rm -f "$out"/*.yaml "$out"/*.model.joblib
python -m otsentry baseline learn \
    pcaps/learning/modbus_learn.pcap \
    pcaps/learning/s7comm_learn.pcap \
    pcaps/learning/opcua_learn.pcap \
    pcaps/modbus_normal.pcap \
    pcaps/s7comm_normal.pcap \
    pcaps/opcua_normal.pcap \
    --out "$out"
