# otsentry sensor image: replay captures, or (later) sniff a mirror port with --net=host.
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
RUN pip install --no-cache-dir . && rm -rf /src

# the bundled lab captures, so `docker run otsentry replay /opt/otsentry/pcaps` works out of the box
COPY pcaps/*.pcap /opt/otsentry/pcaps/

USER otsentry
WORKDIR /var/lib/otsentry
ENTRYPOINT ["otsentry"]
CMD ["--help"]
