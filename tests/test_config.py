"""Tests for otsentry.config: defaults, parsing, error reporting, segment assignment."""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
import socket
import textwrap
from pathlib import Path

import pytest

from otsentry import config as config_module
from otsentry.config import (
    DEFAULT_PROTOCOLS,
    AlertsConfig,
    ClusterConfig,
    Config,
    ConfigError,
    DecodeAs,
    DetectionConfig,
    EvidenceConfig,
    Limits,
    OutputsConfig,
    ProtocolConfig,
    SegmentConfig,
    SensorConfig,
    SpoolConfig,
    load_config,
    parse_config,
    parse_decode_as,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "otsentry.yaml")


def parse_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


# -- defaults ---------------------------------------------------------------------------------


def test_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.sensor.name == socket.gethostname()
    assert config.segments == ()
    assert config.outputs == OutputsConfig(Path("otsentry-out"), True, True, True)
    assert config.limits == Limits(
        max_flows=100_000,
        max_tcp_buffer_per_direction=262_144,
        max_tcp_buffer_total=134_217_728,
        max_ooo_segments_per_direction=64,
        flow_idle_timeout=300.0,
        tcp_closed_timeout=5.0,
        max_ip_fragments=4096,
        fragment_timeout=30.0,
        max_open_transactions_per_flow=500,
    )
    assert config.protocols == (
        ProtocolConfig("modbus", (502,), True),
        ProtocolConfig("s7comm", (102,), True),
        ProtocolConfig("opcua", (4840,), True),
    )
    assert config.decode_as == ()


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# nothing but a comment\n", "~\n", "sensor:\nsegments:\nlimits:\ndecode_as:\n"],
)
def test_empty_file_and_empty_sections_give_defaults(text: str) -> None:
    assert parse(text) == Config()


def test_config_is_frozen_and_uses_tuples() -> None:
    config = parse("""\
        segments:
          a: {cidrs: [10.0.0.0/8], vlans: [7]}
        """)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits = Limits()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_flows = 1  # type: ignore[misc]
    assert isinstance(config.segments, tuple)
    assert isinstance(config.segments[0].cidrs, tuple)
    assert isinstance(config.segments[0].vlans, tuple)
    assert isinstance(config.protocols[0].ports, tuple)


# -- full files -------------------------------------------------------------------------------

FULL = """\
sensor:
  name: plant1-cell3
segments:
  cell-3:
    cidrs: [10.10.30.0/24]
    vlans: [30, 31]
  control_room.v6:
    cidrs:
      - 10.10.0.0/16
      - "fd00:10::/64"
  vlan-only:
    vlans: [0, 4095]
outputs:
  dir: /var/lib/otsentry
  events: false
  alerts: true
  assets: no
limits:
  max_flows: 5000
  max_tcp_buffer_per_direction: 65536
  max_tcp_buffer_total: 1_048_576
  max_ooo_segments_per_direction: 8
  flow_idle_timeout: 60
  tcp_closed_timeout: 1.5
  max_ip_fragments: 0x100
  fragment_timeout: 10.0
  max_open_transactions_per_flow: 50
protocols:
  modbus:
    ports: [502, 5020]
  s7comm:
    enabled: false
decode_as:
  - 48010=opcua
  - "tcp.port==1502,mbtcp"
"""


def test_full_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "otsentry.yaml"
    path.write_text(FULL, encoding="utf-8")
    config = load_config(path)
    assert config == Config(
        sensor=SensorConfig("plant1-cell3"),
        segments=(
            SegmentConfig("cell-3", (ipaddress.IPv4Network("10.10.30.0/24"),), (30, 31)),
            SegmentConfig(
                "control_room.v6",
                (ipaddress.IPv4Network("10.10.0.0/16"), ipaddress.IPv6Network("fd00:10::/64")),
                (),
            ),
            SegmentConfig("vlan-only", (), (0, 4095)),
        ),
        outputs=OutputsConfig(Path("/var/lib/otsentry"), events=False, alerts=True, assets=False),
        limits=Limits(
            max_flows=5000,
            max_tcp_buffer_per_direction=65536,
            max_tcp_buffer_total=1_048_576,
            max_ooo_segments_per_direction=8,
            flow_idle_timeout=60.0,
            tcp_closed_timeout=1.5,
            max_ip_fragments=256,
            fragment_timeout=10.0,
            max_open_transactions_per_flow=50,
        ),
        protocols=(
            ProtocolConfig("modbus", (502, 5020), True),
            ProtocolConfig("s7comm", (102,), False),
            ProtocolConfig("opcua", (4840,), True),
        ),
        decode_as=(DecodeAs(48010, "opcua"), DecodeAs(1502, "modbus")),
    )
    assert type(config.limits.flow_idle_timeout) is float
    assert type(config.limits.max_flows) is int


