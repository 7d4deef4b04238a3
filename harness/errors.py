"""Errors the harness raises. Each renders as one readable paragraph."""

from __future__ import annotations

import os

from harness.safe_text import for_people

ERROR_CAP = 8 * 1024  # an error is one paragraph, whatever value it quotes


class HarnessError(Exception):
    """Base class: a problem the user can act on, shown without a traceback.

    Its text is escaped and capped however it was built, since messages quote what a
    file or a peer said."""

    def __str__(self) -> str:
        return for_people(super().__str__(), ERROR_CAP)


class CassetteError(HarnessError):
    """A cassette or scenario file that cannot be used, located by file and line."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ScenarioError(CassetteError):
    """A YAML scenario that does not compile."""


class UsageError(HarnessError):
    """A wrong flag or argument combination."""
