"""Sensor configuration: one YAML file (``otsentry.yaml``) read into frozen dataclasses.

Every problem with a file raises :class:`ConfigError` naming the file, the line, the dotted key and
what is wrong. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from otsentry.errors import FileProblem
from otsentry.sinks.routing import valid_namespace
from otsentry.sinks.urls import url_problem

__all__ = [
    "DEFAULT_PROTOCOLS",
    "KNOWN_PROTOCOLS",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "DecodeAs",
    "DetectionConfig",
    "EvidenceConfig",
    "IPAddress",
    "IPNetwork",
    "Limits",
    "OutputsConfig",
    "ProtocolConfig",
    "SegmentConfig",
    "SensorConfig",
    "load_config",
    "parse_config",
    "parse_decode_as",
]

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Protocols the sensor dissects, in the order ``Config.protocols`` lists them.
KNOWN_PROTOCOLS: Final = ("modbus", "s7comm", "opcua")

# Wireshark's names for the same dissectors, accepted in decode-as specs.
_PROTOCOL_ALIASES: Final = {"mbtcp": "modbus"}

_SEGMENT_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_SEGMENT_CACHE_SIZE: Final = 65536

_TAG_STR: Final = "tag:yaml.org,2002:str"
_TAG_INT: Final = "tag:yaml.org,2002:int"
_TAG_FLOAT: Final = "tag:yaml.org,2002:float"
_TAG_BOOL: Final = "tag:yaml.org,2002:bool"
_TAG_NULL: Final = "tag:yaml.org,2002:null"
_TAG_MERGE: Final = "tag:yaml.org,2002:merge"
_TAG_MAP: Final = "tag:yaml.org,2002:map"
_TAG_SEQ: Final = "tag:yaml.org,2002:seq"
_PLAIN_TAGS: Final = frozenset(
    {_TAG_STR, _TAG_INT, _TAG_FLOAT, _TAG_BOOL, _TAG_NULL, _TAG_MAP, _TAG_SEQ}
)


class ConfigError(FileProblem):
    """A configuration problem: ``source:line: key: problem``."""


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """Identity of this sensor; ``name`` is reported as ECS ``observer.name``."""

    name: str = field(default_factory=socket.gethostname)


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    """A named network segment: traffic on any of its VLANs or inside any of its CIDRs."""

    name: str
    cidrs: tuple[IPNetwork, ...] = ()
    vlans: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """An Elasticsearch or OpenSearch output (``outputs.elasticsearch`` / ``outputs.opensearch``).

    Secrets may be given here or in the environment (``OTSENTRY_ES_*`` / ``OTSENTRY_OPENSEARCH_*``,
    which win); never on the command line. ``url`` may also come from ``--es`` / ``--opensearch``.
    """

    url: str | None = None
    namespace: str = "default"
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    fingerprint: str | None = None
    verify_certs: bool = True
    data_streams: bool = True
    events: bool = True  # protocol events too, not only alerts, assets and stats
    flush_after_seconds: float = 1.0
    chunk_size: int = 500
    request_timeout: float = 10.0
    max_retries: int = 3  # the bulk helper's retries of 429 answers, with backoff
    initial_backoff: float = 1.0
    retry_interval: float = 5.0  # seconds between probes while the cluster is down


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """The on-disk outage spool in ``<outputs.dir>/spool``: at most ``max_bytes``; when full,
    ``drop-oldest`` deletes the oldest segments (protocol events before alerts) and
    ``drop-newest`` refuses new documents. Either way the count is reported."""

    max_bytes: int = 1 << 30
    segment_bytes: int = 16 << 20
    when_full: str = "drop-oldest"


SPOOL_POLICIES: Final = ("drop-oldest", "drop-newest")


@dataclass(frozen=True, slots=True)
class OutputsConfig:
    """Where results go: NDJSON files under ``dir`` (relative paths are relative to the CWD),
    and optionally an Elasticsearch or OpenSearch cluster."""

    dir: Path = Path("otsentry-out")
    events: bool = True
    alerts: bool = True
    assets: bool = True
    elasticsearch: ClusterConfig | None = None
    opensearch: ClusterConfig | None = None
    spool: SpoolConfig = field(default_factory=SpoolConfig)


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource bounds. Buffer sizes are bytes, timeouts seconds; every value is positive."""

    max_flows: int = 100_000
    max_tcp_buffer_per_direction: int = 262_144
    max_tcp_buffer_total: int = 134_217_728
    max_ooo_segments_per_direction: int = 64
    flow_idle_timeout: float = 300.0
    tcp_closed_timeout: float = 5.0
    max_ip_fragments: int = 4096
    fragment_timeout: float = 30.0
    max_open_transactions_per_flow: int = 500
    transaction_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """One dissector: the TCP ports it is tried on, and whether it runs at all."""

    name: str
    ports: tuple[int, ...]
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class DecodeAs:
    """Decode TCP traffic on ``port`` (either side) as ``protocol``."""

    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """The rule engine: extra rule files or directories (relative paths are relative to the CWD),
    whether the built-in pack loads, and rule ids left out."""

    rules: tuple[Path, ...] = ()
    builtin_rules: bool = True
    disabled_rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """Evidence pcaps: the triggering flow's packets around each alert."""

    enabled: bool = True
    packets_before: int = 20  # packets of the flow before the trigger
    packets_after: int = 10  # and after it
    ring_packets: int = 20_000  # recent frames held to pick them from
    max_files: int = 1000  # evidence files written per run


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """Alert aggregation: repeats of a rule between the same two hosts within
    ``aggregation_window`` seconds (packet time) of its first match make one alert."""

    aggregation_window: float = 60.0
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)


