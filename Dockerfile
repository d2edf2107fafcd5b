# otsentry image: replay captures, or watch a mirror port (otsentry sensor) with the host's network.
#
#   docker build -t otsentry .
#   docker run --rm -v "$PWD:/data" otsentry replay /opt/otsentry/pcaps --out /data/out
#
#   docker run -d --name otsentry-sensor --network host \
#       --user 0 --cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN --cap-add SETUID --cap-add SETGID \
#       -v otsentry-sensor:/var/lib/otsentry -v /etc/otsentry:/etc/otsentry:ro \
#       otsentry sensor -i eth1 --user otsentry --config /etc/otsentry/otsentry.yaml \
#       --out /var/lib/otsentry/out
#
# Privileges. Everything but the sensor (replay, es setup, status, ...) runs as the non-root user
# 'otsentry' (USER below). The sensor needs CAP_NET_RAW (and CAP_NET_ADMIN) only to open its
# AF_PACKET sockets; Docker gives a non-root user no ambient capabilities, and file capabilities
# on the python binary would hand raw sockets to every Python program in the image. So the
# sensor container starts as root (--user 0) with all capabilities dropped but NET_RAW, NET_ADMIN
# and the SETUID/SETGID needed to switch users; `otsentry sensor --user otsentry` opens the
# sockets, becomes 'otsentry' and clears every capability (and sets no_new_privs) before it
# reads a packet. docker-compose.yml's 'sensor' service does exactly this.
#
# libpcap compiles capture filters (-f / a trailing BPF expression); tcpdump is not needed.
# tshark brings Wireshark's manufacturer table for MAC vendor lookups.
FROM python:3.11-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tshark libpcap0.8 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/otsentry --shell /usr/sbin/nologin otsentry

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY otsentry ./otsentry
COPY dissectors ./dissectors
COPY rules ./rules
# gcc only to compile the pcap record loop (otsentry/_speedups.c), removed in the same layer
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir . \
 && python -c "import otsentry._speedups" \
 && apt-get purge -y --auto-remove gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* /src

# the bundled lab captures, so `docker run otsentry replay /opt/otsentry/pcaps` works out of the box
COPY pcaps/*.pcap /opt/otsentry/pcaps/

# the otsentry user's home holds the outputs, the outage spool and stats.json: a volume there
# keeps them (created from the image, so owned by otsentry)
USER otsentry
WORKDIR /var/lib/otsentry
ENTRYPOINT ["otsentry"]
CMD ["--help"]