def test_partial_sections_keep_other_defaults() -> None:
    config = parse("""\
        limits:
          max_flows: 10
        protocols:
          opcua: {ports: [4841, 4842]}
        """)
    assert config.limits == dataclasses.replace(Limits(), max_flows=10)
    assert config.protocols == (
        DEFAULT_PROTOCOLS[0],
        DEFAULT_PROTOCOLS[1],
        ProtocolConfig("opcua", (4841, 4842), True),
    )
    assert config.outputs == OutputsConfig()


def test_example_file_loads() -> None:
    config = load_config(REPO_ROOT / "otsentry.example.yaml")
    assert [s.name for s in config.segments] == ["cell-3", "control-room"]
    assert config.outputs == OutputsConfig()
    assert config.limits == Limits()
    assert config.protocols == DEFAULT_PROTOCOLS
    assert config.decode_as == ()
    assert config.segment_for("10.10.30.7", None) == "cell-3"


def test_example_file_lists_every_key() -> None:
    text = (REPO_ROOT / "otsentry.example.yaml").read_text(encoding="utf-8")
    keys = ["sensor:", "name:", "segments:", "cidrs:", "vlans:", "outputs:", "dir:"]
    keys += [f"{f.name}:" for f in dataclasses.fields(OutputsConfig)]
    keys += [f"{f.name}:" for f in dataclasses.fields(Limits)]
    keys += [f"{f.name}:" for f in dataclasses.fields(ClusterConfig)]
    keys += [f"{f.name}:" for f in dataclasses.fields(SpoolConfig)]
    keys += ["protocols:", "ports:", "enabled:", "decode_as:"]
    for key in keys:
        assert key in text, key


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/otsentry.yaml")
    assert info.value.source == "/nonexistent/otsentry.yaml"
    assert info.value.line is None
    assert str(info.value).startswith("/nonexistent/otsentry.yaml: cannot read")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"sensor:\n  name: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 2


# -- errors -----------------------------------------------------------------------------------


def test_error_message_format() -> None:
    error = parse_error("""\
        # comment
        sensor:
          name: x

        limits:
          max_flows: lots
        """)
    assert str(error) == (
        "otsentry.yaml:6: limits.max_flows: expected a positive integer, got 'lots'"
    )
    assert (error.source, error.line, error.key) == ("otsentry.yaml", 6, "limits.max_flows")


def test_unknown_top_level_key_message() -> None:
    error = parse_error("""\
        sensor: {}
        outptus: {}
        """)
    assert str(error) == (
        "otsentry.yaml:2: unknown key 'outptus' "
        "(expected one of: sensor, segments, outputs, limits, protocols, decode_as, detection, alerts)"
    )