#: The protocol settings used when the file does not mention a protocol.
DEFAULT_PROTOCOLS: Final = (
    ProtocolConfig("modbus", (502,)),
    ProtocolConfig("s7comm", (102,)),
    ProtocolConfig("opcua", (4840,)),
)


class _SegmentIndex:
    """Segment lookup tables built from the configured segments, plus a bounded per-IP cache."""

    __slots__ = ("by_vlan", "cache", "v4", "v6")

    def __init__(self, segments: Sequence[SegmentConfig]) -> None:
        self.by_vlan: dict[int, str] = {}
        for segment in segments:
            for vlan in segment.vlans:
                self.by_vlan.setdefault(vlan, segment.name)
        nets = sorted(
            ((net, segment.name) for segment in segments for net in segment.cidrs),
            key=lambda item: -item[0].prefixlen,
        )
        self.v4 = tuple((n, name) for n, name in nets if isinstance(n, ipaddress.IPv4Network))
        self.v6 = tuple((n, name) for n, name in nets if isinstance(n, ipaddress.IPv6Network))
        self.cache: dict[str | IPAddress, str] = {}

    def lookup(self, ip: str | IPAddress, vlan: int | None) -> str:
        if vlan is not None:
            name = self.by_vlan.get(vlan)
            if name is not None:
                return name
        name = self.cache.get(ip)
        if name is None:
            name = self._by_address(ipaddress.ip_address(ip) if isinstance(ip, str) else ip)
            if len(self.cache) >= _SEGMENT_CACHE_SIZE:
                del self.cache[next(iter(self.cache))]
            self.cache[ip] = name
        return name

    def _by_address(self, addr: IPAddress) -> str:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if isinstance(addr, ipaddress.IPv4Address):
            for net4, name in self.v4:
                if addr in net4:
                    return name
            return str(ipaddress.IPv4Network((int(addr) & 0xFFFF_FF00, 24)))
        for net6, name in self.v6:
            if addr in net6:
                return name
        return str(ipaddress.IPv6Network(((int(addr) >> 64) << 64, 64)))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole sensor configuration; ``Config()`` is the built-in defaults."""

    sensor: SensorConfig = field(default_factory=SensorConfig)
    segments: tuple[SegmentConfig, ...] = ()
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    limits: Limits = field(default_factory=Limits)
    protocols: tuple[ProtocolConfig, ...] = DEFAULT_PROTOCOLS
    decode_as: tuple[DecodeAs, ...] = ()
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    _segment_index: _SegmentIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_segment_index", _SegmentIndex(self.segments))

    def segment_for(self, ip: str | IPAddress, vlan: int | None = None) -> str:
        """Name the segment of a host seen at ``ip`` (on 802.1Q VLAN ``vlan``, if tagged).

        A configured segment listing ``vlan`` wins; then the configured segment with the most
        specific CIDR containing ``ip``; otherwise the address's /24 (IPv4) or /64 (IPv6), e.g.
        ``"10.10.30.0/24"``. Raises ValueError if ``ip`` is not an IP address.
        """
        return self._segment_index.lookup(ip, vlan)


def load_config(path: str | Path | None) -> Config:
    """Read and validate the YAML file at ``path``; None gives the defaults."""
    if path is None:
        return Config()
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, None, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(source, line, None, "not valid UTF-8 text") from exc
    return parse_config(text, source)


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate YAML ``text`` into a Config; ``source`` names it in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(source, exc) from exc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(source, line, None, f"YAML syntax error: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, None, None, f"YAML syntax error: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(source, None, None, "YAML nesting too deep") from exc
    return _Reader(source).config(root)


def parse_decode_as(spec: str) -> DecodeAs:
    """Parse ``PORT=PROTOCOL`` (``5020=modbus``) or tshark's ``tcp.port==PORT,PROTOCOL``.

    Raises ConfigError (a ValueError) naming ``--decode-as`` when the spec is malformed.
    """
    try:
        return _decode_as_spec(spec)
    except ValueError as exc:
        raise ConfigError("--decode-as", None, None, str(exc)) from exc


def _decode_as_spec(spec: str) -> DecodeAs:
    text = spec.strip()
    tshark = re.fullmatch(r"(\w+)\.port\s*==\s*([^,]*),(.*)", text)
    if tshark:
        transport, port_text, protocol = tshark.groups()
        if transport != "tcp":
            raise ValueError(f"{spec!r}: only tcp.port can be decoded as another protocol")
    elif "=" in text and "==" not in text:
        port_text, _, protocol = text.partition("=")
    else:
        raise ValueError(
            f"{spec!r} is not PORT=PROTOCOL (e.g. 5020=modbus) or tcp.port==PORT,PROTOCOL"
        )
    port_text, protocol = port_text.strip(), protocol.strip().lower()
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{spec!r}: {port_text!r} is not a TCP port (1-65535)")
    protocol = _PROTOCOL_ALIASES.get(protocol, protocol)
    if protocol not in KNOWN_PROTOCOLS:
        raise ValueError(
            f"{spec!r}: unknown protocol {protocol!r} (expected one of: {', '.join(KNOWN_PROTOCOLS)})"
        )
    return DecodeAs(int(port_text), protocol)


def _syntax_error(source: str, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = None if mark is None else mark.line + 1
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context:
        start = exc.context_mark
        if start is not None and start.line + 1 != line:
            problem += f" ({exc.context} starting on line {start.line + 1})"
        else:
            problem += f" ({exc.context})"
    return ConfigError(source, line, None, f"YAML syntax error: {problem}")


def _describe(node: Node) -> str:
    """How a node appears in 'got ...' messages."""
    if node.tag not in _PLAIN_TAGS:
        return f"a value tagged {node.tag!r}"
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _TAG_NULL:
        return "nothing" if node.value in ("", "~") else str(node.value)
    if node.tag == _TAG_STR:
        return repr(node.value)
    return str(node.value)


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


class _Reader:
    """Walks a composed YAML node tree, validating it into the config dataclasses."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.constructor = SafeConstructor()

    def error(self, node: Node, key: str | None, problem: str) -> ConfigError:
        return ConfigError(self.source, node.start_mark.line + 1, key or None, problem)

    # -- sections ----------------------------------------------------------------------------

    def config(self, root: Node | None) -> Config:
        if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG_NULL):
            return Config()
        sections = (
            "sensor",
            "segments",
            "outputs",
            "limits",
            "protocols",
            "decode_as",
            "detection",
            "alerts",
        )
        if not isinstance(root, MappingNode) or root.tag != _TAG_MAP:
            raise self.error(
                root,
                None,
                f"the top level must be a mapping of sections ({', '.join(sections)}), "
                f"got {_describe(root)}",
            )
        found = self.fields(root, "", sections)
        protocols = self.protocols(found.get("protocols"))
        return Config(
            sensor=self.sensor(found.get("sensor")),
            segments=self.segments(found.get("segments")),
            outputs=self.outputs(found.get("outputs")),
            limits=self.limits(found.get("limits")),
            protocols=protocols,
            decode_as=self.decode_as(found.get("decode_as"), protocols),
            detection=self.detection(found.get("detection")),
            alerts=self.alerts(found.get("alerts")),
        )

    def sensor(self, node: Node | None) -> SensorConfig:
        found = self.fields(node, "sensor", ("name",))
        if "name" not in found:
            return SensorConfig()
        return SensorConfig(name=self.text(found["name"], "sensor.name"))

    def outputs(self, node: Node | None) -> OutputsConfig:
        found = self.fields(
            node,
            "outputs",
            ("dir", "events", "alerts", "assets", "elasticsearch", "opensearch", "spool"),
        )
        default = OutputsConfig()
        return OutputsConfig(
            dir=Path(self.text(found["dir"], "outputs.dir")).expanduser()
            if "dir" in found
            else default.dir,
            events=self.flag(found, "outputs.events", default.events),
            alerts=self.flag(found, "outputs.alerts", default.alerts),
            assets=self.flag(found, "outputs.assets", default.assets),
            elasticsearch=self.cluster(found.get("elasticsearch"), "outputs.elasticsearch"),
            opensearch=self.cluster(found.get("opensearch"), "outputs.opensearch"),
            spool=self.spool(found.get("spool")),
        )

    def cluster(self, node: Node | None, key: str) -> ClusterConfig | None:
        if node is None or (isinstance(node, ScalarNode) and node.tag == _TAG_NULL):
            return None
        defaults = ClusterConfig()
        names = tuple(f.name for f in dataclasses.fields(ClusterConfig))
        changes: dict[str, Any] = {}
        for name, value in self.fields(node, key, names).items():
            path = f"{key}.{name}"
            default = getattr(defaults, name)
            if isinstance(default, bool):
                changes[name] = self.boolean(value, path)
            elif name == "max_retries":
                changes[name] = self.integer(value, path, 0, 100, "an integer 0-100")
            elif isinstance(default, int):
                changes[name] = self.integer(value, path, 1, None, "a positive integer")
            elif isinstance(default, float):
                changes[name] = self.positive_number(value, path)
            elif name == "ca_file":
                changes[name] = Path(self.text(value, path)).expanduser()
            else:
                changes[name] = self.text(value, path)
        if "namespace" in changes and not valid_namespace(changes["namespace"]):
            raise self.error(
                node,
                f"{key}.namespace",
                "a namespace is lowercase letters, digits, '_' and '.' (no '-'), "
                f"got {changes['namespace']!r}",
            )
        if "url" in changes:
            problem = url_problem(changes["url"])
            if problem:
                raise self.error(node, f"{key}.url", problem)
        return dataclasses.replace(defaults, **changes)

    def spool(self, node: Node | None) -> SpoolConfig:
        key = "outputs.spool"
        defaults = SpoolConfig()
        changes: dict[str, Any] = {}
        for name, value in self.fields(
            node, key, ("max_bytes", "segment_bytes", "when_full")
        ).items():
            path = f"{key}.{name}"
            if name == "when_full":
                policy = self.text(value, path)
                if policy not in SPOOL_POLICIES:
                    raise self.error(
                        value, path, f"expected one of {', '.join(SPOOL_POLICIES)}, got {policy!r}"
                    )
                changes[name] = policy
            else:
                changes[name] = self.integer(value, path, 4096, None, "an integer >= 4096 (bytes)")
        return dataclasses.replace(defaults, **changes)

    def limits(self, node: Node | None) -> Limits:
        defaults = Limits()
        names = tuple(f.name for f in dataclasses.fields(Limits))
        changes: dict[str, Any] = {}
        for name, value in self.fields(node, "limits", names).items():
            key = f"limits.{name}"
            if isinstance(getattr(defaults, name), int):
                changes[name] = self.integer(value, key, 1, None, "a positive integer")
            else:
                changes[name] = self.positive_number(value, key)
        return dataclasses.replace(defaults, **changes)

    def segments(self, node: Node | None) -> tuple[SegmentConfig, ...]:
        result: list[SegmentConfig] = []
        vlan_owner: dict[int, str] = {}
        cidr_owner: dict[IPNetwork, str] = {}
        for name, name_node, value in self.mapping(node, "segments"):
            key = f"segments.{name}"
            if not _SEGMENT_NAME.fullmatch(name):
                raise self.error(
                    name_node,
                    key,
                    "a segment name may only contain letters, digits, '_', '.' and '-'",
                )
            found = self.fields(value, key, ("cidrs", "vlans"))
            cidrs: list[IPNetwork] = []
            for i, item in enumerate(self.items(found.get("cidrs"), f"{key}.cidrs")):
                net = self.network(item, f"{key}.cidrs[{i}]")
                if net in cidr_owner:
                    raise self.error(
                        item,
                        f"{key}.cidrs[{i}]",
                        f"{net} is already in segment {cidr_owner[net]!r}",
                    )
                cidr_owner[net] = name
                cidrs.append(net)
            vlans: list[int] = []
            for i, item in enumerate(self.items(found.get("vlans"), f"{key}.vlans")):
                vlan = self.integer(item, f"{key}.vlans[{i}]", 0, 4095, "a VLAN id (0-4095)")
                if vlan in vlan_owner:
                    raise self.error(
                        item,
                        f"{key}.vlans[{i}]",
                        f"VLAN {vlan} is already in segment {vlan_owner[vlan]!r}",
                    )
                vlan_owner[vlan] = name
                vlans.append(vlan)
            if not cidrs and not vlans:
                raise self.error(name_node, key, "a segment needs at least one of cidrs, vlans")
            result.append(SegmentConfig(name, tuple(cidrs), tuple(vlans)))
        return tuple(result)

    def protocols(self, node: Node | None) -> tuple[ProtocolConfig, ...]:
        key = "protocols"
        chosen = {p.name: p for p in DEFAULT_PROTOCOLS}
        port_nodes: list[tuple[str, int, Node, str]] = []
        for name, name_node, value in self.mapping(node, key):
            path = f"{key}.{name}"
            if name not in chosen:
                raise self.error(
                    name_node,
                    key,
                    f"unknown protocol {name!r} (expected one of: {', '.join(KNOWN_PROTOCOLS)})",
                )
            found = self.fields(value, path, ("ports", "enabled"))
            ports = chosen[name].ports
            if "ports" in found:
                ports_list: list[int] = []
                for i, item in enumerate(self.items(found["ports"], f"{path}.ports")):
                    port = self.integer(
                        item, f"{path}.ports[{i}]", 1, 65535, "a TCP port (1-65535)"
                    )
                    if port in ports_list:
                        raise self.error(item, f"{path}.ports[{i}]", f"port {port} is listed twice")
                    ports_list.append(port)
                    port_nodes.append((name, port, item, f"{path}.ports[{i}]"))
                ports = tuple(ports_list)
            enabled = self.flag(found, f"{path}.enabled", True)
            chosen[name] = ProtocolConfig(name, ports, enabled)
        for name, port, item, path in port_nodes:
            if not chosen[name].enabled:
                continue
            for other in chosen.values():
                if other.name != name and other.enabled and port in other.ports:
                    raise self.error(item, path, f"port {port} is also assigned to {other.name}")
        return tuple(chosen[name] for name in KNOWN_PROTOCOLS)

    def decode_as(
        self, node: Node | None, protocols: Sequence[ProtocolConfig]
    ) -> tuple[DecodeAs, ...]:
        enabled = {p.name: p.enabled for p in protocols}
        result: dict[int, DecodeAs] = {}
        for i, item in enumerate(self.items(node, "decode_as")):
            key = f"decode_as[{i}]"
            if not isinstance(item, ScalarNode) or item.tag != _TAG_STR:
                raise self.error(
                    item,
                    key,
                    f"expected 'PORT=PROTOCOL' (e.g. '5020=modbus'), got {_describe(item)}",
                )
            try:
                rule = _decode_as_spec(item.value)
            except ValueError as exc:
                raise self.error(item, key, str(exc)) from exc
            if rule.port in result:
                raise self.error(
                    item,
                    key,
                    f"port {rule.port} is already decoded as {result[rule.port].protocol}",
                )
            if not enabled.get(rule.protocol, True):
                raise self.error(
                    item,
                    key,
                    f"protocol {rule.protocol!r} is disabled (protocols.{rule.protocol}.enabled)",
                )
            result[rule.port] = rule
        return tuple(result.values())

    def detection(self, node: Node | None) -> DetectionConfig:
        found = self.fields(node, "detection", ("rules", "builtin_rules", "disabled_rules"))
        rules = tuple(
            Path(self.text(item, f"detection.rules[{i}]")).expanduser()
            for i, item in enumerate(self.items(found.get("rules"), "detection.rules"))
        )
        disabled: list[str] = []
        for i, item in enumerate(
            self.items(found.get("disabled_rules"), "detection.disabled_rules")
        ):
            rule_id = self.text(item, f"detection.disabled_rules[{i}]").strip()
            if rule_id in disabled:
                raise self.error(
                    item, f"detection.disabled_rules[{i}]", f"{rule_id} is listed twice"
                )
            disabled.append(rule_id)
        return DetectionConfig(
            rules=rules,
            builtin_rules=self.flag(found, "detection.builtin_rules", True),
            disabled_rules=tuple(disabled),
        )

    def alerts(self, node: Node | None) -> AlertsConfig:
        found = self.fields(node, "alerts", ("aggregation_window", "evidence"))
        window = AlertsConfig().aggregation_window
        if "aggregation_window" in found:
            window = self.number(found["aggregation_window"], "alerts.aggregation_window", 0.0)
        return AlertsConfig(
            aggregation_window=window, evidence=self.evidence(found.get("evidence"))
        )

    def evidence(self, node: Node | None) -> EvidenceConfig:
        key = "alerts.evidence"
        defaults = EvidenceConfig()
        names = tuple(f.name for f in dataclasses.fields(EvidenceConfig))
        changes: dict[str, Any] = {}
        for name, value in self.fields(node, key, names).items():
            path = f"{key}.{name}"
            if name == "enabled":
                changes[name] = self.boolean(value, path)
            elif name == "ring_packets":
                changes[name] = self.integer(value, path, 1, None, "a positive integer")
            else:
                changes[name] = self.integer(value, path, 0, None, "an integer >= 0")
        return dataclasses.replace(defaults, **changes)

    # -- structure ---------------------------------------------------------------------------

    def mapping(self, node: Node | None, key: str) -> list[tuple[str, Node, Node]]:
        """The (name, key node, value node) entries of a mapping; absent or null is empty."""
        if node is None or (isinstance(node, ScalarNode) and node.tag == _TAG_NULL):
            return []
        if not isinstance(node, MappingNode) or node.tag != _TAG_MAP:
            raise self.error(node, key, f"expected a mapping, got {_describe(node)}")
        entries: list[tuple[str, Node, Node]] = []
        seen: set[str] = set()
        for name_node, value in node.value:
            if name_node.tag == _TAG_MERGE:
                raise self.error(name_node, key, "merge keys ('<<') are not supported")
            if not isinstance(name_node, ScalarNode) or name_node.tag == _TAG_NULL:
                raise self.error(
                    name_node, key, f"expected a name as key, got {_describe(name_node)}"
                )
            name = str(name_node.value)
            if name in seen:
                raise self.error(name_node, _join(key, name), "duplicate key")
            seen.add(name)
            entries.append((name, name_node, value))
        return entries

    def fields(self, node: Node | None, key: str, allowed: Sequence[str]) -> dict[str, Node]:
        """The value nodes of a mapping whose keys must all be in ``allowed``."""
        found: dict[str, Node] = {}
        for name, name_node, value in self.mapping(node, key):
            if name not in allowed:
                raise self.error(
                    name_node,
                    key,
                    f"unknown key {name!r} (expected one of: {', '.join(allowed)})",
                )
            found[name] = value
        return found

    def items(self, node: Node | None, key: str) -> list[Node]:
        """The items of a list; absent or null counts as empty."""
        if node is None or (isinstance(node, ScalarNode) and node.tag == _TAG_NULL):
            return []
        if not isinstance(node, SequenceNode) or node.tag != _TAG_SEQ:
            raise self.error(node, key, f"expected a list, got {_describe(node)}")
        return list(node.value)

    # -- scalars -----------------------------------------------------------------------------

    def text(self, node: Node, key: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag != _TAG_STR or not node.value.strip():
            raise self.error(node, key, f"expected a non-empty string, got {_describe(node)}")
        return str(node.value)

    def boolean(self, node: Node, key: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _TAG_BOOL:
            raise self.error(node, key, f"expected true or false, got {_describe(node)}")
        return bool(self.constructor.construct_object(node))

    def flag(self, found: dict[str, Node], key: str, default: bool) -> bool:
        """The boolean at dotted ``key`` (its last part names it in ``found``), else ``default``."""
        name = key.rpartition(".")[2]
        return self.boolean(found[name], key) if name in found else default

    def integer(self, node: Node, key: str, low: int, high: int | None, expected: str) -> int:
        if isinstance(node, ScalarNode) and node.tag == _TAG_INT and len(node.value) <= 64:
            value = self.constructor.construct_object(node)
            if isinstance(value, int) and value >= low and (high is None or value <= high):
                return value
        raise self.error(node, key, f"expected {expected}, got {_describe(node)}")

    def positive_number(self, node: Node, key: str) -> float:
        if (
            isinstance(node, ScalarNode)
            and node.tag in (_TAG_INT, _TAG_FLOAT)
            and len(node.value) <= 64
        ):
            value = float(self.constructor.construct_object(node))
            if math.isfinite(value) and value > 0:
                return value
        raise self.error(node, key, f"expected a positive number, got {_describe(node)}")

    def number(self, node: Node, key: str, low: float) -> float:
        """A finite number >= ``low``."""
        if (
            isinstance(node, ScalarNode)
            and node.tag in (_TAG_INT, _TAG_FLOAT)
            and len(node.value) <= 64
        ):
            value = float(self.constructor.construct_object(node))
            if math.isfinite(value) and value >= low:
                return value
        raise self.error(node, key, f"expected a number >= {low:g}, got {_describe(node)}")

    def network(self, node: Node, key: str) -> IPNetwork:
        if not isinstance(node, ScalarNode) or node.tag != _TAG_STR:
            raise self.error(
                node, key, f"expected an IP network such as 10.10.30.0/24, got {_describe(node)}"
            )
        text = str(node.value).strip()
        try:
            return ipaddress.ip_network(text)
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise self.error(node, key, f"{text!r} is not an IP network") from None
        raise self.error(node, key, f"{text!r} has host bits set (did you mean {loose}?)")
