"""`codex-cassette drift rerecord`: record a live cassette again and say what moved.

Works for a cassette recorded by any client (optio's driver, the openai-codex
SDK, the built-in one): the header's scenario sets up the mock model and
CODEX_HOME, the real codex is spawned, and the replay engine plays the
cassette's CLIENT side against it (DESIGN.md, "Replay semantics" 9) while the
same Tee as live recording writes the new cassette. The engine sends each
recorded client message once the server messages recorded before it arrived,
so interrupts, approval answers and model switches keep their causal place.
It plays tolerantly: a changed codex still yields a whole recording plus notes.

Then old and new are compared structurally (deepdiff) after normalisation:
volatile values become stable tokens, UUIDs are numbered in order of first
appearance, early unprompted notifications may move, and the order inside a
run of server messages (which codex emits concurrently) does not count.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from deepdiff import DeepDiff

from harness.cassette import Cassette, load_cassette
from harness.errors import HarnessError
from harness.live.session import LiveCodex, LiveScenario
from harness.placeholders import map_strings
from harness.record import RecordingHandle
from harness.replay import SERVER_CHOSEN, ReplayEngine, ReplayOptions, ReplayReport
from harness.wire import Line

# Notifications codex sends unprompted while it starts up; where they land
# relative to the first requests is a race, so they are matched anywhere.
FLOATING = ["configWarning", "remoteControl/status/changed", "deprecationNotice"]
# Keys whose values differ on every run (clocks, pids, host, user agent).
VOLATILE_KEYS = frozenset({
    "startedAt", "completedAt", "durationMs", "startedAtMs", "completedAtMs", "emittedAtMs",
    "createdAt", "updatedAt", "recencyAt", "userAgent", "installationId", "processId", "serverName",
})
# The same keys as engine paths (ignored when matching), plus the rollout path.
VOLATILE_PATHS = [f"**.{k}" for k in sorted(VOLATILE_KEYS)] + ["**.thread.path"]
# Ids the live codex picks afresh: learned and substituted into later client messages.
LEARN = SERVER_CHOSEN + ["**.sessionId", "**.rootTurnId", "**.item.id", "**.itemId", "**.readState.revision"]
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Volatile text inside strings (tool output, rollout file names).
TEXT_RULES = [
    (re.compile(r"Wall time: [0-9.]+ seconds"), "Wall time: <t> seconds"),
    (re.compile(r"Chunk ID: [0-9A-Za-z_-]+"), "Chunk ID: <chunk>"),
    (re.compile(r"rollout-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d"), "rollout-<time>"),
    (re.compile(r"sessions/\d{4}/\d\d/\d\d"), "sessions/<date>"),
]
EXIT_WAIT = 10.0
STARTUP_TIMEOUT = 30.0  # codex's first answer (initialize) on a busy machine
SESSION_LIMIT = 300.0  # one re-record, all waits included


class RerecordError(HarnessError):
    """A cassette that cannot be re-recorded (not live, unreadable, codex would not run it)."""


def scrub_text(obj: Any) -> Any:
    def sub(s: str) -> str:
        for pattern, token in TEXT_RULES:
            s = pattern.sub(token, s)
        return s
    return map_strings(obj, sub)


# -- a Channel over a process handle ------------------------------------------------


class ProcessChannel:
    """The replay engine's Channel over a process handle (``.stdin`` with write/drain/close,
    ``.stdout`` an async iterator of lines), e.g. a RecordingHandle around codex.

    A pump task reads stdout into a queue: the engine's bounded waits cancel
    ``read_line``, and cancelling an iterator of the handle itself would end it
    (and record a false end of stream).
    """

    def __init__(self, handle: Any) -> None:
        self._stdin = handle.stdin
        self._stdout = handle.stdout
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pump: asyncio.Task | None = None
        self._eof = False
        self.closed = False

    def start(self) -> "ProcessChannel":
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._run_pump())
        return self

    async def _run_pump(self) -> None:
        try:
            async for item in self._stdout:
                self._queue.put_nowait(bytes(item))
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # a line over the stream limit or a broken pipe: end of what we can read
        finally:
            self._queue.put_nowait(None)

    async def read_line(self) -> Line | None:
        self.start()
        if self._eof:
            return None
        item = await self._queue.get()
        if item is None:
            self._eof = True
            return None
        newline = item.endswith(b"\n")
        data = item[:-1] if newline else item
        return Line(data[:-1] if data.endswith(b"\r") else data, newline=newline)

    def write(self, data: bytes) -> None:
        if not self.closed:
            try:
                self._stdin.write(data)
            except (ConnectionError, RuntimeError):
                pass  # codex is gone; the engine notices on its next read

    async def drain(self) -> None:
        try:
            await self._stdin.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                await self._stdin.drain()
            except (ConnectionError, RuntimeError):
                pass
            self._stdin.close()

    async def finish(self, timeout: float) -> None:
        """Let the pump read codex's stdout to its end (so the recording has it), bounded."""
        if self._pump is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), timeout)
        except asyncio.TimeoutError:
            self._pump.cancel()


