"""Baseline files: ``DIR/<segment>.yaml``, one per segment, human-readable and diffable.

Layout (keys in this order; every aspect sorts its own items, so the same input gives the same
bytes and ``git diff`` of two baselines reads like a change log)::

    format_version: 1
    segment: 10.10.30.0/24
    learning: {sources, first_packet, last_packet, seconds, events, events_by_protocol,
               packets, bytes, min_events, min_seconds, sufficient, too_little_data, accepted}
    aspects:
      assets: ...
      links: ...

The file name is the segment made filename-safe (``10.10.30.0/24`` → ``10.10.30.0_24.yaml``);
the ``segment`` key inside is what counts. Times are ISO text (packet time, never wall-clock).
Every problem reading a file raises ``BaselineError`` naming the file, the line and the key.

Reading: ``quickyaml`` reads what the dumper writes (PyYAML anything else), and the data a
file's bytes parse to is kept by ``loadcache`` under their SHA-256 (in the user's cache
directory, never beside the files), so a sensor that starts again reads a large baseline fast.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from otsentry.baseline import loadcache, quickyaml
from otsentry.baseline.aspect import Aspect, AspectContext, AspectDataError, iso
from otsentry.baseline.items import parse_iso
from otsentry.baseline.registry import aspect_classes
from otsentry.baseline.segment import (
    FORMAT_VERSION,
    LearningInfo,
    SegmentBaseline,
    Sufficiency,
)
from otsentry.config import ConfigError

SUFFIX = ".yaml"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HEADER = (
    "# otsentry baseline of one network segment. Review it like code: every item is something\n"
    "# the segment did while learning. `otsentry baseline show|diff|accept` read and change it.\n"
)


class BaselineError(ConfigError):
    """A baseline file that cannot be read: ``file:line: key: problem``."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML (libyaml's parser when PyYAML has it) without the timestamp resolver: ISO
    times stay text."""


class _Dumper(yaml.SafeDumper):
    """Safe YAML without the timestamp resolver (ISO times written unquoted), lists indented."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


for _cls in (_Loader, _Dumper):
    _cls.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def file_name(segment: str) -> str:
    """The file a segment's baseline goes to: ``10.10.30.0/24`` → ``10.10.30.0_24.yaml``."""
    return (_UNSAFE.sub("_", segment).strip("._") or "segment") + SUFFIX


# -- writing ----------------------------------------------------------------------------------
def to_data(baseline: SegmentBaseline) -> dict[str, Any]:
    """The whole file as plain data, in file order."""
    info = baseline.info
    learning: dict[str, Any] = {
        "sources": list(info.sources),
        "first_packet": iso(info.first_ts) if info.first_ts is not None else None,
        "last_packet": iso(info.last_ts) if info.last_ts is not None else None,
        "seconds": info.seconds,
        "events": info.events,
        "events_by_protocol": dict(sorted(info.events_by_protocol.items())),
        "packets": info.packets,
        "bytes": info.bytes,
        "min_events": info.sufficiency.min_events,
        "min_seconds": info.sufficiency.min_seconds,
        "sufficient": info.sufficient,
        "too_little_data": list(info.too_little_data),
        "accepted": info.accepted,
    }
    return {
        "format_version": FORMAT_VERSION,
        "segment": baseline.segment,
        "learning": learning,
        "aspects": {name: aspect.to_data() for name, aspect in baseline.aspects.items()},
    }


