"""One cassette per connection: NAME.jsonl, NAME.2.jsonl, ... and the launch counter.

A test may start codex more than once (the openai-codex SDK resumes a thread in
a second process). Each start is a connection of its own, recorded to and
replayed from its own cassette. In-process handles are numbered by the fixture;
a command line a client launches by itself numbers its launches through a
counter file the fixture owns: each launch takes the next number under a lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.format.locks import FileLock
from harness.format.safe_files import open_private


def connection_path(base: str | Path, n: int) -> Path:
    """The cassette of the n-th connection (1-based): the base itself, then NAME.n.SUFFIX."""
    base = Path(base)
    if n <= 1:
        return base
    return base.with_name(f"{base.stem}.{n}{base.suffix}")


@dataclass(frozen=True)
class Launch:
    number: int
    pid: int


@dataclass(frozen=True)
class LaunchCounter:
    """A file of launches, one ``NUMBER PID`` line each; ``take()`` appends the next."""

    path: Path

    def take(self, pid: int | None = None) -> int:
        """This launch's number (1, 2, ...), counted across processes."""
        lock = FileLock(self.path.with_name(self.path.name + ".lock")).acquire(wait=30.0, purpose="count a launch")
        try:
            number = len(self.launches()) + 1
            with open_private(self.path, "ab") as out:
                out.write(f"{number} {os.getpid() if pid is None else pid}\n".encode("ascii"))
            return number
        finally:
            lock.release(remove=True)

    def launches(self) -> list[Launch]:
        try:
            lines = self.path.read_text(encoding="ascii").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            number, _, pid = line.partition(" ")
            if number.isdigit() and pid.isdigit():
                out.append(Launch(int(number), int(pid)))
        return out
