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
6. The first divergence stops the play, answers the offending request, and every
   other request still waiting for its answer, with an error that says what was
   expected, and ends the session. Every wait is bounded, writes included (a peer
   that stops reading ends the play with a report naming the line).
7. Events left unplayed are reported.
8. Pace: instant, or the recorded gaps scaled.
"""

from __future__ import annotations

import os
import time
from typing import Any, NoReturn

from harness.errors import CassetteError
from harness.format.cassette import Cassette, Event
from harness.format.placeholders import Placeholders, has_marker, unbound_markers
from harness.format.wire import Kind, classify, encode, request_key
from harness.replay import divergence
from harness.replay.channel import Channel, ReadTimeout, WriteTimeout
from harness.replay.divergence import DIVERGENCE_CODE  # noqa: F401 - importers of the engine find it here
from harness.replay.intake import Heard, Intake
from harness.replay.matching import MatchContext, commit, compare, competes, strip_transport, substitute_learned
from harness.replay.options import ReplayOptions
from harness.replay.report import Divergence, ReplayReport, report_value
from harness.replay.tolerant import TolerantPlay

DIVERGED_EXIT = 3         # the fake server's exit code after a divergence
DRAIN_EVERY = 32          # played messages between two drains of the channel

class _Stop(Exception):
    """Ends the play (divergence, peer gone, or a scripted exit)."""


class ReplayEngine(TolerantPlay):
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
        self.for_report = self._intake.for_report  # what a report may say of a live value (scrubbed)
        self._id_map: dict[str, Any] = {}   # recorded peer request id -> live id
        # Live requests waiting for our answer: live id key -> (live id, position of the recorded request).
        self._in_flight: dict[str, tuple[Any, int]] = {}
        self._set_end = 0                   # where the set of peer messages now awaited ends
        self._early: set[int] = set()       # positions of peer events matched ahead of their set
        self._matched: set[int] = set()     # positions of peer events matched in their own set
        # Unprompted notifications (configWarning...) come whenever the peer is ready:
        # matched wherever they arrive, never a barrier for what we send.
        peer = ((n, cassette.events[n].msg) for n in (range(len(cassette.events)) if self.options.floating else ())
                if cassette.side_of(n) != self.role)
        self._floating = {n for n, msg in peer if isinstance(msg, dict) and "id" not in msg
                          and msg.get("method") in self.options.floating}
        self._last_t = 0.0
        self._write_closed = False
        self._peer_closed = False
        self._last_heard: Heard | None = None  # for the report: what a client that hung last said

    # -- public ------------------------------------------------------------

    async def run(self) -> ReplayReport:
        t0 = time.monotonic()
        events = self.cassette.events
        pos = 0
        try:
            try:
                side_of = self.cassette.side_of  # from the index: a line is decoded when it is played
                while pos < len(events):
                    if side_of(pos) == self.role:
                        if events[pos].msg is not None and self.options.pace != "recorded":
                            pos = await self._play_burst(pos)
                        else:
                            await self._play(pos)
                            pos += 1
                    else:
                        end = pos
                        while end < len(events) and side_of(end) != self.role:
                            end += 1
                        await self._expect(pos, end)
                        pos = end
                self._floating_left()
                await self._linger()
                self.report.status = "ok"
            except WriteTimeout as stall:
                self._stalled(stall, pos)
            except CassetteError as exc:  # a line of a big cassette, bad when the play reached it
                # An event of no place in the cassette: nothing past an unreadable line is listed.
                await self._diverge(divergence.unreadable(exc), Event(side=self.role))
        except _Stop:
            pass
        except BaseException:
            # Stopped from outside (a signal, a cancelled task): leave at once, saying nothing
            # more, so a peer that does not read cannot hold us here.
            self._write_closed = True
            raise
        finally:
            self.report.last_received = self.report_last_received()
            self.report.bindings = self.report_bindings()
            self.report.seconds = round(time.monotonic() - t0, 6)
            try:
                await self._close_write()
            except WriteTimeout as stall:  # the last words were never taken either
                if self.report.divergence is None:
                    self._stalled(stall, len(events) - 1)
        return self.report

    def report_last_received(self) -> Any:
        """The peer's last line, as a report may say it (scrubbed, capped); None before any."""
        heard = self._last_heard
        if heard is None:
            return None
        said = heard.msg if heard.is_json else heard.data.decode("utf-8", "replace")
        return report_value(self.for_report(said), 4096)

    def report_bindings(self) -> dict[str, str]:
        """The placeholder values bound so far, as a report may say them (secrets scrubbed)."""
        return self.for_report(dict(self.ctx.placeholders.values))

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
            try:
                write(data)
            except WriteTimeout as stall:
                stall.last = pos
                raise
            pos += 1
            if (pos - start) % DRAIN_EVERY == 0:
                self.report.played += DRAIN_EVERY
                try:
                    await drain()
                except WriteTimeout as stall:
                    stall.last = pos - 1
                    raise
        self.report.played += (pos - start) % DRAIN_EVERY
        self._last_t = events[pos - 1].t
        try:
            await drain()
        except WriteTimeout as stall:
            stall.last = pos - 1
            raise
        return pos

    async def _play(self, pos: int) -> None:
        event = self.cassette.events[pos]
        try:
            await self._pace(event)
        except WriteTimeout as stall:
            stall.last = pos - 1  # this event has not been written yet
            raise
        data = self._bytes_of(event)
        if data is not None:
            self._send(data)
        elif event.eof:
            await self._close_write(event)
        elif event.exit is not None:
            self._exit(event, event.exit)
        elif event.fault is not None:
            await self._fault(event)
        self.report.played += 1
        await self.channel.drain()

    def _send(self, data: bytes) -> None:
        if not self._write_closed:
            self.channel.write(data)

    def _bytes_of(self, event: Event) -> bytes | None:
        """What playing ``event`` writes to the peer, if anything."""
        if event.msg is not None:
            return self._encode_outgoing(event)
        if event.raw is not None:
            return event.raw + (b"\n" if event.newline else b"")
        if event.fault is not None:
            (kind, arg), = event.fault.items()
            if kind in ("garbage", "partial"):
                return str(arg).encode("utf-8", "surrogatepass") + (b"\n" if kind == "garbage" else b"")
        return None

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
                self._in_flight.pop(request_key(out["id"]), None)  # answered
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
        elif kind in ("garbage", "partial"):
            self._send(self._bytes_of(event) or b"")
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
            self._exit(event, arg)

    def _exit(self, event: Event, status: int | str) -> NoReturn:
        """End the play as the cassette says: an exit code, or death by a signal (its name),
        which whoever runs the engine carries out (fake_server.serve dies of it)."""
        self.report.exit_code = status
        self.report.played += 1
        self._finish_unplayed(event)
        self.report.status = "ok"
        raise _Stop

    async def _close_write(self, ending: Event | None = None) -> None:
        if not self._write_closed:
            self._write_closed = True
            try:
                await self.channel.close(ending)
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
        self._last_heard = self._intake.hear(line)
        return self._last_heard

    async def _expect(self, start: int, end: int) -> None:
        events = self.cassette.events
        self._set_end = end
        waiting = [p for p in range(start, end) if p not in self._early and p not in self._floating]
        self.report.awaiting_close = bool(waiting) and all(
            events[p].eof or events[p].exit is not None for p in waiting) and all(
            events[p].eof or events[p].exit is not None for p in range(end, len(events))
            if self.cassette.side_of(p) == self.role)
        while waiting:
            first = events[waiting[0]]
            if self.report.matched or self.options.startup_timeout <= self.options.timeout:
                limit, which = self.options.timeout, "the replay timeout"
            else:
                limit, which = self.options.startup_timeout, "the start-up limit, before the first message"
            try:
                line = await self._next_line(limit)
            except ReadTimeout:
                if self.options.tolerant:
                    self._note_missing(waiting, f"nothing came in {limit:g} s ({which})")
                    return
                await self._diverge(divergence.timeout(self.cassette, waiting, limit, which,
                                                       self._ahead_note(first), self._intake.for_report), first)
            if line is None:
                closes = [p for p in waiting if events[p].eof or events[p].exit is not None]
                if closes and len(closes) == len(waiting):
                    self.report.matched += len(waiting)
                    self.report.played += len(waiting)
                    return
                self._finish_unplayed(events[waiting[0]], include=True)
                self.report.status = "incomplete"
                raise _Stop
            live, is_json = line.parse()
            live = strip_transport(live) if isinstance(live, dict) else live
            hit = self._match_line(line, live, is_json, waiting)
            early = False
            if hit is None:
                # Early acceptance is for a pipelining peer; a message of the same method as one
                # still awaited here is this set's divergence, not a later set's message.
                ahead = [] if competes(live, (events[p].msg for p in waiting)) else self._ahead(end)
                hit = self._match_line(line, live, is_json, self._floating_pending() + ahead)
                early = hit is not None
            if hit is None:
                if not self.options.tolerant:
                    await self._diverge_on(line, waiting, first, "mismatch")
                hit = await self._tolerate(line, waiting)
                if hit is None:
                    continue
            else:
                await self._accept_at(hit, live, line, waiting)
            if early:
                self._early.add(hit)
                continue
            waiting.remove(hit)
            self._matched.add(hit)  # so a set cut short does not list it as unplayed

    def _ahead(self, end: int) -> list[int]:
        """Peer events of later sets, to accept a message a pipelining peer sent early."""
        events = self.cassette.events
        return [p for p in range(end, len(events)) if self.cassette.side_of(p) != self.role
                and p not in self._early and events[p].msg is not None]

    def _match_line(self, line: Heard, live: Any, is_json: bool, candidates: list[int]) -> int | None:
        """The first candidate the line matches; nothing is bound or counted here."""
        events = self.cassette.events
        for p in candidates:
            ev = events[p]
            if ev.msg is not None and isinstance(live, dict):
                if compare(ev, live, self.ctx) is None:
                    return p
            elif ev.raw is not None and not is_json and ev.raw == line.data:
                return p
        return None

    async def _accept_at(self, hit: int, live: Any, line: Heard, waiting: list[int]) -> None:
        event = self.cassette.events[hit]
        if event.msg is None:  # a recorded non-JSON line, said again
            self.report.matched += 1
            self.report.played += 1
            return
        if classify(live) is Kind.REQUEST:
            busy = self._in_flight.get(request_key(live["id"]))
            # The same id as a request still unanswered: a client bug, unless the recording
            # has the very same reuse (then replaying it is no divergence).
            if busy is not None and request_key(self.cassette.events[busy[1]].msg["id"]) != request_key(event.msg["id"]):
                div = divergence.duplicate_id(self.cassette, event, live, live["id"], self.cassette.events[busy[1]],
                                              self.options.peer, self._intake.for_report)
                if self.options.tolerant:
                    self._note("duplicate_id", event, live, reason=div.message)
                else:
                    await self._diverge(div, self.cassette.events[waiting[0]] if waiting else event, answer=live)
        self._accept(hit, live)

    def _accept(self, pos: int, live: dict[str, Any]) -> None:
        event = self.cassette.events[pos]
        if classify(live) is Kind.REQUEST:
            self._id_map[request_key(event.msg["id"])] = live["id"]
            self._in_flight[request_key(live["id"])] = (live["id"], pos)
        commit(event, live, self.ctx)
        self.report.matched += 1
        self.report.played += 1

    # -- divergence ------------------------------------------------------------

    def _finish_unplayed(self, event: Event, include: bool = False) -> None:
        events = self.cassette.events
        start = self.cassette.position_of(event) + (0 if include else 1)
        self.report.unplayed = [
            {"at": self.cassette.where(events[n]), "event": events[n].describe()}
            for n in range(start, len(events)) if n not in self._early and n not in self._matched
        ]

    def _ahead_note(self, first: Event) -> str:
        """Messages of later sets accepted while this one is still awaited (rule 2)."""
        ahead = sorted(p for p in self._early if p >= self._set_end and p not in self._floating)
        return divergence.ahead_note(self.cassette, ahead, first, self.options.peer)

    async def _diverge(self, div: Divergence, first: Event, answer: Any = None,
                       unplayed_after: Event | None = None) -> NoReturn:
        """Stop the play on ``div``: report it, and answer the offending request (``answer``,
        a live message) and every request still waiting for its answer with its error, so
        the peer learns where it diverged instead of waiting out a timeout of its own."""
        self.report.divergence = div
        self.report.status = "error" if div.kind == "error" else "diverged"
        if unplayed_after is not None:
            self._finish_unplayed(unplayed_after)
        else:
            self._finish_unplayed(first, include=True)
        waiting = [live_id for live_id, _ in self._in_flight.values()]
        if isinstance(answer, dict) and classify(answer) is Kind.REQUEST:
            waiting = [i for i in waiting if request_key(i) != request_key(answer["id"])] + [answer["id"]]
        self._in_flight.clear()
        if waiting and not self._write_closed:
            for live_id in waiting:
                self._send(encode(divergence.error_response(live_id, div)))
            await self.channel.drain()
        raise _Stop

    async def _diverge_on(self, line: Heard, waiting: list[int], first: Event, kind: str,
                          unplayed_after: Event | None = None) -> NoReturn:
        live, _ = line.parse()
        pool = [self.cassette.events[p] for p in waiting if self.cassette.events[p].msg is not None] or [first]
        ahead = self._ahead_note(first) if kind == "mismatch" else ""
        div = divergence.for_line(self.cassette, self.ctx, line, pool, kind, self.options.peer, ahead,
                                  self._intake.for_report, rules_named=self._intake.redactor is not None)
        await self._diverge(div, first, answer=live, unplayed_after=unplayed_after)

    def _stalled(self, stall: WriteTimeout, pos: int) -> None:
        """The peer stopped reading: name the first event whose bytes it never took."""
        events = self.cassette.events
        last = min(stall.last if stall.last is not None else pos, len(events) - 1)
        unsent, first = stall.unsent, None
        for p in range(last, -1, -1):
            data = self._bytes_of(events[p]) if events[p].side == self.role else None
            if data:
                first = p
                unsent -= len(data)
                if unsent <= 0:
                    break
        event = events[first] if first is not None else None
        self.report.divergence = divergence.stalled(self.cassette, event, stall.limit, self.options.peer,
                                                    self._intake.for_report)
        self.report.status = "diverged"
        if event is not None:
            self.report.played = first  # everything before it went out (or, the peer's, came in)
            self._finish_unplayed(event, include=True)

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
