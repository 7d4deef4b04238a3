"""What a replay reports: how far it got, the first divergence, what was never played.

Written as JSON by the fake server (its launcher reads it back), summarised as
one readable block for a failing test.

Everything a report carries passes one gate, ``report_text`` and ``report_value``,
when its Divergence is made (and again when one is read back): a live peer chooses
what it sends, so a report is capped (64 KiB of text, "... N bytes more") and
escaped for a terminal before anyone prints it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.format.safe_files import write_atomically
from harness.format.wire import encode
from harness.safe_text import CAP, clipped, for_people, printable

LONG_STRING = 1024  # a string inside a reported value is shortened past this many characters


def report_text(text: str, limit: int = CAP, keep: str = "\n") -> str:
    """The gate for every text a report carries: escaped for a terminal, then capped.
    Only a multi-line text (a diff) keeps its newlines; a message is one paragraph."""
    return for_people(text, limit, keep)


def report_value(value: Any, limit: int = CAP) -> Any:
    """The gate for every JSON value a report carries (what came in, what was expected):
    as it is while its JSON fits ``limit``; else its long strings shortened; else, still
    too big, the start of its JSON as a string, with how much was left out."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if len(encode(value)) <= limit:
        return value
    shortened = _shorten(value)
    data = encode(shortened)[:-1]
    if len(data) <= limit:
        return shortened
    return clipped(data.decode("utf-8", "replace"), limit)


def _shorten(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= LONG_STRING else f"{value[:LONG_STRING]}... {len(value) - LONG_STRING} more characters"
    if isinstance(value, dict):
        return {_shorten(k): _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value


def counted(n: int, noun: str) -> str:
    """``1 event``, ``2 events``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


@dataclass
class Divergence:
    kind: str                    # mismatch | unexpected | timeout | stalled | duplicate_id | error
    message: str                 # one readable paragraph
    expected: Any = None
    expected_at: str | None = None
    received: Any = None
    matcher: str | None = None
    diff: str = ""
    excerpt: str = ""            # a file's line at fault, and a caret under the column (a broken cassette)

    def __post_init__(self) -> None:
        # The one place every divergence, made here or read back, is bounded and made safe.
        self.message = report_text(self.message, keep="")
        self.diff = report_text(self.diff)
        self.excerpt = report_text(self.excerpt)
        self.expected = report_value(self.expected)
        self.received = report_value(self.received)
        if self.expected_at is not None:
            self.expected_at = report_text(self.expected_at, keep="")
        if self.matcher is not None:
            self.matcher = report_text(self.matcher, keep="")


@dataclass
class ReplayReport:
    cassette: str
    role: str
    status: str = "running"      # running | ok | diverged | incomplete | stopped (by a signal) | error
    total: int = 0
    played: int = 0
    matched: int = 0
    divergence: Divergence | None = None
    unplayed: list[dict[str, Any]] = field(default_factory=list)
    bindings: dict[str, str] = field(default_factory=dict)
    exit_code: int | str | None = None  # the cassette's exit: a code, or a signal's name (SIGKILL)
    notes: list[dict[str, Any]] = field(default_factory=list)  # tolerant play: what differed
    awaiting_close: bool = False  # all that is left is the peer hanging up (and our exit)
    last_received: Any = None     # the peer's last message (scrubbed, capped): what a hung client last said
    pid: int | None = None        # the fake server process that wrote this report
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def failed(self, strict: bool = True) -> bool:
        if self.status in ("diverged", "error"):
            return True
        if not strict:
            return False
        if self.status in ("running", "stopped"):
            # Still waiting for the peer to hang up is fine once everything else was played.
            return self.played < self.total and not self.awaiting_close
        return self.status == "incomplete" or bool(self.unplayed)

    def summary(self) -> str:
        head = f"replay of {self.cassette} as {self.role}: {self.status}"
        lines = [head, f"  {counted(self.matched, 'peer message')} matched, {self.played} of "
                       f"{counted(self.total, 'event')} played"]
        if self.divergence:
            lines.append("  " + self.divergence.message.replace("\n", "\n  "))
            if self.divergence.excerpt:
                lines.extend("  " + e for e in self.divergence.excerpt.splitlines())
            if self.divergence.diff:
                lines.append("  diff (recorded -> live):")
                lines.extend("    " + d for d in self.divergence.diff.splitlines())
        if self.status in ("running", "stopped") and self.played < self.total and not self.awaiting_close:
            lines.append(f"  the session was still running: {counted(self.total - self.played, 'event')} not reached")
        elif self.status in ("running", "stopped"):
            played = (f"all {counted(self.total, 'event')} played" if self.played >= self.total else
                      f"all but the hang-up played ({self.played} of {self.total} events)")
            lines.append(f"  {played}; the client was still connected when the test ended (it never hung up)")
        if self.last_received is not None and self.divergence is None:  # a divergence shows it already
            said = self.last_received
            if not isinstance(said, str):
                said = encode(said)[:-1].decode("utf-8", "replace")
            lines.append("  the client's last message: " + clipped(said, 2000))
        if self.notes:
            kinds = sorted({n["kind"] for n in self.notes})
            lines.append(f"  {counted(len(self.notes), 'note')} from tolerant play: " + ", ".join(
                f"{sum(n['kind'] == k for n in self.notes)} {k}" for k in kinds))
        if self.unplayed:
            lines.append(f"  {counted(len(self.unplayed), 'event')} never played, first:")
            lines.extend(f"    {u['at']}: {u['event']}" for u in self.unplayed[:5])
        # Cassette paths and event names come from files and peers too.
        return printable("\n".join(lines), keep="\n")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | os.PathLike[str]) -> None:
        write_atomically(path, (json.dumps(self.to_json(), indent=2, default=str) + "\n").encode("utf-8"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> "ReplayReport":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        div = data.pop("divergence", None)
        report = cls(**data)
        report.divergence = Divergence(**div) if div else None
        return report