# -- re-recording ---------------------------------------------------------------------


@dataclass
class Rerecording:
    path: Path                 # the new cassette
    codex_version: str
    report: ReplayReport       # the engine's, with report.notes from tolerant play
    seconds: float
    complete: bool


def _carried_meta(old: Cassette) -> dict[str, Any]:
    """What of the old header describes the scenario rather than the recording."""
    own = {"recorder", "command", "placeholders", "redactions", "recorded_at", "complete",
           "codex_version", "client", "end"}
    return {k: v for k, v in old.meta.items() if k not in own}


def _for_matching(cassette: Cassette) -> Cassette:
    """The cassette the engine plays: server text scrubbed as the live side will be."""
    events = [replace(e, msg=scrub_text(e.msg)) if e.side == "server" and e.msg is not None else e
              for e in cassette.events]
    return Cassette(path=cassette.path, meta=cassette.meta, events=events)


async def rerecord(path: str | Path, output: str | Path, *, codex_bin: str | None = None,
                   timeout: float = 3.0, floating: Iterable[str] = FLOATING) -> Rerecording:
    """Play ``path``'s client side against the live codex its header describes; record to ``output``."""
    [rec] = await rerecord_session([Path(path)], [Path(output)], codex_bin=codex_bin, timeout=timeout,
                                   floating=floating)
    return rec


async def rerecord_session(paths: list[Path], outputs: list[Path], *, codex_bin: str | None = None,
                           timeout: float = 3.0, floating: Iterable[str] = FLOATING) -> list[Rerecording]:
    """Re-record the parts of one session (X.jsonl, X.2.jsonl... : one codex process each, as a
    resume needs) in order, against one mock model and one CODEX_HOME; ids learned from a part
    carry over to the next (thread/resume names the thread the first part started)."""
    olds = [load_cassette(p) for p in paths]
    scenario = LiveScenario.from_meta(olds[0].meta, str(paths[0]))
    learned: dict[Any, Any] = {}
    recs: list[Rerecording] = []
    started = time.monotonic()
    async with LiveCodex(scenario, codex_bin) as live:
        for old, output in zip(olds, outputs):
            recs.append(await _play_part(live, old, output, timeout, list(floating), learned, started))
            started = time.monotonic()
    return recs


async def _play_part(live: LiveCodex, old: Cassette, output: Path, timeout: float, floating: list[str],
                     learned: dict[Any, Any], started: float) -> Rerecording:
    proc = await live.spawn()
    placeholders = live.placeholders()
    recorder = RecordingHandle(proc, output, placeholders=placeholders,
                               command=["codex", "app-server"], env=live.env)
    meta = _carried_meta(old)
    fresh = live.meta()
    meta["live"] = {**(old.meta.get("live") or {}), **fresh["live"]}
    meta["codex_version"] = fresh["codex_version"]
    meta["rerecorded_from"] = {"codex_version": old.meta.get("codex_version"),
                               "recorded_at": old.meta.get("recorded_at")}
    recorder.writer.meta.update(meta)
    channel = ProcessChannel(recorder).start()
    options = ReplayOptions(role="client", timeout=timeout, linger=timeout, strict=False,
                            bindings=dict(placeholders.values), ignore=list(VOLATILE_PATHS),
                            learn=list(LEARN), floating=floating, tolerant=True, scrub=scrub_text,
                            startup_timeout=STARTUP_TIMEOUT)
    engine = ReplayEngine(_for_matching(old), channel, options)
    engine.ctx.learned.update(learned)
    report: ReplayReport | None = None
    try:
        report = await asyncio.wait_for(engine.run(), SESSION_LIMIT)
        await channel.close()
        await channel.finish(EXIT_WAIT)
        await asyncio.wait_for(proc.wait(), EXIT_WAIT)
    except asyncio.TimeoutError:
        pass  # recorded as incomplete below
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), EXIT_WAIT)
        await channel.finish(1.0)
        complete = report is not None and report.status == "ok" and proc.returncode == 0
        new_path = recorder.finish(complete=complete)
    learned.update(engine.ctx.learned)
    if report is None:
        report = engine.report
        report.status = "incomplete"
    return Rerecording(path=new_path, codex_version=live.version, report=report,
                       seconds=round(time.monotonic() - started, 3), complete=complete)


