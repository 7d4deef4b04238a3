"""One proxied socket connection: a client's and its twin to codex, forwarded by a thread per
direction (harness.record.hop, blocking reads and writes on the two sockets), recorded by
an event-loop task when the wire is quiet (harness.record.quiet).

As on stdio, each chunk is handed to the recorder before it is written on, so the
cassette's order is the order both sides saw. A direction's end is passed on as
codex left it: the client's end of stream half-closes codex's socket; codex's end
(a close frame answered by a hang-up, a crash) ends the client's connection.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from harness.record.hop import Hop
from harness.record.tee import Tee

RECORD_BATCH = 32  # events recorded between two chances for the wire to move


def _wake(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)


@dataclass
class ProxiedConnection:
    recorder: Any  # harness.record.ws_proxy.SocketRecorder
    client: socket.socket
    loop: asyncio.AbstractEventLoop
    server: socket.socket | None = None
    t0: float = field(default_factory=time.monotonic)
    queue: collections.deque = field(default_factory=collections.deque)  # (side, bytes or None at its end, t)
    ended_sides: set[str] = field(default_factory=set)
    first_end: str | None = None
    first_end_at: float | None = None  # (time.monotonic)
    tee: Tee | None = None
    number: int = 0
    cut: bool = False  # the provider guard cut it
    hops: list[Hop] = field(default_factory=list)
    _hops_left: int = 2
    _waiting: asyncio.Future | None = None

    def __post_init__(self) -> None:
        from harness.record.ws_tee import WsFeed

        self.feed = WsFeed(on_session=self._start_session)

    def _start_session(self) -> Tee:
        self.number, writer = self.recorder.new_session()
        self.tee = Tee(writer, self.recorder.placeholders, self.recorder.redactor,
                       transport=self.recorder.listen.scheme)
        return self.tee

    # -- the wire (the hops' threads) ------------------------------------------------------

    def start(self, server: socket.socket) -> None:
        self.server = server
        check = self._guard if self.recorder.guard is not None else None
        self.hops = [Hop("client", self.client.fileno(), server.fileno(), self._chunk, self._end).start(),
                     Hop("server", server.fileno(), self.client.fileno(), self._chunk, self._end, check=check).start()]

    def _poke(self) -> None:
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            self.loop.call_soon_threadsafe(_wake, waiting)

    def _chunk(self, side: str, data: bytes) -> None:
        self.queue.append((side, data, self.recorder.quiet.moved() - self.t0))
        self._poke()

    def _guard(self, data: bytes) -> int:
        guard = self.recorder.guard
        guard.safe_prefix(data)
        if not guard.violation:
            return len(data)
        self.cut = True  # nothing of it goes on: the client's connection ends here
        self.loop.call_soon_threadsafe(self.recorder.kill_codex)
        return 0

    def _end(self, side: str, eof: bool) -> None:
        # Noted before the other side hears of it: its hop's end comes after ours.
        self.ended_sides.add(side)
        if self.first_end is None:
            self.first_end, self.first_end_at = side, time.monotonic()
        self.queue.append((side, None, time.monotonic() - self.t0))
        other = self.server if side == "client" else self.client
        try:
            # The client's end of stream reaches codex as one; codex's end ends the client's connection.
            other.shutdown(socket.SHUT_WR if side == "client" else socket.SHUT_RDWR)  # type: ignore[union-attr]
        except OSError:
            pass  # already gone
        self.loop.call_soon_threadsafe(self._hop_ended)

    def _hop_ended(self) -> None:
        self._hops_left -= 1
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            _wake(waiting)

    def stop(self) -> None:
        """Stop forwarding (the recorder is ending): the hops end at their next poll."""
        for hop in self.hops:
            hop.stop()
        if not self.hops:
            self._hops_left = 0

    def close(self) -> None:
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()

    # -- recording (an event-loop task) -------------------------------------------------

    async def record(self) -> None:
        """Record as the queue fills, until both directions ended and all is written."""
        quiet = self.recorder.quiet
        while True:
            while self.queue:
                await quiet.let_burst_pass(self.queue[0][2] + self.t0)
                side, data, t = self.queue.popleft()
                if data is None:
                    if self.tee is not None:
                        self.tee.eof(side, t)
                elif self.tee is None:
                    for _ in self.feed.feed(side, data, t):
                        pass  # the head, and the session's start
                else:
                    with self.tee.writer.batch():  # one flush per chunk, not per frame
                        for n, _ in enumerate(self.feed.feed(side, data, t), 1):
                            if n % RECORD_BATCH == 0:
                                await asyncio.sleep(0)
                                await quiet.let_burst_pass(t + self.t0)
            if self._hops_left <= 0:
                return
            self._waiting = self.loop.create_future()
            if self.queue or self._hops_left <= 0:  # came in meanwhile, before the future was seen
                self._waiting = None
                continue
            await self._waiting

    def verdict(self, exit_code: Any, signalled: str | None, signalled_at: float | None) -> tuple[bool, str]:
        if self.cut:
            return False, self.recorder.guard.violation
        if self.feed.first_close is not None and self.ended_sides >= {"client", "server"}:
            return True, "clean"
        # A signal that came while the connection was open ended it, unless codex died of something else.
        open_then = signalled_at is not None and (self.first_end_at is None or self.first_end_at > signalled_at)
        if open_then and not (isinstance(exit_code, str) and exit_code != signalled):
            return False, f"the recorder got {signalled} and passed it on to the server while the connection was open"
        if self.first_end == "client":
            return False, "the client dropped the connection without a close frame"
        if exit_code is not None:
            return False, f"the server exited with {exit_code} while the connection was open"
        return False, "the server dropped the connection without a close frame"
