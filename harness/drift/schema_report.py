"""Rendering a schema diff (and its impact on cassettes) as text, markdown or JSON."""

from __future__ import annotations

import json

from typing import Any

from harness.drift.impact import Impact
from harness.drift.schema_diff import Change, SchemaDiff
from harness.drift.verdicts import SEVERITIES

METHODS_SHOWN = 3
PLACES_SHOWN = 3


def _methods(c: Change) -> str:
    if not c.methods:
        return "no stable method"
    parts = []
    for sender, labels in c.by_sender.items():
        more = len(labels) - METHODS_SHOWN
        shown = ", ".join(labels[:METHODS_SHOWN]) + (f" +{more} more" if more > 0 else "")
        parts.append(f"{sender}: {shown}" if len(c.by_sender) > 1 else shown)
    return "; ".join(parts)


def _tail(c: Change) -> str:
    bits = [f"sent by {c.sender}"]
    if c.gated:
        bits.append(f"gated by {c.gated}")
    return "; ".join(bits)


def _impact_line(imp: Impact) -> str:
    if imp.touches:
        more = len(imp.touches) - PLACES_SHOWN
        return "used in " + ", ".join(imp.touches[:PLACES_SHOWN]) + (f" +{more} more" if more > 0 else "")
    if imp.exercised:
        return "methods exercised (" + ", ".join(imp.exercised[:PLACES_SHOWN]) + "), not at this place"
    return "not used by the cassettes"


def summary_line(diff: SchemaDiff) -> str:
    gated = len(diff.gated())
    return (f"schema {diff.old_version} -> {diff.new_version}: "
            + ", ".join(f"{diff.count(s)} {s}" for s in SEVERITIES)
            + (f" ({gated} gated)" if gated else "")
            + f"; {len(diff.types_added)} types added, {len(diff.types_removed)} removed")


def render_text(diff: SchemaDiff, impacts: list[Impact] | None = None) -> str:
    lines = [summary_line(diff)]
    if impacts is not None:
        hits = [i for i in impacts if i.change.severity != "additive" and i.level < 2]
        lines += ["", f"TOUCHING THE CASSETTES ({len(hits)} breaking or risky)"]
        for imp in sorted(hits, key=lambda i: (i.level, SEVERITIES.index(i.change.severity), i.change.path)):
            c = imp.change
            lines.append(f"  {c.severity} [{c.kind}] {c.path}: {c.detail}")
            lines.append(f"      {_impact_line(imp)}")
    for sev in SEVERITIES:
        items = [c for c in diff.changes if c.severity == sev]
        if not items:
            continue
        lines += ["", f"{sev.upper()} ({len(items)})"]
        for c in items:
            lines.append(f"  [{c.kind}] {c.path}: {c.detail} ({_tail(c)})")
            if c.methods:
                lines.append(f"      reached by {_methods(c)}; e.g. {c.example}")
            if c.also:
                lines.append(f"      also at {', '.join(c.also)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _row(c: Change) -> str:
    reached = _md(_methods(c)) + (f"<br>e.g. {_code(c.example)}" if c.example else "")
    return (f"| {c.kind} | {_code(c.path)} | {_md(c.detail)} | {c.sender}"
            f"{' (gated: ' + c.gated + ')' if c.gated else ''} | {reached} |")


def render_markdown(diff: SchemaDiff, impacts: list[Impact] | None = None) -> str:
    verdict = "**breaking changes**" if diff.breaking else "no breaking change"
    out = [f"## Codex app-server schema: {diff.old_version} → {diff.new_version}", "",
           f"Result: {verdict}. Severities are for a client of the protocol, by who sends each type "
           "(rules: docs/drift.md in codex-cassette).", "",
           "| severity | changes |", "|---|---|"]
    out += [f"| {s} | {diff.count(s)} |" for s in SEVERITIES]
    out += [f"| gated (additive until the client opts in) | {len(diff.gated())} |",
            "", f"{len(diff.types_added)} types added, {len(diff.types_removed)} removed "
            "(their uses are listed where they changed)."]
    if impacts is not None:
        hits = [i for i in impacts if i.change.severity != "additive" and i.level < 2]
        out += ["", f"### Touching the cassettes ({len(hits)})", ""]
        if hits:
            out += ["| severity | change | where | what the cassettes hold |", "|---|---|---|---|"]
            for imp in sorted(hits, key=lambda i: (i.level, SEVERITIES.index(i.change.severity), i.change.path)):
                c = imp.change
                out.append(f"| {c.severity} | {c.kind}: {_md(c.detail)} | {_code(c.path)} | "
                           f"{_md(_impact_line(imp))} |")
        else:
            out.append("No breaking or risky change reaches a method the cassettes use.")
    header = ["| kind | path | detail | sent by | reached by |", "|---|---|---|---|---|"]
    for sev in SEVERITIES:
        items = [c for c in diff.changes if c.severity == sev]
        if not items:
            continue
        title = f"{sev.capitalize()} ({len(items)})"
        fold = sev == "additive"  # long and harmless: folded in a job summary
        out += ["", f"<details><summary>{title}</summary>" if fold else f"### {title}", ""]
        out += header + [_row(c) for c in items]
        if fold:
            out += ["", "</details>"]
    return "\n".join(out) + "\n"


def render_json(diff: SchemaDiff, impacts: list[Impact] | None = None) -> str:
    data: dict[str, Any] = diff.to_json()
    if impacts is not None:
        data["impact"] = [{"path": i.change.path, "kind": i.change.kind, "severity": i.change.severity,
                           "touches": i.touches, "exercised": i.exercised}
                          for i in impacts if i.level < 2]
    return json.dumps(data, indent=2) + "\n"


def render(diff: SchemaDiff, fmt: str, impacts: list[Impact] | None = None) -> str:
    if fmt == "json":
        return render_json(diff, impacts)
    if fmt == "markdown":
        return render_markdown(diff, impacts)
    return render_text(diff, impacts)