def test_bad_cidr_message() -> None:
    error = parse_error("""\
        segments:
          cell-3:
            vlans: [30]
            cidrs: [10.0.0.0/24, 10.0.0.0/33]
        """)
    assert (
        str(error)
        == "otsentry.yaml:4: segments.cell-3.cidrs[1]: '10.0.0.0/33' is not an IP network"
    )


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        pytest.param(
            "limits:\n  max_flows: 1\n  max_flwos: 2\n",
            3,
            "limits",
            "unknown key 'max_flwos' (expected one of: max_flows,",
            id="unknown-nested-key",
        ),
        pytest.param(
            "segments:\n  a:\n    cidrs: [10.0.0.0/8]\n    vlan: [3]\n",
            4,
            "segments.a",
            "unknown key 'vlan' (expected one of: cidrs, vlans)",
            id="unknown-segment-key",
        ),
        pytest.param(
            "protocols:\n  modbus:\n    port: [502]\n",
            3,
            "protocols.modbus",
            "unknown key 'port'",
            id="unknown-protocol-key",
        ),
        pytest.param(
            "outputs:\n  elastic: {}\n", 2, "outputs", "unknown key 'elastic'", id="unknown-output"
        ),
        pytest.param(
            "limits:\n  max_flows: true\n", 2, "limits.max_flows", "got true", id="bool-for-int"
        ),
        pytest.param(
            "limits:\n  max_flows: 2.5\n", 2, "limits.max_flows", "got 2.5", id="float-for-int"
        ),
        pytest.param(
            "limits:\n  max_flows: 0\n",
            2,
            "limits.max_flows",
            "expected a positive integer, got 0",
            id="zero",
        ),
        pytest.param(
            "limits:\n  fragment_timeout: -1.0\n",
            2,
            "limits.fragment_timeout",
            "expected a positive number, got -1.0",
            id="negative-float",
        ),
        pytest.param(
            "limits:\n  fragment_timeout: .inf\n",
            2,
            "limits.fragment_timeout",
            "expected a positive number",
            id="infinite",
        ),
        pytest.param(
            "limits:\n  tcp_closed_timeout: soon\n",
            2,
            "limits.tcp_closed_timeout",
            "got 'soon'",
            id="str-for-float",
        ),
        pytest.param(
            "limits:\n  max_flows:\n", 2, "limits.max_flows", "got nothing", id="missing-value"
        ),
        pytest.param(
            "limits:\n  max_flows: " + "9" * 5000 + "\n",
            2,
            "limits.max_flows",
            "expected a positive integer",
            id="huge-int",
        ),
        pytest.param(
            "outputs:\n  events: 1\n",
            2,
            "outputs.events",
            "expected true or false, got 1",
            id="int-for-bool",
        ),
        pytest.param(
            "outputs:\n  dir: ''\n", 2, "outputs.dir", "expected a non-empty string", id="empty-dir"
        ),
        pytest.param(
            "sensor:\n  name: [a]\n", 2, "sensor.name", "got a list", id="list-for-string"
        ),
        pytest.param("limits: 5\n", 1, "limits", "expected a mapping, got 5", id="int-section"),
        pytest.param(
            "segments:\n  a:\n    cidrs: 10.0.0.0/8\n",
            3,
            "segments.a.cidrs",
            "expected a list, got '10.0.0.0/8'",
            id="scalar-for-list",
        ),
        pytest.param(
            "segments:\n  a:\n    cidrs:\n      - 10.0.0.0/8\n      - 10.0.0.5/24\n",
            5,
            "segments.a.cidrs[1]",
            "'10.0.0.5/24' has host bits set (did you mean 10.0.0.0/24?)",
            id="host-bits",
        ),
        pytest.param(
            "segments:\n  a:\n    cidrs: [not-a-net]\n",
            3,
            "segments.a.cidrs[0]",
            "'not-a-net' is not an IP network",
            id="bad-cidr-text",
        ),
        pytest.param(
            "segments:\n  a:\n    vlans: [30, 4096]\n",
            3,
            "segments.a.vlans[1]",
            "expected a VLAN id (0-4095), got 4096",
            id="vlan-too-big",
        ),
        pytest.param(
            "segments:\n  a:\n    vlans: [-1]\n",
            3,
            "segments.a.vlans[0]",
            "expected a VLAN id (0-4095), got -1",
            id="vlan-negative",
        ),
        pytest.param(
            "segments:\n  a: {vlans: [30]}\n  b: {vlans: [30]}\n",
            3,
            "segments.b.vlans[0]",
            "VLAN 30 is already in segment 'a'",
            id="vlan-in-two-segments",
        ),
        pytest.param(
            "segments:\n  a: {cidrs: [10.0.0.0/8]}\n  b: {cidrs: [10.0.0.0/8]}\n",
            3,
            "segments.b.cidrs[0]",
            "10.0.0.0/8 is already in segment 'a'",
            id="cidr-in-two-segments",
        ),
        pytest.param(
            "segments:\n  a:\n    cidrs: []\n",
            2,
            "segments.a",
            "at least one of cidrs, vlans",
            id="empty-segment",
        ),
        pytest.param(
            "segments:\n  cell 3: {vlans: [3]}\n",
            2,
            "segments.cell 3",
            "a segment name may only contain",
            id="bad-segment-name",
        ),
        pytest.param(
            "protocols:\n  modbus:\n    ports: [502, 70000]\n",
            3,
            "protocols.modbus.ports[1]",
            "expected a TCP port (1-65535), got 70000",
            id="port-too-big",
        ),
        pytest.param(
            "protocols:\n  modbus:\n    ports: [0]\n",
            3,
            "protocols.modbus.ports[0]",
            "expected a TCP port (1-65535), got 0",
            id="port-zero",
        ),
        pytest.param(
            "protocols:\n  modbus:\n    ports: ['502']\n",
            3,
            "protocols.modbus.ports[0]",
            "got '502'",
            id="port-as-string",
        ),
        pytest.param(
            "protocols:\n  modbus:\n    ports: [102]\n",
            3,
            "protocols.modbus.ports[0]",
            "port 102 is also assigned to s7comm",
            id="port-clash",
        ),
        pytest.param(
            "protocols:\n  modbus: {}\n  dnp3:\n    ports: [20000]\n",
            3,
            "protocols",
            "unknown protocol 'dnp3' (expected one of: modbus, s7comm, opcua)",
            id="unknown-protocol",
        ),
        pytest.param(
            "decode_as:\n  - 5020=modbus\n  - 5021=dnp3\n",
            3,
            "decode_as[1]",
            "unknown protocol 'dnp3' (expected one of: modbus, s7comm, opcua)",
            id="decode-as-unknown-protocol",
        ),
        pytest.param(
            "decode_as:\n  - '5020:modbus'\n",
            2,
            "decode_as[0]",
            "is not PORT=PROTOCOL",
            id="decode-as-malformed",
        ),
        pytest.param(
            "decode_as:\n  - 5020\n", 2, "decode_as[0]", "got 5020", id="decode-as-not-a-string"
        ),
        pytest.param(
            "decode_as: [5020=modbus, 5020=opcua]\n",
            1,
            "decode_as[1]",
            "port 5020 is already decoded as modbus",
            id="decode-as-twice",
        ),
        pytest.param(
            "protocols:\n  modbus: {enabled: false}\ndecode_as:\n  - 5020=modbus\n",
            4,
            "decode_as[0]",
            "protocol 'modbus' is disabled",
            id="decode-as-disabled",
        ),
        pytest.param(
            "limits:\n  max_flows: 1\n  max_flows: 2\n",
            3,
            "limits.max_flows",
            "duplicate key",
            id="duplicate-key",
        ),
        pytest.param(
            "sensor:\n  name: !!python/object/apply:os.getcwd []\n",
            2,
            "sensor.name",
            "got a value tagged 'tag:yaml.org,2002:python/object/apply:os.getcwd'",
            id="python-tag",
        ),
        pytest.param(
            "base: &b {max_flows: 3}\n", 1, None, "unknown key 'base'", id="anchor-holder"
        ),
        pytest.param("limits:\n  <<: {max_flows: 3}\n", 2, "limits", "merge keys", id="merge-key"),
    ],
)
def test_errors_name_line_and_key(text: str, line: int, key: str | None, fragment: str) -> None:
    error = parse_error(text)
    assert error.line == line, str(error)
    assert error.key == key, str(error)
    assert fragment in error.problem, str(error)
    prefix = f"otsentry.yaml:{line}: {key}: " if key else f"otsentry.yaml:{line}: "
    assert str(error).startswith(prefix), str(error)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("limits:\n  max_flows: 1\n  bad: [1, 2\n", 4),
        ("sensor:\n  name: a\n\tbad: 1\n", 3),
        ("outputs:\n  dir: a: b\n", 2),
        ("sensor: {}\n---\nlimits: {}\n", 2),
        ("sensor:\n  name: \x01\n", 2),
    ],
    ids=["unclosed-flow", "tab", "nested-colon", "two-documents", "control-char"],
)
def test_yaml_syntax_error_names_the_line(text: str, line: int) -> None:
    error = parse_error(text)
    assert error.line == line, str(error)
    assert error.key is None
    assert str(error).startswith(f"otsentry.yaml:{line}: YAML syntax error: ")


