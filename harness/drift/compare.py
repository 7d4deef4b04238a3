"""Comparing two recordings of the same session structurally.

Used by `drift rerecord` to say what moved between a committed cassette and a
new recording from another (or the same) codex. Values that differ on every
run are normalised (clocks, UUIDs numbered in order of first appearance,
volatile text in tool output); early unprompted notifications may move; the
order inside a run of server messages, which codex emits concurrently, does
not count. deepdiff names what changed inside a message; arrays of objects that name
themselves (`id`, `slug`, `name`) are lined up by that name (harness.drift.align).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from deepdiff import DeepDiff

from harness.drift.align import ORDER, Ignore, align, is_mark, join_path
from harness.format.cassette import Cassette
from harness.format.placeholders import map_strings
from harness.format.wire import request_key

# Notifications codex sends unprompted while it starts up; where they land
# relative to the first requests is a race, so they are matched anywhere.
FLOATING = ["configWarning", "remoteControl/status/changed", "deprecationNotice"]
# Keys whose values differ on every run (clocks, pids, host, user agent).
VOLATILE_KEYS = frozenset({
    "startedAt", "completedAt", "durationMs", "startedAtMs", "completedAtMs", "emittedAtMs",
    "createdAt", "updatedAt", "recencyAt", "userAgent", "installationId", "processId", "serverName",
    "cliVersion",  # the version of the codex that answered: differs on every upgrade by definition
})
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Volatile text inside strings (tool output, rollout file names).
TEXT_RULES = [
    (re.compile(r"Wall time: [0-9.]+ seconds"), "Wall time: <t> seconds"),
    (re.compile(r"Chunk ID: [0-9A-Za-z_-]+"), "Chunk ID: <chunk>"),
    (re.compile(r"rollout-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d"), "rollout-<time>"),
    (re.compile(r"sessions/\d{4}/\d\d/\d\d"), "sessions/<date>"),
]

def scrub_text(obj: Any) -> Any:
    def sub(s: str) -> str:
        for pattern, token in TEXT_RULES:
            s = pattern.sub(token, s)
        return s
    return map_strings(obj, sub)


# -- structural comparison --------------------------------------------------------------


@dataclass
class FieldChange:
    path: str
    kind: str          # changed | added | removed | moved (a mark to another entry, harness.drift.align)
    old: Any = None
    new: Any = None
    entries: list[str] = field(default_factory=list)  # a summary's entries (harness.drift.rerecord_report)


@dataclass
class Change:
    kind: str          # added | removed | changed | moved
    side: str
    label: str         # thread/start, result of thread/start, item/started, closes its stream
    old_at: str | None = None
    new_at: str | None = None
    fields: list[FieldChange] = field(default_factory=list)
    floating: bool = False
    note: str = ""

    @property
    def counts(self) -> bool:
        """Whether this is drift. A message that arrived before a client message it used
        to follow was only faster than the client (a race); everything else counts."""
        return not (self.kind == "moved" and self.note == "earlier" and not self.fields)


@dataclass
class _Entry:
    side: str
    label: str
    body: Any
    at: str
    epoch: int           # client messages before it: where it sits in the causal order
    floating: bool = False
    norm: Any = None

    @property
    def key(self) -> tuple[str, str]:
        return self.side, self.label


def _entries(cassette: Cassette, floating: set[str]) -> list[_Entry]:
    """One entry per message/eof/exit, labelled; responses named after their request."""
    pending: dict[str, dict[str, str]] = {"client": {}, "server": {}}  # requester side -> id -> method
    out: list[_Entry] = []
    epoch = 0
    for e in cassette.events:
        at = cassette.where(e)
        if e.msg is not None and isinstance(e.msg, dict):
            msg = e.msg
            idk = request_key(msg.get("id"))
            if msg.get("method") and "id" in msg:
                pending[e.side][idk] = msg["method"]
                label = msg["method"]
            elif msg.get("method"):
                label = msg["method"]
            else:
                other = "server" if e.side == "client" else "client"
                method = pending[other].pop(idk, "an unknown request")
                label = f"{'error for' if 'error' in msg else 'result of'} {method}"
            body = {k: v for k, v in msg.items() if k not in ("id", "jsonrpc")}
            is_floating = e.side == "server" and "id" not in msg and label in floating
            out.append(_Entry(e.side, label, body, at, epoch, is_floating))
        elif e.raw is not None:
            out.append(_Entry(e.side, "non-JSON line", e.raw.decode("utf-8", "replace"), at, epoch))
        elif e.eof:
            out.append(_Entry(e.side, "closes its stream", None, at, epoch))
        elif e.exit is not None:
            out.append(_Entry(e.side, "exit", {"exit": e.exit}, at, epoch))
        if e.side == "client" and (e.msg is not None or e.eof):
            epoch += 1
    return out


def _canonical(entries: list[_Entry]) -> list[_Entry]:
    """Runs of server messages sorted by label (stably): codex emits them concurrently."""
    out: list[_Entry] = []
    run: list[_Entry] = []
    for entry in entries + [None]:  # type: ignore[list-item]
        if entry is not None and entry.side == "server":
            run.append(entry)
            continue
        out.extend(sorted(run, key=lambda x: x.label))
        run = []
        if entry is not None:
            out.append(entry)
    return out


class IdTokens:
    """UUIDs as stable tokens named after where each first appears (``<turn.id#2>``), so one
    id more or less in a new recording renumbers only ids of its own kind."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def token(self, uuid: str, where: str) -> str:
        uuid = uuid.lower()
        if uuid not in self.tokens:
            self.counts[where] = self.counts.get(where, 0) + 1
            self.tokens[uuid] = f"<{where or 'id'}#{self.counts[where]}>"
        return self.tokens[uuid]


def normalise(value: Any, ids: IdTokens, where: str = "") -> Any:
    """Volatile values as type tokens, UUIDs as IdTokens, volatile text scrubbed."""
    if isinstance(value, dict):
        parent = where.rsplit(".", 1)[-1]
        return {k: (f"<{type(v).__name__}>" if k in VOLATILE_KEYS and v is not None
                    else normalise(v, ids, f"{parent}.{k}" if parent else k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, ids, where) for v in value]
    if isinstance(value, str):
        value = scrub_text(value)
        return UUID.sub(lambda m: ids.token(m.group(0), where), value)
    return value


def field_changes(old: Any, new: Any, ignore: Ignore = Ignore()) -> list[FieldChange]:
    """Every field that differs, by path; arrays of self-naming objects lined up by name
    (harness.drift.align), paths the user ignores left out."""
    o, n = align(old, new)
    diff = DeepDiff(o, n, verbose_level=2)
    found: dict[str, FieldChange] = {}
    kinds = {"values_changed": "changed", "type_changes": "changed",
             "dictionary_item_added": "added", "iterable_item_added": "added",
             "dictionary_item_removed": "removed", "iterable_item_removed": "removed"}
    for report_type, kind in kinds.items():
        for level in diff.tree.get(report_type, []):
            parts = level.path(output_format="list")
            if ORDER in parts:  # the order of named entries: one change for the whole array
                parts = parts[: parts.index(ORDER) + 1]
                change = FieldChange(join_path(parts), "changed", _at(o, parts), _at(n, parts))
            elif parts and is_mark(parts[-1]):
                change = FieldChange(join_path(parts), "moved", level.t1, level.t2)
            else:
                change = FieldChange(join_path(parts), kind, None if kind == "added" else level.t1,
                                     None if kind == "removed" else level.t2)
            if not ignore(change.path):
                found.setdefault(change.path + kind, change)
    return sorted(found.values(), key=lambda f: f.path)


def _at(value: Any, parts: list[Any]) -> Any:
    for p in parts:
        value = value[p]
    return value


def compare_cassettes(old: Cassette, new: Cassette, floating: Iterable[str] = FLOATING,
                      ignore: Iterable[str] = ()) -> list[Change]:
    """What differs between two recordings of one scenario, after normalisation.
    `ignore`: field path patterns whose changes are not drift (harness.drift.align.Ignore)."""
    fl = set(floating)
    skip = Ignore(tuple(ignore))
    a_all, b_all = _entries(old, fl), _entries(new, fl)
    a = [e for e in a_all if not e.floating]
    b = [e for e in b_all if not e.floating]
    # Ids are numbered in the canonical order, so two concurrent messages that swapped
    # places do not swap their tokens; the alignment itself follows the recorded order.
    for seq, every in ((a, a_all), (b, b_all)):
        ids = IdTokens()
        for e in _canonical(seq) + sorted((x for x in every if x.floating), key=lambda x: x.label):
            e.norm = normalise(e.body, ids)
    changes: list[Change] = []
    removed: list[_Entry] = []
    added: list[_Entry] = []
    run: dict[int, int] = {}  # id(entry) -> the aligned run it belongs to
    for n, (xs, ys) in enumerate(_runs(a, b)):
        run.update({id(e): n for e in xs + ys})
        matcher = difflib.SequenceMatcher(None, [e.key for e in xs], [e.key for e in ys], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for x, y in zip(xs[i1:i2], ys[j1:j2]):
                    fields = field_changes(x.norm, y.norm, skip)
                    if fields:
                        changes.append(Change("changed", x.side, x.label, x.at, y.at, fields))
            else:
                removed.extend(xs[i1:i2])
                added.extend(ys[j1:j2])
    for x in list(removed):
        same = [y for y in added if y.key == x.key]
        y = next((y for y in same if run[id(y)] == run[id(x)]), same[0] if same else None)
        if y is None:
            continue
        removed.remove(x)
        added.remove(y)
        fields = field_changes(x.norm, y.norm, skip)
        if run[id(y)] == run[id(x)]:  # the same run of server messages: codex's concurrency, not a move
            if fields:
                changes.append(Change("changed", x.side, x.label, x.at, y.at, fields))
            continue
        # The same message on the other side of a client message: moved, not gone and new.
        changes.append(Change("moved", x.side, x.label, x.at, y.at, fields,
                              note="earlier" if y.epoch < x.epoch else "later"))
    changes += [Change("removed", x.side, x.label, old_at=x.at) for x in removed]
    changes += [Change("added", y.side, y.label, new_at=y.at) for y in added]
    changes += _compare_floating([e for e in a_all if e.floating], [e for e in b_all if e.floating], skip)
    return changes


def _runs(a: list[_Entry], b: list[_Entry]) -> list[tuple[list[_Entry], list[_Entry]]]:
    """The two recordings cut into aligned pieces: the client messages both have, matched
    first (they are the causal skeleton: the new recording replays them), each alone, and
    between two of them the messages of each side, to be aligned in the order recorded.
    So when one of several like messages is gone, its neighbours say which (the middle
    `turn/diff/updated` of a file change, not the last)."""
    ca = [i for i, e in enumerate(a) if e.side == "client"]
    cb = [j for j, e in enumerate(b) if e.side == "client"]
    anchors = [(ca[m.a + k], cb[m.b + k])
               for m in difflib.SequenceMatcher(None, [a[i].key for i in ca], [b[j].key for j in cb],
                                                autojunk=False).get_matching_blocks()
               for k in range(m.size)]
    out: list[tuple[list[_Entry], list[_Entry]]] = []
    i0 = j0 = 0
    for i, j in anchors + [(len(a), len(b))]:
        out.append((a[i0:i], b[j0:j]))
        if i < len(a):
            out.append(([a[i]], [b[j]]))
        i0, j0 = i + 1, j + 1
    return out


def _compare_floating(a: list[_Entry], b: list[_Entry], skip: Ignore) -> list[Change]:
    changes: list[Change] = []
    for label in sorted({e.label for e in a} | {e.label for e in b}):
        xs = [e for e in a if e.label == label]
        ys = [e for e in b if e.label == label]
        for x, y in zip(xs, ys):
            fields = field_changes(x.norm, y.norm, skip)
            if fields:
                changes.append(Change("changed", x.side, label, x.at, y.at, fields, floating=True))
        changes += [Change("removed", x.side, label, old_at=x.at, floating=True) for x in xs[len(ys):]]
        changes += [Change("added", y.side, label, new_at=y.at, floating=True) for y in ys[len(xs):]]
    return changes


# -- per-cassette results and reports ---------------------------------------------------------


