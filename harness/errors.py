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

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str, excerpt: str = "") -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        # The line's text around the column at fault, and a caret under it (safe_text.pointed):
        # shown under the paragraph, where a person reads it.
        self.excerpt = excerpt
        super().__init__(self.headline + (f"\n{excerpt}" if excerpt else ""))

    @property
    def headline(self) -> str:
        """The error in one line: file:line and what is wrong (without the excerpt)."""
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return for_people(f"{where}: {self.message}", ERROR_CAP, keep="")


class ScenarioError(CassetteError):
    """A YAML scenario that does not compile."""


class UsageError(HarnessError):
    """A wrong flag or argument combination."""