@pytest.mark.parametrize(
    ("text", "got"),
    [("- sensor\n- limits\n", "a list"), ("just text\n", "'just text'"), ("42\n", "42")],
)
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    error = parse_error(text)
    assert error.line == 1
    assert error.key is None
    assert "the top level must be a mapping" in error.problem
    assert error.problem.endswith(f"got {got}")


def test_config_error_is_a_value_error_and_pickles() -> None:
    error = ConfigError("f.yaml", 3, "limits.max_flows", "expected a positive integer, got 0")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (
        str(copy) == str(error) == "f.yaml:3: limits.max_flows: expected a positive integer, got 0"
    )
    assert (copy.source, copy.line, copy.key, copy.problem) == (
        error.source,
        error.line,
        error.key,
        error.problem,
    )


# -- segment assignment -----------------------------------------------------------------------

SEGMENTS = """\
segments:
  plant:
    cidrs: [10.0.0.0/8]
  cell-3:
    cidrs: [10.10.30.0/24]
    vlans: [30]
  cell-3-plc:
    cidrs: [10.10.30.16/28, "fd00:30::/48"]
  vlan-40:
    vlans: [40]
  v6-site:
    cidrs: ["fd00::/16"]
"""


@pytest.fixture(scope="module")
def segmented() -> Config:
    return parse_config(SEGMENTS)


