"""Protocol coverage: which methods of a schema a set of cassettes exercises.

Server notifications and server requests count when the server sent them;
client requests and notifications when the client did. A method that no
cassette exercises is a part of the protocol replay tests say nothing about.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.format.load import open_cassette
from harness.drift.snapshot import UNIONS, Snapshot
from harness.drift.validate import expand_paths

_LABEL = {
    "client_requests": "client requests",
    "client_notifications": "client notifications",
    "server_requests": "server requests",
    "server_notifications": "server notifications",
}


@dataclass
class Coverage:
    version: str
    cassettes: int
    seen: dict[str, Counter] = field(default_factory=dict)      # kind -> method -> count
    known: dict[str, list[str]] = field(default_factory=dict)   # kind -> schema methods

    def exercised(self, kind: str) -> list[str]:
        return sorted(m for m in self.known[kind] if self.seen[kind][m])

    def never(self, kind: str) -> list[str]:
        return sorted(m for m in self.known[kind] if not self.seen[kind][m])

    def unknown(self, kind: str) -> list[str]:
        return sorted(m for m in self.seen[kind] if m not in self.known[kind])

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.version, "cassettes": self.cassettes,
                **{k: {"exercised": {m: self.seen[k][m] for m in self.exercised(k)},
                       "never": self.never(k), "not_in_schema": self.unknown(k)}
                   for k in self.known}}


def coverage(paths: Iterable[str | Path], snap: Snapshot) -> Coverage:
    files = expand_paths(paths)
    cov = Coverage(snap.version, len(files),
                   seen={k: Counter() for k in UNIONS.values()},
                   known={k: sorted(snap.methods(k)) for k in UNIONS.values()})
    for path in files:
        for event in open_cassette(path).messages():
            msg = event.msg
            if isinstance(msg, dict) and isinstance(msg.get("method"), str):
                kind = f"{event.side}_{'requests' if 'id' in msg else 'notifications'}"
                cov.seen[kind][msg["method"]] += 1
    return cov


def render(cov: Coverage, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(cov.to_json(), indent=2) + "\n"
    md = fmt == "markdown"
    lines = [f"{'## ' if md else ''}Protocol coverage of {cov.cassettes} cassette(s) "
             f"against schema {cov.version}"]
    for kind, label in _LABEL.items():
        done, total = len(cov.exercised(kind)), len(cov.known[kind])
        pct = 100.0 * done / total if total else 100.0
        lines += ["", f"{'### ' if md else ''}{label}: {done}/{total} exercised ({pct:.0f}%)"]
        bullet = "- " if md else "  "
        lines += [f"{bullet}{'`' if md else ''}{m}{'`' if md else ''} x{cov.seen[kind][m]}"
                  for m in cov.exercised(kind)]
        never = cov.never(kind)
        if never:
            lines.append(f"{bullet}never: " + ", ".join(never))
        unknown = cov.unknown(kind)
        if unknown:
            lines.append(f"{bullet}not in the schema: " + ", ".join(unknown))
    return "\n".join(lines) + "\n"
