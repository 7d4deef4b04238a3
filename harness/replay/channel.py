"""How the replay engine talks to its live peer: a line-oriented duplex channel.

The engine only ever awaits its channel, never an event loop directly, so the
same engine runs inside asyncio (harness.replay.aio_channels: an in-memory pipe pair
behind a subprocess-shaped handle; a process handle) and, with this module's
blocking ``StdioChannel``, as a plain synchronous program: the fake codex
subprocess answers ``initialize`` without paying for importing asyncio.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections import deque
from typing import Any, Coroutine, Protocol, TypeVar

from harness.format.wire import CHUNK, Line, LineSplitter

T = TypeVar("T")
WRITE_STALL = 60.0  # a peer that reads nothing of ours for this long has gone


class ReadTimeout(TimeoutError):
    """Nothing came from the peer within the wait asked for."""


class Stopped(BaseException):
    """The process was asked to stop (SIGTERM) while the engine waited on its channel."""


class Channel(Protocol):
    async def read_line(self, timeout: float | None = None) -> Line | None:
        """The next line from the peer; None once it closed its stream; ReadTimeout
        when ``timeout`` seconds pass first."""

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer (see drain)."""

    async def drain(self) -> None:
        """Wait until written bytes were taken (bounded by the caller)."""

    async def sleep(self, seconds: float) -> None:
        """Pause the play (pace, delay and stall faults)."""

    async def close(self) -> None:
        """Close our sending side: the peer sees end of stream."""


class _Lines:
    """Turns a chunk source into lines, keeping the last partial one."""

    def __init__(self) -> None:
        self.splitter = LineSplitter()
        self.ready: deque[Line] = deque()
        self.eof = False

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self.ready.extend(Line(d) for d in self.splitter.feed(chunk))
        else:
            rest = self.splitter.rest()
            if rest:
                self.ready.append(Line(rest, newline=False))
            self.eof = True


def _sole_writer(stream: Any) -> Any:
    """A stream whose close really ends the peer's stream.

    sys.stdout never closes fd 1 (its FileIO has closefd=False), so closing a
    transport over it would leave the pipe open and the client would never see
    end of stream. Write through a private duplicate instead and point fd 1 at
    /dev/null, so the duplicate is the pipe's only writer in this process.
    """
    raw = getattr(stream, "raw", stream)
    if getattr(raw, "closefd", True):
        return stream
    fd = stream.fileno()
    dup = os.dup(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    return open(dup, "wb", buffering=0)


class StdioChannel:
    """This process's stdin and stdout, with blocking I/O bounded by select().

    Works for pipes, sockets, ttys, regular files and /dev/null alike. Its
    coroutines never suspend, so ``run_sync`` drives an engine on it.
    """

    def __init__(self, stdin: Any = None, stdout: Any = None) -> None:
        self._in = (stdin or sys.stdin.buffer).fileno()
        out = _sole_writer(stdout or sys.stdout.buffer)
        self._out_file = out  # keeps the duplicate open while we write through its fd
        self._out: int | None = out.fileno()
        self._broken = False
        self._pending = bytearray()
        self._lines = _Lines()
        self._stop = False
        self._waiting = False

    def request_stop(self) -> None:
        """For a signal handler: stop at the engine's next wait, or now if it is waiting,
        so a stop never lands between saying something and counting it said."""
        self._stop = True
        if self._waiting:
            raise Stopped()

    def _wait_point(self) -> None:
        self._flush()  # everything said goes out before we wait for an answer
        if self._stop:
            raise Stopped()
        self._waiting = True

    async def read_line(self, timeout: float | None = None) -> Line | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._lines.ready:
            if self._lines.eof:
                return None
            self._wait_point()
            try:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([self._in], [], [], left)[0]:
                        raise ReadTimeout(f"nothing came in {timeout:g} s")
                try:
                    chunk = os.read(self._in, CHUNK)
                except OSError:
                    chunk = b""
            finally:
                self._waiting = False
            self._lines.feed(chunk)
        return self._lines.ready.popleft()

    def write(self, data: bytes) -> None:
        # Buffered: a streamed turn is thousands of small messages, and a system
        # call each would cost more than the rest of the engine's work on them.
        self._pending += data
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        data, self._pending = self._pending, bytearray()
        if self._out is None or self._broken or not data:
            return
        view = memoryview(data)
        try:
            while view:
                if not select.select([], [self._out], [], WRITE_STALL)[1]:
                    self._broken = True  # the peer stopped reading; what we say is lost
                    return
                view = view[os.write(self._out, view):]
        except (BrokenPipeError, ConnectionError, OSError):
            self._broken = True

    async def drain(self) -> None:
        self._flush()

    async def sleep(self, seconds: float) -> None:
        self._wait_point()
        try:
            time.sleep(seconds)
        finally:
            self._waiting = False

    async def close(self) -> None:
        self._flush()
        if self._out is not None:
            self._out_file.close()
            self._out = None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (an engine on a synchronous channel)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the coroutine suspended: it needs an event loop, not run_sync")
