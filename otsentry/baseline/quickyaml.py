"""A fast reader for the block YAML the baseline store writes, exact or not at all.

``parse(text)`` returns what PyYAML's safe loader (without the timestamp resolver) returns for
the same text, or raises ``Unsupported`` for anything outside the plain subset the store's
dumper emits: block mappings and sequences indented by spaces, scalars on their key's or
item's line (plain ones may go on over more-indented lines, as the dumper folds long text;
single-quoted, or double-quoted without escapes, on one line), ``[]`` and ``{}``, full-line
comments. Plain scalars are resolved by the loader's own implicit resolvers and constructors
(memoised), so ``0x1F``, ``yes``, ``.nan`` or ``1_000`` mean what they mean to PyYAML.
Anchors, tags, flow collections with content, block scalars, quoted scalars over several
lines, tabs, trailing comments and document markers are all ``Unsupported``: the caller then
parses with PyYAML, which also names the line of any error. It is several times faster than composing PyYAML's
node graph because it builds no nodes and no marks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import yaml
from yaml.nodes import ScalarNode

__all__ = ["Unsupported", "parse"]

#: characters a plain scalar may not start with (``-`` is checked separately)
_INDICATORS: Final = frozenset("?:,[]{}#&*!|>'\"%@`")
#: what YAML forbids (PyYAML's reader refuses it) plus what this reader leaves to PyYAML
_AWKWARD: Final = re.compile(
    r"[^\n\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029]"
)
_SIMPLE_TAGS: Final = frozenset(
    {
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
    }
)


class Unsupported(ValueError):
    """The text uses YAML this reader does not handle (parse it with PyYAML)."""


class _Scalars:
    """Plain scalar text → value, as a given PyYAML loader class resolves and constructs it."""

    def __init__(self, loader: type[Any]) -> None:
        self.resolvers: Mapping[str | None, Sequence[tuple[str, Any]]] = (
            loader.yaml_implicit_resolvers
        )
        self.constructor = yaml.constructor.SafeConstructor()
        self.constructors: Mapping[Any, Callable[..., Any]] = (
            yaml.constructor.SafeConstructor.yaml_constructors
        )
        self.memo: dict[str, Any] = {}

    def plain(self, text: str) -> Any:
        try:
            return self.memo[text]
        except KeyError:
            pass
        if not text or text[0] in _INDICATORS or text != text.strip(" "):
            raise Unsupported(text)
        if text[0] == "-" and (len(text) == 1 or text[1] == " "):
            raise Unsupported(text)
        if ": " in text or " #" in text or text.endswith(":") or "\t" in text:
            raise Unsupported(text)
        tag = "tag:yaml.org,2002:str"
        for candidate, regexp in (*self.resolvers.get(text[0], ()), *self.resolvers.get(None, ())):
            if regexp.match(text):
                tag = candidate
                break
        if tag not in _SIMPLE_TAGS:
            raise Unsupported(text)
        value = self.constructors[tag](self.constructor, ScalarNode(tag, text))
        if len(self.memo) >= 65_536:
            self.memo.clear()
        self.memo[text] = value
        return value


_SCALARS: dict[type[Any], _Scalars] = {}


def _quoted(text: str) -> str:
    """A one-line quoted scalar (the whole of ``text``) → its string."""
    quote = text[0]
    body = text[1:-1]
    if len(text) < 2 or text[-1] != quote:
        raise Unsupported(text)
    if quote == "'":
        if "'" in body.replace("''", ""):
            raise Unsupported(text)
        return body.replace("''", "'")
    if '"' in body or "\\" in body:
        raise Unsupported(text)
    return body


class _Parser:
    __slots__ = ("after_gap", "contents", "indents", "n", "scalars")

    def __init__(self, text: str, scalars: _Scalars) -> None:
        if _AWKWARD.search(text):
            raise Unsupported("a tab, a byte order mark, a line break other than LF, or a control")
        indents: list[int] = []
        contents: list[str] = []
        #: lines that follow a blank or comment line (such a line ends a multi-line scalar)
        after_gap: set[int] = set()
        gap = False
        for line in text.split("\n"):
            content = line.lstrip(" ")
            if not content or content[0] == "#":
                gap = True
                continue
            if line.endswith(" "):
                raise Unsupported("trailing space")
            if gap:
                after_gap.add(len(contents))
                gap = False
            indents.append(len(line) - len(content))
            contents.append(content)
        self.indents = indents
        self.contents = contents
        self.after_gap = after_gap
        self.n = len(contents)
        self.scalars = scalars

    def document(self) -> Any:
        if not self.n or self.indents[0] != 0:
            raise Unsupported("empty document or indented first line")
        first = self.contents[0]
        if first.startswith(("---", "...", "%")):
            raise Unsupported("document markers and directives")
        value, i = self.block(0, 0)
        if i != self.n:
            raise Unsupported("text after the document")
        return value

    def block(self, i: int, indent: int) -> tuple[Any, int]:
        """The node whose first line is ``i`` (at ``indent``); returns it and the next line."""
        content = self.contents[i]
        if content == "-" or content.startswith("- "):
            return self.sequence(i, indent)
        return self.mapping(i, indent)

    def sequence(self, i: int, indent: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        indents, contents, n = self.indents, self.contents, self.n
        while i < n and indents[i] == indent:
            content = contents[i]
            if not content.startswith("- "):
                raise Unsupported("a sequence item without '- '")
            rest = content[2:]
            if rest[:1] == " ":
                raise Unsupported("irregular spacing after '- '")
            if rest == "-" or rest.startswith("- ") or (":" in rest and _key_end(rest) >= 0):
                # a nested block on the same line: parse it as a line of its own
                indents[i] = indent + 2
                contents[i] = rest
                value, i = self.block(i, indent + 2)
            else:
                value, i = self.value(rest, i + 1, indent)
            out.append(value)
        if i < n and indents[i] > indent:
            raise Unsupported("unexpected indentation")
        return out, i

    def mapping(self, i: int, indent: int) -> tuple[dict[Any, Any], int]:
        out: dict[Any, Any] = {}
        indents, contents, n = self.indents, self.contents, self.n
        while i < n and indents[i] == indent:
            content = contents[i]
            end = _key_end(content)
            if end < 0:
                raise Unsupported("not a 'key: value' line")
            key = self.scalar(content[:end])
            if key == "<<" or isinstance(key, list | dict):
                raise Unsupported("merge or complex key")
            rest = content[end + 1 :]
            i += 1
            if rest:
                if rest[0] != " " or rest[1:2] == " ":
                    raise Unsupported("irregular spacing after ':'")
                out[key], i = self.value(rest[1:], i, indent)
            elif i < n and indents[i] > indent:
                out[key], i = self.block(i, indents[i])
            else:
                if i < n and indents[i] == indent and contents[i][:1] == "-":
                    raise Unsupported("a sequence at its key's indentation")
                out[key] = None
        if i < n and indents[i] > indent:
            raise Unsupported("unexpected indentation")
        return out, i

    def value(self, text: str, i: int, indent: int) -> tuple[Any, int]:
        """The scalar ``text`` that ends a line, continued on the following lines indented
        deeper than ``indent`` when it is a plain one the dumper folded."""
        indents, n = self.indents, self.n
        if i < n and indents[i] > indent:
            head = text[:1]
            if head == "'" or head == '"' or text in ("[]", "{}"):
                raise Unsupported("a continued quoted scalar")
            parts = [text]
            contents, after_gap = self.contents, self.after_gap
            while i < n and indents[i] > indent:
                if i in after_gap:
                    raise Unsupported("a blank or comment line in a scalar")
                part = contents[i]
                if part[0] in _INDICATORS or part[0] == "-":
                    raise Unsupported("a continuation line that starts like a node")
                parts.append(part)
                i += 1
            text = " ".join(parts)
        return self.scalar(text), i

    def scalar(self, text: str) -> Any:
        head = text[:1]
        if head == "'" or head == '"':
            return _quoted(text)
        if text == "[]":
            return []
        if text == "{}":
            return {}
        return self.scalars.plain(text)


def _key_end(content: str) -> int:
    """Where the ``:`` that ends a mapping line's key is (-1: not a mapping line)."""
    head = content[:1]
    if head == "'" or head == '"':
        close = content.find(head, 1)
        if head == "'":
            while close >= 0 and content[close + 1 : close + 2] == "'":
                close = content.find("'", close + 2)
        if close < 0 or content[close + 1 : close + 2] != ":":
            return -1
        end = close + 1
        return end if end + 1 == len(content) or content[end + 1] == " " else -1
    end = content.find(": ")
    if end >= 0:
        return end
    return len(content) - 1 if content.endswith(":") else -1


def parse(text: str, loader: type[Any]) -> Any:
    """``text`` as data, exactly as PyYAML's ``loader`` would construct it, or ``Unsupported``.

    ``loader`` is a safe loader class; its implicit resolvers decide what plain scalars mean.
    """
    scalars = _SCALARS.get(loader)
    if scalars is None:
        scalars = _SCALARS[loader] = _Scalars(loader)
    try:
        return _Parser(text, scalars).document()
    except (IndexError, RecursionError) as exc:
        raise Unsupported(str(exc)) from exc
    except yaml.YAMLError as exc:
        # a plain scalar the constructor refuses: PyYAML reports it with its line
        raise Unsupported(str(exc)) from exc
