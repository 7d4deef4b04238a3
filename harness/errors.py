"""Errors the harness raises. Each renders as one readable paragraph."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base class: a problem the user can act on, shown without a traceback."""


class CassetteError(HarnessError):
    """A cassette or scenario file that cannot be used, located by file and line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ScenarioError(CassetteError):
    """A YAML scenario that does not compile."""


class UsageError(HarnessError):
    """A wrong flag or argument combination."""