def test_segment_by_vlan_wins_over_cidr(segmented: Config) -> None:
    assert segmented.segment_for("10.10.30.20", 40) == "vlan-40"
    assert segmented.segment_for("192.168.1.1", 30) == "cell-3"
    assert segmented.segment_for("fd00:30::1", 40) == "vlan-40"


def test_unmatched_vlan_falls_back_to_cidr(segmented: Config) -> None:
    assert segmented.segment_for("10.10.30.20", 99) == "cell-3-plc"
    assert segmented.segment_for("10.10.30.20", None) == "cell-3-plc"


def test_segment_by_most_specific_cidr(segmented: Config) -> None:
    assert segmented.segment_for("10.10.30.17", None) == "cell-3-plc"
    assert segmented.segment_for("10.10.30.40", None) == "cell-3"
    assert segmented.segment_for("10.99.0.1", None) == "plant"
    assert segmented.segment_for("fd00:30::7", None) == "cell-3-plc"
    assert segmented.segment_for("fd00:1::7", None) == "v6-site"


def test_segment_order_in_file_does_not_matter() -> None:
    reordered = parse("""\
        segments:
          narrow: {cidrs: [10.1.2.0/24]}
          wide: {cidrs: [10.0.0.0/8]}
        """)
    flipped = parse("""\
        segments:
          wide: {cidrs: [10.0.0.0/8]}
          narrow: {cidrs: [10.1.2.0/24]}
        """)
    for config in (reordered, flipped):
        assert config.segment_for("10.1.2.3", None) == "narrow"
        assert config.segment_for("10.1.3.3", None) == "wide"


def test_default_segment_ipv4_slash_24(segmented: Config) -> None:
    assert segmented.segment_for("192.168.7.200", None) == "192.168.7.0/24"
    assert segmented.segment_for("192.168.7.200", 5) == "192.168.7.0/24"
    assert Config().segment_for("10.10.30.5", 30) == "10.10.30.0/24"


def test_default_segment_ipv6_slash_64(segmented: Config) -> None:
    assert segmented.segment_for("2001:db8:1:2:aaaa::1", None) == "2001:db8:1:2::/64"
    assert Config().segment_for("fe80::1234:5678", None) == "fe80::/64"


def test_segment_for_accepts_address_objects(segmented: Config) -> None:
    assert segmented.segment_for(ipaddress.ip_address("10.10.30.17"), None) == "cell-3-plc"
    assert segmented.segment_for(ipaddress.ip_address("2001:db8::1"), None) == "2001:db8::/64"


def test_ipv4_mapped_ipv6_uses_ipv4_segments(segmented: Config) -> None:
    assert segmented.segment_for("::ffff:10.10.30.17", None) == "cell-3-plc"
    assert segmented.segment_for("::ffff:192.0.2.9", None) == "192.0.2.0/24"


def test_segment_for_rejects_non_addresses(segmented: Config) -> None:
    with pytest.raises(ValueError):
        segmented.segment_for("not-an-ip", None)


def test_segment_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_SEGMENT_CACHE_SIZE", 8)
    config = parse_config(SEGMENTS)
    answers = {f"192.168.0.{i}": config.segment_for(f"192.168.0.{i}", None) for i in range(50)}
    assert set(answers.values()) == {"192.168.0.0/24"}
    assert len(config._segment_index.cache) <= 8
    assert config.segment_for("10.10.30.17", None) == "cell-3-plc"


def test_replace_rebuilds_segment_lookup(segmented: Config) -> None:
    other = dataclasses.replace(segmented, segments=())
    assert other.segment_for("10.10.30.17", None) == "10.10.30.0/24"
    assert segmented.segment_for("10.10.30.17", None) == "cell-3-plc"


