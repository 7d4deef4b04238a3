"""The verdicts of a sweep as a table: cassette point x fault kind -> survived / hung / crashed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from harness.faults.catalogue import KINDS
from harness.faults.oracle import CRASHED, HUNG, OUTCOMES, SURVIVED, Verdict
from harness.format.cassette import Cassette

MARK = {SURVIVED: ".", HUNG: "H", CRASHED: "C"}
HEADER = {"crash": "crash", "hangup": "hangup", "stall": "stall", "error": "error", "drop": "drop",
          "duplicate": "dup", "garbage": "garbage", "unknown-notification": "unk-note",
          "unknown-request": "unk-req", "novel-value": "novel", "delay": "delay"}
LEGEND = (". survived, H hung, C crashed, - not applicable. A row is a cassette line: crash, hangup, stall, "
          "garbage, unk-note, unk-req and delay come right after it, error, drop, dup and novel change it. One mark "
          "per variant (crash: plain, then stdout closed first; error: invalid-request, internal, overloaded, "
          "draining; novel: one per novelty).")


@dataclass
class SweepResult:
    cassette: Cassette
    command: Sequence[str]
    deadline: float
    jobs: int
    seconds: float
    clean: Verdict
    verdicts: list[Verdict]

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    def counts(self) -> dict[str, int]:
        return {o: sum(v.outcome == o for v in self.verdicts) for o in OUTCOMES}

    def headline(self) -> str:
        c = self.counts()
        return (f"{len(self.verdicts)} variants: {c[SURVIVED]} survived, {c[HUNG]} hung, {c[CRASHED]} crashed "
                f"({self.seconds:.1f} s, {self.jobs} at a time, deadline {self.deadline:g} s)")

    def to_json(self) -> dict[str, Any]:
        return {"cassette": str(self.cassette.path), "command": list(self.command), "deadline": self.deadline,
                "jobs": self.jobs, "seconds": round(self.seconds, 3),
                "summary": {"variants": len(self.verdicts), **self.counts()},
                "clean": self.clean.to_json(), "variants": [v.to_json() for v in self.verdicts]}


def _rows(result: SweepResult) -> tuple[list[str], list[tuple[int, str, dict[str, str]]]]:
    kinds = [k for k in KINDS if any(v.fault is not None and v.fault.kind == k for v in result.verdicts)]
    by_line: dict[int, dict[str, str]] = {}
    for verdict in result.verdicts:
        fault = verdict.fault
        assert fault is not None
        cells = by_line.setdefault(fault.point, {})
        cells[fault.kind] = cells.get(fault.kind, "") + MARK[verdict.outcome]
    lines = {e.line: e.describe() for e in result.cassette.events}
    rows = [(line, lines.get(line, ""), cells) for line, cells in sorted(by_line.items())]
    return kinds, rows


def _failures(result: SweepResult) -> list[str]:
    out = []
    for outcome in (HUNG, CRASHED):
        bad = [v for v in result.verdicts if v.outcome == outcome]
        if bad:
            out.append(f"{outcome} ({len(bad)}):")
            out.extend(f"  {v.id}: {v.message()}" for v in bad)
    notes = [v for v in [result.clean, *result.verdicts] if v.server]
    if notes:
        out.append(f"the fake's notes ({len(notes)}):")
        out.extend(f"  {v.id}: {v.server}" for v in notes)
    return out


def render_text(result: SweepResult) -> str:
    kinds, rows = _rows(result)
    widths = {k: max(len(HEADER[k]), *(len(c.get(k, "-")) for _, _, c in rows)) for k in kinds}
    about = min(44, max([len("event"), *(len(d) for _, d, _ in rows)]))
    out = [f"fault sweep of {result.cassette.path}", f"client: {' '.join(result.command)}",
           f"clean run: {result.clean.message()}", result.headline(), "",
           f"{'line':>5}  {'event':<{about}}  " + " ".join(f"{HEADER[k]:<{widths[k]}}" for k in kinds)]
    for line, what, cells in rows:
        out.append(f"{line:>5}  {what[:about]:<{about}}  "
                   + " ".join(f"{cells.get(k, '-'):<{widths[k]}}" for k in kinds).rstrip())
    out += ["", LEGEND, *_failures(result)]
    return "\n".join(out) + "\n"


def render_markdown(result: SweepResult) -> str:
    kinds, rows = _rows(result)
    out = [f"### Fault sweep: `{result.cassette.path}`", "", f"Client: `{' '.join(result.command)}`. "
           f"Clean run: {result.clean.message()}.", "", f"**{result.headline()}**", "",
           "| line | event | " + " | ".join(HEADER[k] for k in kinds) + " |",
           "|---:|---|" + "---|" * len(kinds)]
    for line, what, cells in rows:
        out.append(f"| {line} | {what.replace('|', '/')} | " + " | ".join(
            f"`{cells[k]}`" if k in cells else "" for k in kinds) + " |")
    out += ["", LEGEND]
    failures = _failures(result)
    if failures:
        out += ["", "```", *failures, "```"]
    return "\n".join(out) + "\n"


def render(result: SweepResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2) + "\n"
    if fmt == "markdown":
        return render_markdown(result)
    return render_text(result)
