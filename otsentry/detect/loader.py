"""Rule files: YAML → plain data with line numbers → validated, compiled rules.

Every problem raises (or, for ``collect_rules``, returns) a :class:`RuleError` naming the file, the
line and the dotted key at fault: ``rules/modbus/x.yml:14: detection.selection.sub_function|gt:
expected a number, got 'four'``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from otsentry.detect.compile import CompiledRule, CompileError, compile_rule
from otsentry.detect.schema import schema_problems
from otsentry.errors import FileProblem

__all__ = [
    "RULE_SUFFIXES",
    "RuleDocument",
    "RuleError",
    "builtin_rule_paths",
    "collect_rules",
    "expand_rule_paths",
    "format_key",
    "load_rules",
    "parse_document",
    "read_document",
]

#: a position in a rule document: mapping keys and list indexes from the root
KeyPath: TypeAlias = tuple[str | int, ...]

#: file name endings of rule files
RULE_SUFFIXES: Final = (".yml", ".yaml")

_TAG_STR: Final = "tag:yaml.org,2002:str"
_TAG_NULL: Final = "tag:yaml.org,2002:null"
_TAG_MERGE: Final = "tag:yaml.org,2002:merge"
_TAG_MAP: Final = "tag:yaml.org,2002:map"
_TAG_SEQ: Final = "tag:yaml.org,2002:seq"
_TAG_TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"
_SCALAR_TAGS: Final = frozenset(
    {
        _TAG_STR,
        _TAG_NULL,
        _TAG_TIMESTAMP,
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
    }
)


class RuleError(FileProblem):
    """A problem with a rule file: ``source:line: key: problem``."""


def format_key(path: KeyPath) -> str | None:
    """``("detection", "selection", "unit_id")`` → ``detection.selection.unit_id``; lists as ``[i]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out or None


@dataclass(frozen=True, slots=True)
class RuleDocument:
    """One rule file as plain data, with the line of every key and list item."""

    source: str
    data: Any
    lines: Mapping[KeyPath, int]

    def line(self, path: KeyPath) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path: KeyPath, problem: str) -> RuleError:
        """A RuleError pointing at ``path``."""
        return RuleError(self.source, self.line(path), format_key(path), problem)


def read_document(path: str | Path) -> RuleDocument:
    """Read a rule file into a RuleDocument (RuleError if unreadable or not YAML)."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RuleError(source, None, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RuleError(source, line, None, "not valid UTF-8 text") from exc
    return parse_document(text, source)


#: libyaml's parser when PyYAML was built with it (ten times faster; the same marks)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_document(text: str, source: str = "<string>") -> RuleDocument:
    """Parse YAML ``text`` (one document) into plain data with line numbers."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise RuleError(source, line, None, f"YAML syntax error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise RuleError(source, None, None, f"YAML syntax error: {exc}") from exc
    except RecursionError as exc:
        raise RuleError(source, None, None, "YAML nesting too deep") from exc
    lines: dict[KeyPath, int] = {(): 1}
    if root is None:
        return RuleDocument(source, None, lines)
    builder = _Builder(source, lines)
    return RuleDocument(source, builder.value(root, ()), lines)


