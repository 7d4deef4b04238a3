"""The replay engine: play one side of a cassette against a live peer.

Role-agnostic. Playing the server impersonates codex for a client under test;
playing the client re-drives a live codex to see whether it still answers as
recorded. The rules (DESIGN.md, "Replay semantics"):

1. Causal order: a played message goes out once every peer message recorded
   before it has come in and matched.
2. Consecutive peer messages match as a set, in any order; a peer message that
   belongs to a later set is accepted early (a pipelining client is not wrong),
   unless one of its method is still awaited here: then it is this set's divergence.
3. Request ids the peer picks are mapped onto the recorded ones; the played
   side's own ids go out verbatim.
4./5. Matching and placeholders: harness.replay.matching.
6. The first divergence stops the play, answers an offending request with an
   error that says what was expected, and ends the session. Every wait is bounded.
7. Events left unplayed are reported.
8. Pace: instant, or the recorded gaps scaled.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NoReturn

from harness.format.cassette import Cassette, Event
from harness.replay.channel import Channel, ReadTimeout
from harness.replay.intake import Heard, Intake
from harness.replay.matching import (MatchContext, compare, diff_text, distance,
                               learn_values, strip_transport, substitute_learned)
from harness.format.placeholders import Placeholders, has_marker, unbound_markers
from harness.replay.options import ReplayOptions
from harness.replay.report import Divergence, ReplayReport
from harness.format.wire import Kind, classify, encode, request_key

DIVERGENCE_CODE = -32099  # in JSON-RPC's server-error range, unused by codex
DIVERGED_EXIT = 3         # the fake server's exit code after a divergence
DRAIN_EVERY = 32          # played messages between two drains of the channel

# What the live server chooses afresh each run; learned, not compared, when
# the engine plays the client against a real codex.
SERVER_CHOSEN = ["**.threadId", "**.thread.id", "**.turnId", "**.turn.id", "**.conversationId"]


class _Stop(Exception):
    """Ends the play (divergence, peer gone, or a scripted exit)."""


class ReplayEngine:
    def __init__(self, cassette: Cassette, channel: Channel, options: ReplayOptions | None = None) -> None:
        self.cassette = cassette
        self.channel = channel
        self.options = options or ReplayOptions()
        self.role = self.options.role
        if self.role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', not {self.role!r}")
        self.ctx = MatchContext(placeholders=Placeholders(dict(self.options.bindings)),
                                scrub=self.options.scrub, ignore=list(self.options.ignore),
                                learn=list(self.options.learn), matchers=self.options.matchers.resolve(self.options.match_on))
        self.report = ReplayReport(cassette=str(cassette.path or "<memory>"), role=self.role,
                                   total=len(cassette.events))
        # Every peer line is scrubbed with the cassette's redaction rules before anything sees it.
        self._intake = Intake(cassette.meta, os.environ if self.options.env is None else self.options.env,
                              self.report.cassette)
        self._id_map: dict[str, Any] = {}   # recorded peer request id -> live id
        self._early: set[int] = set()       # positions of peer events matched ahead of their set
        self._matched: set[int] = set()     # positions of peer events matched in their own set
        # Unprompted notifications (configWarning...) come whenever the peer is ready:
        # matched wherever they arrive, never a barrier for what we send.
        self._floating = {n for n, e in enumerate(cassette.events)
                          if e.side != self.role and isinstance(e.msg, dict) and "id" not in e.msg
                          and e.msg.get("method") in self.options.floating}
        self._last_t = 0.0
        self._write_closed = False
        self._peer_closed = False

    # -- public ------------------------------------------------------------

    async def run(self) -> ReplayReport:
        t0 = time.monotonic()
        events = self.cassette.events
        pos = 0
        try:
            while pos < len(events):
                if events[pos].side == self.role:
                    if events[pos].msg is not None and self.options.pace != "recorded":
                        pos = await self._play_burst(pos)
                    else:
                        await self._play(events[pos])
                        pos += 1
                else:
                    end = pos
                    while end < len(events) and events[end].side != self.role:
                        end += 1
                    await self._expect(pos, end)
                    pos = end
            self._floating_left()
            await self._linger()
            self.report.status = "ok"
        except _Stop:
            pass
        finally:
            self.report.bindings = self._intake.for_report(dict(self.ctx.placeholders.values))
            self.report.seconds = round(time.monotonic() - t0, 6)
            await self._close_write()
        return self.report

    # -- playing our side ----------------------------------------------------

    async def _pace(self, event: Event) -> None:
        if self.options.pace == "recorded":
            gap = (event.t - self._last_t) * self.options.pace_scale
            if gap > 0:
                await self.channel.drain()
                await self.channel.sleep(min(gap, self.options.timeout))
        self._last_t = event.t

    async def _play_burst(self, pos: int) -> int:
        """Play consecutive messages of our role at instant pace; the next position.

        What _play does per message, minus two awaits each: a streamed turn is
        thousands of these, and draining every DRAIN_EVERY messages bounds the
        buffered bytes just as well. A message whose recorded bytes the cassette
        kept (event.wire) goes out as they are while nothing was learned; the
        rest take _encode_outgoing.
        """
        events, role = self.cassette.events, self.role
        encode_outgoing, drain = self._encode_outgoing, self.channel.drain
        # After our side was closed (a scripted close_stdout) the play goes on, saying nothing.
        write = (lambda data: None) if self._write_closed else self.channel.write
        verbatim = not self.ctx.learned
        start = pos
        while pos < len(events):
            event = events[pos]
            msg = event.msg
            if event.side != role or msg is None:
                break
            data = event.wire
            if data is None or not verbatim or ("method" not in msg and msg.get("id") is not None):
                data = encode_outgoing(event)
            write(data)
            pos += 1
            if (pos - start) % DRAIN_EVERY == 0:
                self.report.played += DRAIN_EVERY
                await drain()
        self.report.played += (pos - start) % DRAIN_EVERY
        self._last_t = events[pos - 1].t
        await drain()
        return pos

    async def _play(self, event: Event) -> None:
        await self._pace(event)
        if event.msg is not None:
            self._send(self._encode_outgoing(event))
        elif event.raw is not None:
            self._send(event.raw + (b"\n" if event.newline else b""))
        elif event.eof:
            await self._close_write()
        elif event.exit is not None:
            self.report.played += 1
            self.report.exit_code = event.exit if isinstance(event.exit, int) else 1
            self._finish_unplayed(event)
            self.report.status = "ok"
            raise _Stop
        elif event.fault is not None:
            await self._fault(event)
        self.report.played += 1
        await self.channel.drain()

    def _send(self, data: bytes) -> None:
        if not self._write_closed:
            self.channel.write(data)

    def _encode_outgoing(self, event: Event) -> bytes:
        # Fast path for the bulk of a replay (streamed deltas): nothing learned,
        # no id to map and no marker in the bytes means _outgoing would return
        # an equal copy, so skip its two walks of the message, and send the
        # recorded bytes themselves when the cassette kept them (event.wire).
        # JSON never escapes braces, so a marker in any key or string shows up as b"{{".
        msg = event.msg
        if not self.ctx.learned and ("method" in msg or msg.get("id") is None):  # not a response
            if event.wire is not None:
                return event.wire  # holds no marker: the loader keeps none that does
            data = encode(msg)
            if b"{{" not in data:
                return data
        return encode(self._outgoing(msg))

    def _outgoing(self, msg: dict[str, Any]) -> dict[str, Any]:
        out = self.ctx.placeholders.substitute(msg)
        if has_marker(out):
            self._bind_fallbacks(out)
            out = self.ctx.placeholders.substitute(msg)
        if self.ctx.learned:
            out = substitute_learned(out, self.ctx.learned)
        if classify(msg) is Kind.RESPONSE:
            key = request_key(msg["id"])
            if key in self._id_map:
                out = dict(out)
                out["id"] = self._id_map[key]
        return out

    def _bind_fallbacks(self, obj: Any) -> None:
        values = self.ctx.placeholders.values
        for name in unbound_markers(obj):
            if name not in values and name in self.options.fallbacks:
                values[name] = self.options.fallbacks[name]

    async def _fault(self, event: Event) -> None:
        (kind, arg), = event.fault.items()
        if kind == "delay":
            await self.channel.drain()
            await self.channel.sleep(float(arg))
            # The scenario clock counts the delay too: recorded pace must not sleep it again.
            self._last_t = event.t + float(arg)
        elif kind == "garbage":
            self._send(str(arg).encode("utf-8") + b"\n")
        elif kind == "partial":
            self._send(str(arg).encode("utf-8"))
        elif kind == "close_stdout":
            await self._close_write()
        elif kind == "stall":
            # Say nothing for a while, but notice if the peer hangs up meanwhile.
            await self.channel.drain()
            try:
                line = await self._next_line(float(arg))
            except ReadTimeout:
                return
            if line is None:
                self._peer_closed = True
                self._finish_unplayed(event, include=False)
                self.report.status = "incomplete"
                raise _Stop
            await self._diverge_on(line, [], event, "unexpected", unplayed_after=event)
        elif kind == "exit":
            self.report.exit_code = int(arg)
            self.report.played += 1
            self._finish_unplayed(event)
            self.report.status = "ok"
            raise _Stop

    async def _close_write(self) -> None:
        if not self._write_closed:
            self._write_closed = True
            try:
                await self.channel.close()
            except (ConnectionError, BrokenPipeError):
                pass

    # -- expecting the peer's side ---------------------------------------------

    async def _next_line(self, timeout: float | None) -> Heard | None:
        """The peer's next line (scrubbed), None once it hung up; ReadTimeout after ``timeout`` s."""
        if self._peer_closed:
            return None
        line = await self.channel.read_line(timeout)
        if line is None:
            self._peer_closed = True
            return None
        return self._intake.hear(line)

    async def _expect(self, start: int, end: int) -> None:
        events = self.cassette.events
        waiting = [p for p in range(start, end) if p not in self._early and p not in self._floating]
        self.report.awaiting_close = bool(waiting) and all(
            events[p].eof or events[p].exit is not None for p in waiting) and all(
            e.side != self.role or e.eof or e.exit is not None for e in events[end:])
        while waiting:
            first = events[waiting[0]]
            try:
                limit = self.options.timeout if self.report.matched else max(self.options.timeout,
                                                                             self.options.startup_timeout)
                line = await self._next_line(limit)
            except ReadTimeout:
                if self.options.tolerant:
                    self._note_missing(waiting, f"nothing came in {limit:g} s")
                    return
                self._diverge_timeout(waiting)
            if line is None:
                closes = [p for p in waiting if events[p].eof or events[p].exit is not None]
                if closes and len(closes) == len(waiting):
                    self.report.matched += len(waiting)
                    self.report.played += len(waiting)
                    return
                self._finish_unplayed(events[waiting[0]], include=True)
                self.report.status = "incomplete"
                raise _Stop
            hit = self._match_line(line, waiting)
            if hit is None:
                # Early acceptance is for a pipelining peer; a message of the same method as one
                # still awaited here is this set's divergence, not a later set's message.
                ahead = [] if self._competes(line, waiting) else self._ahead(end)
                hit = self._match_line(line, self._floating_pending() + ahead)
                if hit is not None:
                    self._early.add(hit)
                    continue
                if not self.options.tolerant:
                    await self._diverge_on(line, waiting, first, "mismatch")
                hit = await self._tolerate(line, waiting)
                if hit is None:
                    continue
            waiting.remove(hit)
            self._matched.add(hit)  # so a set cut short does not list it as unplayed

    def _competes(self, line: Heard, waiting: list[int]) -> bool:
        live, is_json = line.parse()
        if not is_json or not isinstance(live, dict):
            return False
        kind = classify(live)
        for p in waiting:
            rec = self.cassette.events[p].msg
            if rec is None or classify(rec) is not kind:
                continue
            if kind is Kind.RESPONSE or rec.get("method") == live.get("method"):
                return True
        return False

    def _ahead(self, end: int) -> list[int]:
        """Peer events of later sets, to accept a message a pipelining peer sent early."""
        events = self.cassette.events
        return [p for p in range(end, len(events)) if events[p].side != self.role
                and p not in self._early and events[p].msg is not None]

    # -- tolerant play (re-recording a cassette against a changed codex) --------

    def _floating_pending(self) -> list[int]:
        return sorted(p for p in self._floating if p not in self._early)

    def _floating_left(self) -> None:
        """Floating events that never came: noted (tolerant) or left unplayed."""
        left = self._floating_pending()
        if self.options.tolerant:
            self._note_missing(left, "never sent")
        else:
            self.report.unplayed.extend({"at": self.cassette.where(self.cassette.events[p]),
                                         "event": self.cassette.events[p].describe()} for p in left)

    def _note(self, kind: str, event: Event | None, received: Any = None, diff: str = "",
              reason: str = "") -> None:
        note: dict[str, Any] = {"kind": kind, "at": self.cassette.where(event) if event else None,
                                "expected": event.describe() if event else None}
        if received is not None:
            note["received"] = _short(self._intake.for_report(received))
        if diff:
            note["diff"] = self._intake.for_report(diff)
        if reason:
            note["reason"] = reason
        self.report.notes.append(note)

    def _note_missing(self, positions: list[int], reason: str) -> None:
        for p in positions:
            self._note("missing", self.cassette.events[p], reason=reason)
            self._early.add(p)  # dealt with: neither unplayed nor matched later

    async def _tolerate(self, line: Heard, waiting: list[int]) -> int | None:
        """A peer message that matches nothing: pair it with the waiting message of the same
        kind, method and id (the nearest one) as changed, or note it as unexpected and skip it."""
        events = self.cassette.events
        live, is_json = line.parse()
        if not (is_json and isinstance(live, dict)):
            self._note("unexpected", None, line.data.decode("utf-8", "replace"))
            return None
        live = strip_transport(live)
        slot = [p for p in waiting if events[p].msg is not None
                and compare(events[p], live, self.ctx, order=("kind", "method", "id")) is None]
        if slot:
            hit = min(slot, key=lambda p: distance(events[p], live, self.ctx))
            self._note("changed", events[hit], live, diff_text(events[hit], live, self.ctx))
            self._accept(events[hit], live)
            return hit
        self._note("unexpected", None, live)
        if classify(live) is Kind.REQUEST:
            # Unanswered, the peer would wait on it (an approval) until the turn stalls.
            self._send(encode({"id": live["id"], "error": {
                "code": DIVERGENCE_CODE, "message": "codex-cassette: this request is not in the cassette"}}))
            await self.channel.drain()
        return None

    def _match_line(self, line: Heard, candidates: list[int]) -> int | None:
        events = self.cassette.events
        live, is_json = line.parse()
        for p in candidates:
            ev = events[p]
            if ev.msg is not None and is_json and isinstance(live, dict):
                live = strip_transport(live)
                if compare(ev, live, self.ctx) is None:
                    self._accept(ev, live)
                    return p
            elif ev.raw is not None and not is_json and ev.raw == line.data:
                self.report.matched += 1
                self.report.played += 1
                return p
        return None

    def _accept(self, event: Event, live: dict[str, Any]) -> None:
        if classify(live) is Kind.REQUEST:
            self._id_map[request_key(event.msg["id"])] = live["id"]
        learn_values(event, live, self.ctx)
        self.report.matched += 1
        self.report.played += 1

    # -- divergence ------------------------------------------------------------

    def _finish_unplayed(self, event: Event, include: bool = False) -> None:
        events = self.cassette.events
        found = next((n for n, e in enumerate(events) if e is event), len(events))
        start = found + (0 if include else 1)
        self.report.unplayed = [
            {"at": self.cassette.where(e), "event": e.describe()}
            for n, e in enumerate(events[start:], start) if n not in self._early and n not in self._matched
        ]

    def _diverge_timeout(self, waiting: list[int]) -> NoReturn:
        events = self.cassette.events
        first = events[waiting[0]]
        names = ", ".join(events[p].describe() for p in waiting[:3])
        msg = (f"codex-cassette: expected {names} at {self.cassette.where(first)}, "
               f"but nothing came in {self.options.timeout:g} s")
        self.report.divergence = Divergence(kind="timeout", message=self._intake.for_report(msg),
                                            expected=self._intake.for_report(first.msg),
                                            expected_at=self.cassette.where(first))
        self.report.status = "diverged"
        self._finish_unplayed(first, include=True)
        raise _Stop

    async def _diverge_on(self, line: Heard, waiting: list[int], first: Event, kind: str,
                          unplayed_after: Event | None = None) -> NoReturn:
        events = self.cassette.events
        live, is_json = line.parse()
        # What follows is said to the peer and written in reports: built from a scrubbed copy
        # only (the intake used the cassette's rules; reports use those and more).
        shown = self._intake.for_report(live) if is_json else live
        hidden, live = shown != live, shown
        received: Any = live if is_json else self._intake.for_report(line.data.decode("utf-8", "replace"))
        pool = [events[p] for p in waiting if events[p].msg is not None] or [first]
        nearest = min(pool, key=lambda e: distance(e, live, self.ctx)) if is_json else first
        if kind == "unexpected" or nearest.msg is None:
            matcher, why, diff = None, "the cassette expected nothing from the peer here", ""
        else:
            mismatch = compare(nearest, strip_transport(live), self.ctx) if isinstance(live, dict) else None
            matcher = mismatch.matcher if mismatch else "kind"
            why = mismatch.reason if mismatch else "not a JSON-RPC message"
            diff = diff_text(nearest, live, self.ctx)
        got = _short(received)
        expected = nearest.describe() if nearest.msg is not None or nearest.raw is not None else "nothing"
        message = (f"codex-cassette: divergence at {self.cassette.where(nearest)}: expected {expected}, "
                   f"got {got}. The '{matcher}' matcher failed: {why}." if matcher else
                   f"codex-cassette: unexpected message from the {self.options.peer}: {got} "
                   f"({why}; last position {self.cassette.where(nearest)}).")
        if diff:
            message += f" Differences: {_flatten(diff)}"
        elif matcher and hidden:
            message += " The live message differs from the recording only in secrets, which are not shown"
            message += ("; this cassette's header names no redaction rules, so they were not scrubbed before "
                        "matching: re-record it to replay it." if self._intake.redactor is None else ".")
        message, expected_msg = self._intake.for_report(message), self._intake.for_report(nearest.msg)
        self.report.divergence = Divergence(kind=kind, message=message, expected=expected_msg,
                                            expected_at=self.cassette.where(nearest), received=received,
                                            matcher=matcher, diff=self._intake.for_report(diff))
        self.report.status = "diverged"
        if unplayed_after is not None:
            self._finish_unplayed(unplayed_after)
        else:
            self._finish_unplayed(first, include=True)
        if isinstance(live, dict) and classify(live) is Kind.REQUEST:
            self._send(encode({"id": live["id"], "error": {
                "code": DIVERGENCE_CODE, "message": message,
                "data": {"expected": expected_msg, "expectedAt": self.cassette.where(nearest)}}}))
            await self.channel.drain()
        raise _Stop

    async def _linger(self) -> None:
        """The script is done; wait (bounded) for the peer to hang up, refusing anything else."""
        if self._peer_closed:
            return
        if self._write_closed and self.role == "server":
            return
        try:
            line = await self._next_line(self.options.linger)
        except ReadTimeout:
            return
        if line is None:
            return
        last = self.cassette.events[-1] if self.cassette.events else Event(side=self.role)
        await self._diverge_on(line, [], last, "unexpected", unplayed_after=last)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def _flatten(diff: str) -> str:
    return "; ".join(line.strip() for line in diff.splitlines() if line.strip())