# -- decode-as --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("5020=modbus", DecodeAs(5020, "modbus")),
        ("  48010 = opcua ", DecodeAs(48010, "opcua")),
        ("1102=S7COMM", DecodeAs(1102, "s7comm")),
        ("tcp.port==5020,modbus", DecodeAs(5020, "modbus")),
        ("tcp.port == 1502, mbtcp", DecodeAs(1502, "modbus")),
        ("65535=opcua", DecodeAs(65535, "opcua")),
    ],
)
def test_parse_decode_as(spec: str, expected: DecodeAs) -> None:
    assert parse_decode_as(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("5020", "is not PORT=PROTOCOL"),
        ("modbus", "is not PORT=PROTOCOL"),
        ("5020:modbus", "is not PORT=PROTOCOL"),
        ("5020==modbus", "is not PORT=PROTOCOL"),
        ("=modbus", "'' is not a TCP port"),
        ("0=modbus", "'0' is not a TCP port"),
        ("65536=modbus", "'65536' is not a TCP port"),
        ("-1=modbus", "'-1' is not a TCP port"),
        ("port=modbus", "'port' is not a TCP port"),
        ("5020=dnp3", "unknown protocol 'dnp3' (expected one of: modbus, s7comm, opcua)"),
        ("5020=", "unknown protocol ''"),
        ("udp.port==5020,modbus", "only tcp.port"),
        ("tcp.port==abc,modbus", "'abc' is not a TCP port"),
        ("9" * 5000 + "=modbus", "is not a TCP port"),
    ],
)
def test_parse_decode_as_rejects(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_decode_as(spec)
    assert isinstance(info.value, ConfigError)
    message = str(info.value)
    assert message.startswith(f"--decode-as: {spec!r}")
    assert fragment in message


# -- detection and alerts ---------------------------------------------------------------------


def test_detection_and_alerts_defaults() -> None:
    config = Config()
    assert config.detection == DetectionConfig((), True, ())
    assert config.alerts == AlertsConfig(60.0, EvidenceConfig(True, 20, 10, 20_000, 1000))


def test_detection_and_alerts_sections() -> None:
    config = parse("""\
        detection:
          rules: [site-rules/, ~/extra.yml]
          builtin_rules: false
          disabled_rules: [OTS-MODBUS-DEVICE-IDENTIFICATION]
        alerts:
          aggregation_window: 2.5
          evidence: {enabled: false, packets_before: 0, packets_after: 3, ring_packets: 50, max_files: 0}
        """)
    assert config.detection == DetectionConfig(
        (Path("site-rules"), Path("~/extra.yml").expanduser()),
        False,
        ("OTS-MODBUS-DEVICE-IDENTIFICATION",),
    )
    assert config.alerts == AlertsConfig(2.5, EvidenceConfig(False, 0, 3, 50, 0))
    assert parse("alerts: {aggregation_window: 0}").alerts.aggregation_window == 0.0
    assert parse("alerts: {evidence: {max_files: 7}}").alerts.evidence == EvidenceConfig(
        max_files=7
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("detection:\n  rule: [x]\n", "otsentry.yaml:2: detection: unknown key 'rule'"),
        ("detection:\n  rules: x.yml\n", "otsentry.yaml:2: detection.rules: expected a list"),
        (
            "detection:\n  rules: ['']\n",
            "otsentry.yaml:2: detection.rules[0]: expected a non-empty",
        ),
        (
            "detection:\n  builtin_rules: 1\n",
            "otsentry.yaml:2: detection.builtin_rules: expected true or false",
        ),
        (
            "detection:\n  disabled_rules: [A, B, A]\n",
            "otsentry.yaml:2: detection.disabled_rules[2]: A is listed twice",
        ),
        (
            "alerts:\n  aggregation_window: -1\n",
            "otsentry.yaml:2: alerts.aggregation_window: expected a number >= 0, got -1",
        ),
        (
            "alerts:\n  aggregation_window: .inf\n",
            "otsentry.yaml:2: alerts.aggregation_window: expected a number >= 0",
        ),
        (
            "alerts:\n  evidence:\n    ring_packets: 0\n",
            "otsentry.yaml:3: alerts.evidence.ring_packets: expected a positive integer, got 0",
        ),
        (
            "alerts:\n  evidence:\n    packets_before: -2\n",
            "otsentry.yaml:3: alerts.evidence.packets_before: expected an integer >= 0",
        ),
        (
            "alerts:\n  evidence:\n    enabled: yes please\n",
            "otsentry.yaml:3: alerts.evidence.enabled: expected true or false",
        ),
        ("alerts:\n  evidence: [1]\n", "otsentry.yaml:2: alerts.evidence: expected a mapping"),
        ("alerts:\n  window: 3\n", "otsentry.yaml:2: alerts: unknown key 'window'"),
    ],
)
def test_detection_and_alerts_errors(text: str, where: str) -> None:
    assert str(parse_error(text)).startswith(where)
