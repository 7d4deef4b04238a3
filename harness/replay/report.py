"""What a replay reports: how far it got, the first divergence, what was never played.

Written as JSON by the fake server (its launcher reads it back), summarised as
one readable block for a failing test.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Divergence:
    kind: str                    # mismatch | unexpected | timeout | closed
    message: str                 # one readable paragraph
    expected: Any = None
    expected_at: str | None = None
    received: Any = None
    matcher: str | None = None
    diff: str = ""


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
    exit_code: int | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)  # tolerant play: what differed
    awaiting_close: bool = False  # all that is left is the peer hanging up (and our exit)
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
        lines = [head, f"  {self.matched} peer messages matched, {self.played} events played of {self.total}"]
        if self.divergence:
            lines.append("  " + self.divergence.message.replace("\n", "\n  "))
            if self.divergence.diff:
                lines.append("  diff (recorded -> live):")
                lines.extend("    " + d for d in self.divergence.diff.splitlines())
        if self.status in ("running", "stopped") and self.played < self.total and not self.awaiting_close:
            lines.append(f"  the session was still running: {self.total - self.played} event(s) not reached")
        if self.notes:
            kinds = sorted({n["kind"] for n in self.notes})
            lines.append(f"  {len(self.notes)} note(s) from tolerant play: " + ", ".join(
                f"{sum(n['kind'] == k for n in self.notes)} {k}" for k in kinds))
        if self.unplayed:
            lines.append(f"  {len(self.unplayed)} event(s) never played, first:")
            lines.extend(f"    {u['at']}: {u['event']}" for u in self.unplayed[:5])
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: str | Path) -> "ReplayReport":
        data = json.loads(Path(path).read_text())
        div = data.pop("divergence", None)
        report = cls(**data)
        report.divergence = Divergence(**div) if div else None
        return report