# -- structural comparison --------------------------------------------------------------


@dataclass
class FieldChange:
    path: str
    kind: str          # changed | added | removed
    old: Any = None
    new: Any = None


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
            idk = json.dumps(msg.get("id"), sort_keys=True)
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


def _path(parts: list[Any]) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "(whole message)"


def field_changes(old: Any, new: Any) -> list[FieldChange]:
    diff = DeepDiff(old, new, verbose_level=2)
    found: list[FieldChange] = []
    kinds = {"values_changed": "changed", "type_changes": "changed",
             "dictionary_item_added": "added", "iterable_item_added": "added",
             "dictionary_item_removed": "removed", "iterable_item_removed": "removed"}
    for report_type, kind in kinds.items():
        for level in diff.tree.get(report_type, []):
            found.append(FieldChange(_path(level.path(output_format="list")), kind,
                                     None if kind == "added" else level.t1,
                                     None if kind == "removed" else level.t2))
    return sorted(found, key=lambda f: f.path)


def compare_cassettes(old: Cassette, new: Cassette, floating: Iterable[str] = FLOATING) -> list[Change]:
    """What differs between two recordings of one scenario, after normalisation."""
    fl = set(floating)
    a_all, b_all = _entries(old, fl), _entries(new, fl)
    a = _canonical([e for e in a_all if not e.floating])
    b = _canonical([e for e in b_all if not e.floating])
    for seq in (a, b):
        ids = IdTokens()
        for e in seq + sorted((x for x in (a_all if seq is a else b_all) if x.floating), key=lambda x: x.label):
            e.norm = normalise(e.body, ids)
    changes: list[Change] = []
    removed: list[_Entry] = []
    added: list[_Entry] = []
    matcher = difflib.SequenceMatcher(None, [e.key for e in a], [e.key for e in b], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for x, y in zip(a[i1:i2], b[j1:j2]):
                fields = field_changes(x.norm, y.norm)
                if fields:
                    changes.append(Change("changed", x.side, x.label, x.at, y.at, fields))
        else:
            removed.extend(a[i1:i2])
            added.extend(b[j1:j2])
    # The same message on the other side of a client message: moved, not gone and new.
    for x in list(removed):
        y = next((y for y in added if y.key == x.key), None)
        if y is None:
            continue
        removed.remove(x)
        added.remove(y)
        changes.append(Change("moved", x.side, x.label, x.at, y.at, field_changes(x.norm, y.norm),
                              note="earlier" if y.epoch < x.epoch else "later"))
    changes += [Change("removed", x.side, x.label, old_at=x.at) for x in removed]
    changes += [Change("added", y.side, y.label, new_at=y.at) for y in added]
    changes += _compare_floating([e for e in a_all if e.floating], [e for e in b_all if e.floating])
    return changes


def _compare_floating(a: list[_Entry], b: list[_Entry]) -> list[Change]:
    changes: list[Change] = []
    for label in sorted({e.label for e in a} | {e.label for e in b}):
        xs = [e for e in a if e.label == label]
        ys = [e for e in b if e.label == label]
        for x, y in zip(xs, ys):
            fields = field_changes(x.norm, y.norm)
            if fields:
                changes.append(Change("changed", x.side, label, x.at, y.at, fields, floating=True))
        changes += [Change("removed", x.side, label, old_at=x.at, floating=True) for x in xs[len(ys):]]
        changes += [Change("added", y.side, label, new_at=y.at, floating=True) for y in ys[len(xs):]]
    return changes


# -- per-cassette results and reports ---------------------------------------------------------


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


PART = re.compile(r"^(?P<base>.+)\.(?P<n>[2-9]|[1-9]\d+)\.jsonl$")


def find_live_cassettes(paths: Iterable[str | Path]) -> list[Path]:
    """Named files as they are; directories searched for *.jsonl whose header has meta.live."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [f for f in sorted(p.rglob("*.jsonl")) if _is_live(f)]
        else:
            found.append(p)
    return found


def find_sessions(paths: Iterable[str | Path]) -> list[list[Path]]:
    """Live cassettes grouped into sessions: X.jsonl with its later parts X.2.jsonl, X.3.jsonl...
    (a part named alone brings its whole session along)."""
    sessions: dict[Path, dict[int, Path]] = {}
    for p in find_live_cassettes(paths):
        m = PART.match(p.name)
        base = p.parent / f"{m['base']}.jsonl" if m else p
        if m and not base.exists():
            base, m = p, None
        parts = sessions.setdefault(base, {1: base})
        parts[int(m["n"]) if m else 1] = p
        for sib in base.parent.glob(f"{base.stem}.*.jsonl"):
            sm = PART.match(sib.name)
            if sm and sm["base"] == base.stem:
                parts.setdefault(int(sm["n"]), sib)
    return [[parts[n] for n in sorted(parts)] for parts in sessions.values()]


def _is_live(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = json.loads(fh.readline())
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and isinstance(head.get("meta"), dict) and "live" in head["meta"]


async def check_session(paths: list[Path], *, codex_bin: str | None = None, update: bool = False,
                        timeout: float = 3.0, out_dir: str | Path | None = None,
                        floating: Iterable[str] = FLOATING) -> list[DriftResult]:
    """Re-record one session (one or more parts) and compare each part; with ``update``,
    replace the parts that changed."""
    paths = [Path(p) for p in paths]
    results = [DriftResult(cassette=str(p), status="error") for p in paths]
    floating = list(floating)
    with tempfile.TemporaryDirectory(prefix="codex-cassette-rerecord-") as tmp:
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        targets = [Path(out_dir or tmp) / p.name for p in paths]
        try:
            olds = [load_cassette(p) for p in paths]
            recs = await rerecord_session(paths, targets, codex_bin=codex_bin, timeout=timeout,
                                          floating=floating)
        except HarnessError as exc:
            for r in results:
                r.error = str(exc)
            return results
        for result, old, rec, path, target in zip(results, olds, recs, paths, targets):
            new = load_cassette(rec.path)
            result.old_version = old.meta.get("codex_version")
            result.new_version = rec.codex_version
            result.seconds = rec.seconds
            result.notes = rec.report.notes
            result.replay = rec.report.status
            result.changes = compare_cassettes(old, new, floating)
            result.status = "changed" if result.drift or not new.complete else "same"
            if out_dir:
                result.new_cassette = str(target)
            if update and result.status == "changed":
                tmp_target = path.with_name(path.name + ".tmp")
                shutil.copyfile(rec.path, tmp_target)
                os.replace(tmp_target, path)
                result.status = "updated"
    return results


async def check_cassette(path: str | Path, **kwargs: Any) -> DriftResult:
    """Re-record one cassette (with the rest of its session, if it is a part) and compare."""
    path = Path(path)
    [session] = find_sessions([path])
    results = await check_session(session, **kwargs)
    return next(r for r in results if Path(r.cassette) == path)


async def check_all(paths: Iterable[str | Path], **kwargs: Any) -> list[DriftResult]:
    results: list[DriftResult] = []
    for session in find_sessions(paths):
        results += await check_session(session, **kwargs)
    return results


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _field_line(f: FieldChange) -> str:
    if f.kind == "added":
        return f"{f.path}: added {_short(f.new)}"
    if f.kind == "removed":
        return f"{f.path}: removed (was {_short(f.old)})"
    return f"{f.path}: {_short(f.old)} -> {_short(f.new)}"


def _where(c: Change) -> str:
    parts = []
    if c.old_at:
        parts.append(f"old {c.old_at}")
    if c.new_at:
        parts.append(f"new line {c.new_at.rsplit(':', 1)[-1]}" if ":" in c.new_at else f"new {c.new_at}")
    return ", ".join(parts)


SIGN = {"added": "+", "removed": "-", "changed": "~", "moved": ">"}
FOLD_AT = 3  # a field change seen in this many messages is listed once


def _field_key(f: FieldChange) -> str:
    return json.dumps([f.path, f.kind, f.old, f.new], sort_keys=True, default=str)


def _folded(r: DriftResult) -> tuple[list[tuple[FieldChange, int]], set[str]]:
    """Field changes repeated across messages (emittedAtMs gone from every notification)."""
    seen: dict[str, tuple[FieldChange, int]] = {}
    for c in r.changes:
        for f in c.fields:
            k = _field_key(f)
            seen[k] = (f, seen.get(k, (f, 0))[1] + 1)
    common = [(f, n) for f, n in seen.values() if n >= FOLD_AT]
    return common, {_field_key(f) for f, _ in common}


def _listed(r: DriftResult) -> tuple[list[tuple[FieldChange, int]], list[tuple[Change, list[FieldChange]]]]:
    common, keys = _folded(r)
    shown = []
    for c in r.changes:
        rest = [f for f in c.fields if _field_key(f) not in keys]
        if rest or not c.fields:
            shown.append((c, rest))
    return common, shown


def _tag(c: Change) -> str:
    tag = " (floating)" if c.floating else ""
    return tag + (f" ({c.note}; not drift)" if not c.counts else (f" ({c.note})" if c.note else ""))


def update_command(paths: Iterable[str]) -> str:
    return "codex-cassette drift rerecord " + " ".join(paths) + " --update"


def render_text(results: list[DriftResult]) -> str:
    lines: list[str] = []
    for r in results:
        head = f"{r.cassette}: {r.status}"
        if r.status == "error":
            lines.append(f"{head}: {r.error}")
            continue
        lines.append(f"{head} (codex {r.old_version} -> {r.new_version}, re-recorded in {r.seconds:.1f} s"
                     + (f", replay {r.replay}" if r.replay != "ok" else "") + ")")
        common, shown = _listed(r)
        for f, n in common:
            lines.append(f"  ~ in {n} messages: {_field_line(f)}")
        for c, fields in shown:
            lines.append(f"  {SIGN[c.kind]} {c.kind} {c.side} {c.label}{_tag(c)}  [{_where(c)}]")
            lines.extend(f"      {_field_line(f)}" for f in fields)
        if len(shown) < len(r.changes):
            lines.append(f"  ({len(r.changes) - len(shown)} more changed message(s) differ only as above)")
        if r.notes:
            kinds = sorted({n["kind"] for n in r.notes})
            lines.append("  replay notes: " + ", ".join(f"{sum(n['kind'] == k for n in r.notes)} {k}"
                                                        for k in kinds) + " (details with --format json)")
        if r.new_cassette:
            lines.append(f"  new recording: {r.new_cassette}")
    changed = [r.cassette for r in results if r.status == "changed"]
    lines.append(_tally(results))
    if changed:
        lines.append(f"to accept the new recordings: {update_command(changed)}")
    return "\n".join(lines) + "\n"


def _tally(results: list[DriftResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("same", "changed", "updated", "error")}
    return f"{len(results)} cassette(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def render_markdown(results: list[DriftResult]) -> str:
    out = ["## Re-recorded cassettes", "", "| cassette | status | codex | seconds | drift |", "|---|---|---|---|---|"]
    for r in results:
        out.append(f"| `{r.cassette}` | {r.status} | {r.old_version} → {r.new_version} | {r.seconds:.1f} "
                   f"| {len(r.drift)} |")
    for r in results:
        if r.status == "error":
            out += ["", f"### `{r.cassette}`", "", f"Error: {r.error}"]
        elif r.changes:
            out += ["", f"### `{r.cassette}`", ""]
            common, shown = _listed(r)
            out += [f"- in {n} messages: `{_field_line(f)}`" for f, n in common]
            for c, fields in shown:
                out.append(f"- **{c.kind}** {c.side} `{c.label}`{_tag(c)} — {_where(c)}")
                out += [f"  - `{_field_line(f)}`" for f in fields]
            if len(shown) < len(r.changes):
                out.append(f"- ({len(r.changes) - len(shown)} more changed message(s) differ only as above)")
    changed = [r.cassette for r in results if r.status == "changed"]
    out += ["", _tally(results)]
    if changed:
        out += ["", f"To accept: `{update_command(changed)}`"]
    return "\n".join(out) + "\n"


def render(results: list[DriftResult], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([r.to_json() for r in results], indent=2, default=str) + "\n"
    if fmt == "markdown":
        return render_markdown(results)
    return render_text(results)


def run_cli(args: Any) -> int:
    """`drift rerecord`: 1 when a cassette drifted (without --update), 2 on an error, else 0."""
    sessions = find_sessions(args.paths)
    if not sessions:
        raise RerecordError(f"no live cassettes under {', '.join(args.paths)}: a live cassette is a .jsonl "
                            "whose header has meta.live (written by record-live or a live recording)")
    results = asyncio.run(check_all(args.paths, codex_bin=args.codex_bin, update=args.update,
                                    timeout=args.timeout, out_dir=args.out_dir,
                                    floating=FLOATING + list(args.floating or [])))
    sys.stdout.write(render(results, args.format))
    if any(r.status == "error" for r in results):
        return 2
    return 1 if any(r.status == "changed" for r in results) else 0