class _Builder:
    """Composed YAML nodes → dicts, lists and scalars, recording lines."""

    def __init__(self, source: str, lines: dict[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.constructor = SafeConstructor()

    def error(self, node: Node, path: KeyPath, problem: str) -> RuleError:
        return RuleError(self.source, node.start_mark.line + 1, format_key(path), problem)

    def value(self, node: Node, path: KeyPath) -> Any:
        if isinstance(node, MappingNode):
            if node.tag != _TAG_MAP:
                raise self.error(node, path, f"values tagged {node.tag!r} are not supported")
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _TAG_MERGE:
                    raise self.error(key_node, path, "merge keys ('<<') are not supported")
                if not isinstance(key_node, ScalarNode) or key_node.tag != _TAG_STR:
                    raise self.error(
                        key_node, path, f"expected a name as key, got {key_node.value!r}"
                    )
                name = str(key_node.value)
                child = (*path, name)
                if name in out:
                    raise self.error(key_node, child, "duplicate key")
                self.lines[child] = key_node.start_mark.line + 1
                out[name] = self.value(value_node, child)
            return out
        if isinstance(node, SequenceNode):
            if node.tag != _TAG_SEQ:
                raise self.error(node, path, f"values tagged {node.tag!r} are not supported")
            items: list[Any] = []
            for i, item in enumerate(node.value):
                child = (*path, i)
                self.lines[child] = item.start_mark.line + 1
                items.append(self.value(item, child))
            return items
        if not isinstance(node, ScalarNode) or node.tag not in _SCALAR_TAGS:
            raise self.error(node, path, f"values tagged {node.tag!r} are not supported")
        if node.tag == _TAG_TIMESTAMP:
            return str(node.value)  # dates stay text: 2026-11-22
        try:
            return self.constructor.construct_object(node)
        except (ConstructorError, ValueError) as exc:
            raise self.error(node, path, f"bad value {node.value!r}: {exc}") from exc


# -- rule sets ---------------------------------------------------------------------------------


def builtin_rule_paths() -> list[Path]:
    """The rule files of the built-in pack (``otsentry.rules``, subdirectories included)."""
    found: list[Path] = []
    for root in importlib.import_module("otsentry.rules").__path__:
        found.extend(_rule_files(Path(root)))
    return sorted(found)


def _rule_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.suffix in RULE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
    )


def expand_rule_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories as the rule files under them (RuleError if missing)."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out.extend(_rule_files(path))
        elif path.is_file():
            out.append(path)
        else:
            raise RuleError(str(path), None, None, "no such file or directory")
    return out


def compile_document(doc: RuleDocument) -> CompiledRule:
    """Validate and compile one document; raise the first RuleError found."""
    rule, errors = _compile(doc)
    if errors or rule is None:
        raise errors[0]
    return rule


def _compile(doc: RuleDocument, check: bool = True) -> tuple[CompiledRule | None, list[RuleError]]:
    """The rule, or its problems: the schema's first (``check``), then the compiler's. Without
    ``check`` the schema is consulted only when the compiler refuses the rule, to name the
    problem as it would."""
    if check:
        problems = schema_problems(doc.data)
        if problems:
            return None, [doc.error(path, problem) for path, problem in problems]
    try:
        return compile_rule(doc.data, doc.source), []
    except CompileError as exc:
        if not check:
            return _compile(doc)
        return None, [doc.error(exc.path, exc.problem)]


#: compiled files by (path as given, size, mtime, schema checked): every Pipeline loads the
#: built-in pack, and validation is most of a load. Compiled rules hold no state (correlation
#: state is the engine's).
_COMPILED: dict[
    tuple[str, int, int, bool], tuple[RuleDocument, CompiledRule | None, list[RuleError]]
] = {}
_COMPILED_MAX = 4096


def _read_and_compile(
    path: Path, check: bool = True
) -> tuple[RuleDocument, CompiledRule | None, list[RuleError]]:
    try:
        st = path.stat()
    except OSError:
        st = None
    key = (str(path), st.st_size, st.st_mtime_ns, check) if st is not None else None
    hit = _COMPILED.get(key) if key is not None else None
    if hit is not None:
        return hit
    doc = read_document(path)
    rule, problems = _compile(doc, check)
    if key is not None:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = (doc, rule, problems)
    return doc, rule, problems


def collect_rules(
    paths: Sequence[str | Path] = (),
    *,
    builtin: bool = True,
    disabled: Iterable[str] = (),
    check_builtin: bool = False,
) -> tuple[list[CompiledRule], list[RuleError]]:
    """Load every rule it can; return the rules and every error found (none lost).

    Files from ``paths`` are checked against the rule schema, then compiled. The built-in pack
    is only compiled (the test suite holds every built-in file to the schema; checking 38 files
    at each start cost ~0.15 s, most of a replay's start-up) unless ``check_builtin``."""
    errors: list[RuleError] = []
    files: list[Path] = builtin_rule_paths() if builtin else []
    trusted = frozenset(files) if not check_builtin else frozenset()
    for item in paths:
        try:
            files.extend(expand_rule_paths([item]))
        except RuleError as exc:
            errors.append(exc)
    rules: list[CompiledRule] = []
    seen: dict[str, tuple[str, int]] = {}
    done: set[Path] = set()
    for path in files:
        resolved = path.resolve()
        if resolved in done:
            continue
        done.add(resolved)
        try:
            doc, rule, problems = _read_and_compile(path, path not in trusted)
        except RuleError as exc:
            errors.append(exc)
            continue
        errors.extend(problems)
        if rule is None:
            continue
        rid = rule.rule.id
        line = doc.line(("id",))
        if rid in seen:
            other, other_line = seen[rid]
            errors.append(
                RuleError(
                    doc.source,
                    line,
                    "id",
                    f"duplicate rule id {rid!r}: also in {other}:{other_line}",
                )
            )
            continue
        seen[rid] = (doc.source, line)
        rules.append(rule)
    skip = set(disabled)
    return [r for r in rules if r.rule.id not in skip], errors


def load_rules(
    paths: Sequence[str | Path] = (),
    *,
    builtin: bool = True,
    disabled: Iterable[str] = (),
) -> list[CompiledRule]:
    """The built-in pack (unless ``builtin=False``) plus the files and directories in ``paths``,
    less the ``disabled`` rule ids. Raises the first RuleError found."""
    rules, errors = collect_rules(paths, builtin=builtin, disabled=disabled)
    if errors:
        raise errors[0]
    return rules
