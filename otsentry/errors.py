"""Errors that point into a file the user wrote (the configuration, a rule)."""

from __future__ import annotations

from typing import Any


class FileProblem(ValueError):
    """A problem in a file: ``source:line: key: problem``.

    ``line`` is 1-based, or None when the problem has no place in a file (e.g. a missing file);
    ``key`` is the dotted path of the value at fault, or None for the document as a whole.
    """

    def __init__(self, source: str, line: int | None, key: str | None, problem: str) -> None:
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem

    def __reduce__(self) -> tuple[Any, tuple[str, int | None, str | None, str]]:
        return (type(self), (self.source, self.line, self.key, self.problem))
