"""What a `drift rerecord` run found, per cassette and across them, as text, markdown or JSON.

A field change seen in several messages of one cassette is listed once with its count; one
seen in several cassettes (a new field in every `thread/start` result) is listed once for
all of them, and each cassette lists only what is its own. The closing lines repeat the
invocation with ``--update``, so running the printed command accepts exactly what was shown.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from harness.drift.compare import Change, FieldChange

DEFAULT_TIMEOUT = 3.0
SIGN = {"added": "+", "removed": "-", "changed": "~", "moved": ">"}
FOLD_AT = 3  # a field change seen in this many messages of a cassette is listed once
STATUSES = ("same", "changed", "updated", "error")


@dataclass
class DriftResult:
    cassette: str
    status: str                          # same | changed | updated | error
    old_version: str | None = None
    new_version: str | None = None
    seconds: float = 0.0
    changes: list[Change] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    replay: str = ""                      # the engine's status: ok | incomplete | diverged
    new_cassette: str | None = None
    error: str | None = None

    @property
    def drift(self) -> list[Change]:
        return [c for c in self.changes if c.counts]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["drift"] = len(self.drift)
        return out


@dataclass
class Invocation:
    """The options of a run that the accept command must repeat to re-record the same way."""

    codex_bin: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    floating: list[str] = field(default_factory=list)   # methods added to the built-in ones
    ignore: list[str] = field(default_factory=list)

    def accept_command(self, paths: Iterable[str]) -> str:
        argv = ["codex-cassette", "drift", "rerecord", *paths]
        if self.codex_bin:
            argv += ["--codex-bin", self.codex_bin]
        if self.timeout != DEFAULT_TIMEOUT:
            argv += ["--timeout", f"{self.timeout:g}"]
        for method in self.floating:
            argv += ["--floating", method]
        for pattern in self.ignore:
            argv += ["--ignore", pattern]
        return shlex.join([*argv, "--update"])


def exit_code(results: list[DriftResult]) -> int:
    """2 when a cassette could not be re-recorded, 1 when one drifted, else 0."""
    if any(r.status == "error" for r in results):
        return 2
    return 1 if any(r.status == "changed" for r in results) else 0


# -- what repeats --------------------------------------------------------------------------


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _field_line(f: FieldChange) -> str:
    if f.entries:
        names = ", ".join(f.entries)
        if f.kind == "changed":
            return f"{f.path}: changed in {len(f.entries)} entries: {names}"
        return f"{f.path}: {len(f.entries)} {'entry' if len(f.entries) == 1 else 'entries'} {f.kind}: {names}"
    if f.kind == "moved":
        return f"{f.path}: true moved from {f.old} to {f.new}"
    if f.kind == "added":
        return f"{f.path}: added {_short(f.new)}"
    if f.kind == "removed":
        return f"{f.path}: removed (was {_short(f.old)})"
    return f"{f.path}: {_short(f.old)} -> {_short(f.new)}"


_ENTRY = re.compile(r"\[[^\]=\[]+=[^\]]*\](?=[.\[])")  # a named entry with more path after it


def general(path: str) -> str:
    """A field path with named array entries as `[*]`: `turn.items[id=msg_3].x` is the same
    change in a cassette whose item is `msg_1`."""
    return _ENTRY.sub("[*]", path)


_NAMED = re.compile(r"\[([^\]=\[]+=[^\]]*)\]")      # a named entry: [id=gpt-6.1-sol]
_LAST_ENTRY = re.compile(r"^(.*)\[([^\]=\[]+=[^\]]*)\]$")  # a path that ends with one


def _group(f: FieldChange) -> tuple[str, bool] | None:
    """What a field change is summarised under: (the array's path, True) for a whole named
    entry added or removed, (the general path, False) for a field of a named entry."""
    whole = _LAST_ENTRY.match(f.path)
    if whole and f.kind in ("added", "removed"):
        return whole.group(1), True
    return (general(f.path), False) if _NAMED.search(f.path) else None


def summarise(fields: list[FieldChange]) -> list[FieldChange]:
    """One message's field changes as a reviewer reads them: the named entries added to (or
    removed from) one array in one line, by name, not each entry's value cut off; a field
    that changed differently in several named entries (six model descriptions) in one line
    naming the entries, and alike in several in one line for all. The values stay in the
    JSON report."""
    groups: dict[tuple[str, bool, str], list[FieldChange]] = {}
    for f in fields:
        g = _group(f)
        if g is not None:
            groups.setdefault((*g, f.kind), []).append(f)
    out: list[FieldChange] = []
    said: set[int] = set()
    for f in fields:
        g = _group(f)
        group = groups[(*g, f.kind)] if g is not None else [f]
        if g is None or (len(group) < 2 and not g[1]):
            out.append(f)
            continue
        if id(f) in said:
            continue
        said |= {id(x) for x in group}
        path, whole = g
        if whole:
            names = [_LAST_ENTRY.match(x.path).group(2) for x in group]  # type: ignore[union-attr]
            out.append(FieldChange(path, f.kind, entries=sorted(names)))
        elif len({json.dumps([x.old, x.new], sort_keys=True, default=str) for x in group}) == 1:
            out.append(FieldChange(path, f.kind, f.old, f.new))  # alike in each entry: said once
        else:
            out.append(FieldChange(path, f.kind, entries=sorted("/".join(_NAMED.findall(x.path)) for x in group)))
    return out


def _key(c: Change, f: FieldChange | None) -> str:
    what = None if f is None else [general(f.path), f.kind, f.old, f.new, f.entries]
    return json.dumps([c.kind, c.side, c.label, c.floating, c.note, what], sort_keys=True, default=str)


def _items(c: Change) -> list[FieldChange | None]:
    return summarise(c.fields) if c.fields else [None]


def shared(results: list[DriftResult]) -> dict[str, tuple[Change, FieldChange | None, list[str]]]:
    """Changes (a field of a message, or a whole message) seen in two or more cassettes."""
    seen: dict[str, tuple[Change, FieldChange | None, list[str]]] = {}
    for r in results:
        for c in r.changes:
            for f in _items(c):
                k = _key(c, f)
                entry = seen.setdefault(k, (c, f, []))
                if r.cassette not in entry[2]:
                    entry[2].append(r.cassette)
    return {k: v for k, v in seen.items() if len(v[2]) > 1}


def _own(r: DriftResult, common: set[str]) -> tuple[list[tuple[FieldChange, int]], list[tuple[Change, list[FieldChange]]]]:
    """What is left of a cassette's changes once the shared ones are taken out: field
    changes repeated in its messages (with their count), then each message's own."""
    def fkey(f: FieldChange) -> str:
        return json.dumps([general(f.path), f.kind, f.old, f.new, f.entries], sort_keys=True, default=str)

    counts: dict[str, tuple[FieldChange, int]] = {}
    for c in r.changes:
        for f in summarise(c.fields):
            if _key(c, f) not in common:
                k = fkey(f)
                g = FieldChange(general(f.path), f.kind, f.old, f.new, f.entries)
                counts[k] = (g, counts.get(k, (g, 0))[1] + 1)
    folded = {k for k, (_, n) in counts.items() if n >= FOLD_AT}
    shown = []
    for c in r.changes:
        rest = [f for f in summarise(c.fields) if _key(c, f) not in common and fkey(f) not in folded]
        if rest or (not c.fields and _key(c, None) not in common):
            shown.append((c, rest))
    return [counts[k] for k in sorted(folded)], shown