def dumps(baseline: SegmentBaseline) -> str:
    """The file's text."""
    body = yaml.dump(
        to_data(baseline),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return _HEADER + body


def save(baseline: SegmentBaseline, directory: Path) -> Path:
    """Write one segment's file (and any aspect side files); sets ``baseline.version``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(baseline.segment)
    text = dumps(baseline)
    raw = text.encode("utf-8")
    path.write_bytes(raw)
    baseline.version = version_of(raw)
    if loadcache.cache_dir() is not None:  # the next read of this file starts from the cache
        loadcache.put(hashlib.sha256(raw).hexdigest(), _data(text, str(path)))
    stem = path.with_suffix("")
    for aspect in baseline.aspects.values():
        aspect.save_side(stem)
    return path


def save_all(baselines: Iterable[SegmentBaseline], directory: Path) -> list[Path]:
    """Write every baseline; returns the paths in segment order."""
    return [save(b, directory) for b in sorted(baselines, key=lambda b: b.segment)]


def version_of(data: bytes) -> str:
    """A baseline file's version: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:12]


# -- reading ----------------------------------------------------------------------------------
def load_dir(directory: Path) -> dict[str, SegmentBaseline]:
    """Every ``*.yaml`` baseline in ``directory``, by segment (two files of one segment, a
    missing directory or an empty one: ``BaselineError``)."""
    if not directory.is_dir():
        raise BaselineError(str(directory), None, None, "not a directory of baseline files")
    out: dict[str, SegmentBaseline] = {}
    where: dict[str, Path] = {}
    for path in sorted(directory.glob("*" + SUFFIX)):
        baseline = load(path)
        if baseline.segment in out:
            raise BaselineError(
                str(path),
                None,
                "segment",
                f"{baseline.segment} is also in {where[baseline.segment]}",
            )
        out[baseline.segment] = baseline
        where[baseline.segment] = path
    if not out:
        raise BaselineError(str(directory), None, None, f"no baseline files (*{SUFFIX}) in it")
    return out


def load(path: Path) -> SegmentBaseline:
    """Read one baseline file (and its aspects' side files)."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BaselineError(source, None, None, f"cannot read: {exc.strerror or exc}") from exc
    baseline = loads(raw, source)
    stem = path.with_suffix("")
    for name, aspect in baseline.aspects.items():
        try:
            aspect.load_side(stem)
        except AspectDataError as exc:
            raise BaselineError(source, None, f"aspects.{name}", str(exc)) from exc
    return baseline


def loads(raw: bytes, source: str = "<baseline>") -> SegmentBaseline:
    """Parse a baseline file's bytes (the data of bytes read before comes from the cache)."""
    digest = hashlib.sha256(raw).hexdigest()
    hit, data = loadcache.get(digest)
    text = _text(raw, source)
    if not hit:
        data = _data(text, source)
        loadcache.put(digest, data)
    baseline = _Reader(source, text).baseline(data)
    baseline.version = digest[:12]
    return baseline


def _text(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BaselineError(source, line, None, "not valid UTF-8 text") from exc


def _data(text: str, source: str) -> Any:
    """The file's data: by the quick reader of what the store writes, else by PyYAML."""
    try:
        return quickyaml.parse(text, _Loader)
    except quickyaml.Unsupported:
        return _parse(text, source)[1]


def _parse(text: str, source: str) -> tuple[Node | None, Any]:
    """The file's node graph (for line numbers) and its data, by PyYAML."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = None if mark is None else mark.line + 1
        raise BaselineError(source, where, None, f"YAML syntax error: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise BaselineError(source, None, None, f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    return root, data


class _Reader:
    """Turns a file's data into a ``SegmentBaseline``, with errors that name the line (the
    file is parsed again, with nodes, only to find that line)."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text

    def error(self, key: str | None, problem: str) -> BaselineError:
        return BaselineError(self.source, self.line_of(key or ""), key, problem)

    def line_of(self, key: str) -> int | None:
        """The 1-based line of the value at dotted path ``key`` (``a.b[2].c``), or of the
        deepest part of it that exists."""
        node = _parse(self.text, self.source)[0]
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
            child: Node | None = None
            if isinstance(node, MappingNode) and not part.startswith("["):
                for k, v in node.value:
                    if getattr(k, "value", None) == part:
                        child = v
                        line = k.start_mark.line + 1
                        break
            elif isinstance(node, SequenceNode) and part.startswith("["):
                index = int(part[1:-1])
                if index < len(node.value):
                    child = node.value[index]
                    line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line

    def baseline(self, data: Any) -> SegmentBaseline:
        if not isinstance(data, Mapping):
            raise self.error(None, "a baseline file must be a mapping")
        unknown = set(data) - {"format_version", "segment", "learning", "aspects"}
        if unknown:
            raise self.error(sorted(map(str, unknown))[0], "unknown key")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise self.error(
                "format_version",
                f"{version!r} is not a baseline format this version reads ({FORMAT_VERSION}); "
                "learn the baseline again",
            )
        segment = data.get("segment")
        if not isinstance(segment, str) or not segment:
            raise self.error("segment", "must be the segment's name")
        info = self.learning(data.get("learning"))
        aspects_data = data.get("aspects") or {}
        if not isinstance(aspects_data, Mapping):
            raise self.error("aspects", "must be a mapping of aspect name to its data")
        classes = aspect_classes()
        context = AspectContext(segment=segment)
        aspects: list[Aspect] = []
        for name in classes:
            if name not in aspects_data:
                continue
            body = aspects_data[name]
            try:
                aspects.append(classes[name].from_data(body or {}, context))
            except AspectDataError as exc:
                key = f"aspects.{name}.{exc.key}" if exc.key else f"aspects.{name}"
                raise self.error(key, exc.problem) from exc
        for name in aspects_data:
            if name not in classes:
                raise self.error(f"aspects.{name}", f"unknown aspect (known: {', '.join(classes)})")
        return SegmentBaseline(segment, aspects, info)

    def learning(self, data: Any) -> LearningInfo:
        if data is None:
            return LearningInfo()
        if not isinstance(data, Mapping):
            raise self.error("learning", "must be a mapping")
        info = LearningInfo()
        sources = data.get("sources") or []
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise self.error("learning.sources", "must be a list of file names")
        info.sources = list(sources)
        for name in ("first_packet", "last_packet"):
            value = data.get(name)
            if value is None:
                continue
            try:
                ts = parse_iso(value, f"learning.{name}")
            except AspectDataError as exc:
                raise self.error(exc.key, exc.problem) from exc
            if name == "first_packet":
                info.first_ts = ts
            else:
                info.last_ts = ts
        for name in ("events", "packets", "bytes", "accepted", "min_events"):
            value = data.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise self.error(f"learning.{name}", "must be a non-negative integer")
        min_seconds = data.get("min_seconds", Sufficiency().min_seconds)
        if not isinstance(min_seconds, int | float) or isinstance(min_seconds, bool):
            raise self.error("learning.min_seconds", "must be a number")
        info.events = data.get("events", 0)
        info.packets = data.get("packets", 0)
        info.bytes = data.get("bytes", 0)
        info.accepted = data.get("accepted", 0)
        by_protocol = data.get("events_by_protocol") or {}
        if not isinstance(by_protocol, Mapping) or not all(
            isinstance(v, int) for v in by_protocol.values()
        ):
            raise self.error("learning.events_by_protocol", "must map protocol to a count")
        info.events_by_protocol = Counter({str(k): v for k, v in by_protocol.items()})
        info.sufficiency = Sufficiency(data.get("min_events", 0), float(min_seconds))
        too_little = data.get("too_little_data") or []
        if not isinstance(too_little, list):
            raise self.error("learning.too_little_data", "must be a list of reasons")
        info.too_little_data = [str(x) for x in too_little]
        return info
