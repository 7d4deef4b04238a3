"""`codex-cassette drift rerecord`: record a live cassette again and say what moved.

Works for a cassette recorded by any client (optio's driver, the openai-codex
SDK, the built-in one): the header's scenario sets up the mock model and
CODEX_HOME, the real codex is spawned, and the replay engine plays the
cassette's CLIENT side against it (DESIGN.md, "Replay semantics" 9) while the
same Tee as live recording writes the new cassette. The engine sends each
recorded client message once the server messages recorded before it arrived,
so interrupts, approval answers and model switches keep their causal place.
It plays tolerantly: a changed codex still yields a whole recording plus notes.

Then old and new are compared structurally (harness.drift.compare).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.format.cassette import Cassette, load_cassette
from harness.errors import HarnessError
from harness.live.session import LiveCodex, LiveScenario
from harness.record.handle import RecordingHandle
from harness.replay.aio_channels import ProcessChannel
from harness.drift.compare import FLOATING, VOLATILE_KEYS, compare_cassettes, scrub_text
from harness.drift.rerecord_report import DriftResult, Invocation, exit_code, render
from harness.format.redact import Redactor
from harness.format.safe_files import copy_atomically
from harness.replay.engine import ReplayEngine
from harness.replay.options import SERVER_CHOSEN, ReplayOptions
from harness.replay.report import ReplayReport

# The same keys as engine paths (ignored when matching), plus the rollout path.
VOLATILE_PATHS = [f"**.{k}" for k in sorted(VOLATILE_KEYS)] + ["**.thread.path"]
# Ids the live codex picks afresh: learned and substituted into later client messages.
LEARN = SERVER_CHOSEN + ["**.sessionId", "**.rootTurnId", "**.item.id", "**.itemId", "**.readState.revision"]
EXIT_WAIT = 10.0
STARTUP_TIMEOUT = 30.0  # codex's first answer (initialize) on a busy machine
SESSION_LIMIT = 300.0  # one re-record, all waits included


class RerecordError(HarnessError):
    """A cassette that cannot be re-recorded (not live, unreadable, codex would not run it)."""


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
    own = {"recorder", "command", "placeholders", "redactions", "redaction_rules", "recorded_at", "complete",
           "codex_version", "client", "end"}
    return {k: v for k, v in old.meta.items() if k not in own}


def _for_matching(cassette: Cassette) -> Cassette:
    """The cassette the engine plays: server text scrubbed as the live side will be."""
    events = [e.with_msg(scrub_text(e.msg)) if e.side == "server" and e.msg is not None else e
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
    # The old cassette's own rules (its regexes, paths, variables) and today's built-ins.
    recorder = RecordingHandle(proc, output, placeholders=placeholders, command=["codex", "app-server"],
                               redactor=Redactor.widened(old.meta, live.env, str(old.path)),
                               baseline=old.path)  # unchanged lines as the old cassette has them
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
                        floating: Iterable[str] = FLOATING, ignore: Iterable[str] = ()) -> list[DriftResult]:
    """Re-record one session (one or more parts) and compare each part; with ``update``,
    replace the parts that changed. ``ignore``: field paths whose changes are not drift.
    ``out_dir`` keeps the new recordings under the cassettes' own relative paths."""
    paths = [Path(p) for p in paths]
    results = [DriftResult(cassette=str(p), status="error") for p in paths]
    floating = list(floating)
    with tempfile.TemporaryDirectory(prefix="codex-cassette-rerecord-") as tmp:
        targets = [mirrored(p, Path(out_dir)) if out_dir else Path(tmp) / p.name for p in paths]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
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
            result.changes = compare_cassettes(old, new, floating, ignore)
            result.status = "changed" if result.drift or not new.complete else "same"
            if out_dir:
                result.new_cassette = str(target)
            if update and result.status == "changed":
                copy_atomically(rec.path, path)
                result.status = "updated"
    return results


def mirrored(path: Path, out_dir: Path) -> Path:
    """Where --out-dir keeps the new recording of `path`: under its path relative to the
    working directory (or, outside it, its absolute path without the root), so two
    cassettes of one name in different directories never overwrite each other."""
    absolute = path.resolve()
    try:
        rel = absolute.relative_to(Path.cwd().resolve())
    except ValueError:
        rel = absolute.relative_to(absolute.anchor)
    return out_dir / rel


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


def run_cli(args: Any) -> int:
    """`drift rerecord`: 1 when a cassette drifted (without --update), 2 on an error, else 0."""
    sessions = find_sessions(args.paths)
    if not sessions:
        raise RerecordError(f"no live cassettes under {', '.join(args.paths)}: a live cassette is a .jsonl "
                            "whose header has meta.live (written by record-live or a live recording)")
    invocation = Invocation(codex_bin=args.codex_bin, timeout=args.timeout,
                            floating=list(args.floating or []), ignore=list(args.ignore or []))
    results = asyncio.run(check_all(args.paths, codex_bin=args.codex_bin, update=args.update,
                                    timeout=args.timeout, out_dir=args.out_dir,
                                    floating=FLOATING + invocation.floating, ignore=invocation.ignore))
    sys.stdout.write(render(results, args.format, invocation))
    return exit_code(results)