def _tag(c: Change) -> str:
    tag = " (floating)" if c.floating else ""
    return tag + (f" ({c.note}; not drift)" if not c.counts else (f" ({c.note})" if c.note else ""))


def _where(c: Change) -> str:
    parts = []
    if c.old_at:
        parts.append(f"old {c.old_at}")
    if c.new_at:
        parts.append(f"new line {c.new_at.rsplit(':', 1)[-1]}" if ":" in c.new_at else f"new {c.new_at}")
    return ", ".join(parts)


def _rest(n: int, more: bool) -> str:
    return f"{n} {'more ' if more else ''}changed message(s) differ only as listed above"


def _tally(results: list[DriftResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    return f"{len(results)} cassette(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _what(c: Change, f: FieldChange | None) -> str:
    head = f"{SIGN[c.kind]} {c.kind} {c.side} {c.label}{_tag(c)}"
    if f is None:
        return head
    return f"{head}: {_field_line(FieldChange(general(f.path), f.kind, f.old, f.new, f.entries))}"


# -- renderers -----------------------------------------------------------------------------


def render_text(results: list[DriftResult], invocation: Invocation | None = None) -> str:
    common = shared(results)
    lines: list[str] = []
    if common:
        lines.append(f"in several cassettes ({len(common)} change(s)):")
        for c, f, where in common.values():
            lines.append(f"  {_what(c, f)}  [{len(where)} cassettes]")
    for r in results:
        head = f"{r.cassette}: {r.status}"
        if r.status == "error":
            lines.append(f"{head}: {r.error}")
            continue
        lines.append(f"{head} (codex {r.old_version} -> {r.new_version}, re-recorded in {r.seconds:.1f} s"
                     + (f", replay {r.replay}" if r.replay != "ok" else "") + ")")
        folded, shown = _own(r, set(common))
        for f, n in folded:
            lines.append(f"  ~ in {n} messages: {_field_line(f)}")
        for c, fields in shown:
            lines.append(f"  {SIGN[c.kind]} {c.kind} {c.side} {c.label}{_tag(c)}  [{_where(c)}]")
            lines.extend(f"      {_field_line(f)}" for f in fields)
        if len(shown) < len(r.changes):
            lines.append(f"  ({_rest(len(r.changes) - len(shown), bool(shown))})")
        if r.notes:
            kinds = sorted({n["kind"] for n in r.notes})
            lines.append("  replay notes: " + ", ".join(f"{sum(n['kind'] == k for n in r.notes)} {k}"
                                                        for k in kinds) + " (details with --format json)")
        if r.new_cassette:
            lines.append(f"  new recording: {r.new_cassette}")
    lines.append(_tally(results))
    accept = _accept(results, invocation)
    if accept:
        lines.append(f"to accept the new recordings: {accept}")
    return "\n".join(lines) + "\n"


def render_markdown(results: list[DriftResult], invocation: Invocation | None = None) -> str:
    out = ["## Re-recorded cassettes", "", "| cassette | status | codex | seconds | drift |", "|---|---|---|---|---|"]
    for r in results:
        out.append(f"| `{r.cassette}` | {r.status} | {r.old_version} → {r.new_version} | {r.seconds:.1f} "
                   f"| {len(r.drift)} |")
    common = shared(results)
    if common:
        out += ["", f"### In several cassettes ({len(common)})", ""]
        for c, f, where in common.values():
            out.append(f"- `{_what(c, f)}` — {len(where)} cassettes")
    for r in results:
        if r.status == "error":
            out += ["", f"### `{r.cassette}`", "", f"Error: {r.error}"]
            continue
        folded, shown = _own(r, set(common))
        if not (folded or shown):
            continue
        out += ["", f"### `{r.cassette}`", ""]
        out += [f"- in {n} messages: `{_field_line(f)}`" for f, n in folded]
        for c, fields in shown:
            out.append(f"- **{c.kind}** {c.side} `{c.label}`{_tag(c)} — {_where(c)}")
            out += [f"  - `{_field_line(f)}`" for f in fields]
        if len(shown) < len(r.changes):
            out.append(f"- ({_rest(len(r.changes) - len(shown), bool(shown))})")
    out += ["", _tally(results)]
    accept = _accept(results, invocation)
    if accept:
        out += ["", f"To accept: `{accept}`"]
    return "\n".join(out) + "\n"


def render_json(results: list[DriftResult], invocation: Invocation | None = None) -> str:
    summary: dict[str, Any] = {"cassettes": len(results), **{s: sum(r.status == s for r in results)
                                                              for s in STATUSES}}
    summary["exit_code"] = exit_code(results)
    data = {"summary": summary, "accept": _accept(results, invocation),
            "results": [r.to_json() for r in results]}
    return json.dumps(data, indent=2, default=str) + "\n"


def _accept(results: list[DriftResult], invocation: Invocation | None) -> str | None:
    changed = [r.cassette for r in results if r.status == "changed"]
    return (invocation or Invocation()).accept_command(changed) if changed else None


def render(results: list[DriftResult], fmt: str, invocation: Invocation | None = None) -> str:
    if fmt == "json":
        return render_json(results, invocation)
    if fmt == "markdown":
        return render_markdown(results, invocation)
    return render_text(results, invocation)
