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
import stat
import sys
import time
from collections import deque
from typing import Any, Coroutine, Protocol, TypeVar

from harness.format.cassette import Event
from harness.format.wire import CHUNK, Line, LineSplitter

T = TypeVar("T")
WRITE_STALL = 60.0  # the write deadline of a channel not told another
PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # a blocking pipe write this small waits for no reader


class ReadTimeout(TimeoutError):
    """Nothing came from the peer within the wait asked for."""


class WriteTimeout(TimeoutError):
    """The peer took nothing of what we wrote for ``limit`` seconds (it stopped reading).

    ``unsent`` bytes were still waiting; ``last`` is set by the engine to the position
    of the last event it handed the channel, so the report can name the line."""

    def __init__(self, limit: float, unsent: int) -> None:
        super().__init__(f"nothing written was taken in {limit:g} s")
        self.limit = limit
        self.unsent = unsent
        self.last: int | None = None


class Stopped(BaseException):
    """The process was asked to stop (SIGTERM, SIGINT, SIGHUP): raised by the fake's signal
    handler wherever the play is, a blocked read or write included."""


class Channel(Protocol):
    async def read_line(self, timeout: float | None = None) -> Line | None:
        """The next line from the peer; None once it closed its stream; ReadTimeout
        when ``timeout`` seconds pass first."""

    def write(self, data: bytes) -> None:
        """Queue one message (or raw line) for the peer, newline included (see drain)."""

    async def drain(self) -> None:
        """Wait until written bytes were taken (bounded by the caller)."""

    async def sleep(self, seconds: float) -> None:
        """Pause the play (pace, delay and stall faults)."""

    async def close(self, ending: Event | None = None) -> None:
        """Close our sending side: the peer sees end of stream. ``ending`` is the cassette's
        eof event when the close is a recorded one (a socket channel ends as it says: with
        its close frame, or dropped); None when the play is over."""


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


def _sole_writer(stream: Any) -> tuple[Any, bool]:
    """A stream whose close really ends the peer's stream, and whether it never blocks.

    sys.stdout never closes fd 1 (its FileIO has closefd=False), so closing a
    transport over it would leave the pipe open and the client would never see
    end of stream. Write through a private descriptor instead and point fd 1 at
    /dev/null, so ours is the pipe's only writer in this process. For a pipe the
    private descriptor is a fresh open of it, non-blocking: a write then never
    waits, so every wait is a select() with the write deadline (a duplicate would
    share the client's file status flags, which are not ours to change).
    """
    raw = getattr(stream, "raw", stream)
    if getattr(raw, "closefd", True):
        return stream, False
    fd = stream.fileno()
    private = _reopen_nonblocking(fd)
    nonblocking = private is not None
    if private is None:
        private = os.dup(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    return open(private, "wb", buffering=0), nonblocking


def _reopen_nonblocking(fd: int) -> int | None:
    """A new open file description of the pipe behind ``fd``, non-blocking; None for
    anything else (a file, a tty, a socket) or where /proc cannot do it."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None


def write_mode(fd: int, nonblocking: bool = False) -> str:
    """How write_within treats ``fd``: "nonblocking" (a write never waits), "file" (a
    regular file: a write never waits either) or "blocking" (a pipe, tty or socket)."""
    if nonblocking:
        return "nonblocking"
    try:
        return "file" if stat.S_ISREG(os.fstat(fd).st_mode) else "blocking"
    except OSError:
        return "blocking"


def write_within(fd: int, data: bytes | bytearray | memoryview, limit: float, mode: str = "blocking") -> int:
    """Write ``data`` to ``fd`` unless the reader takes nothing for ``limit`` seconds; the
    number of bytes left unwritten (0: all of it). BrokenPipeError when the reader is gone.
    On a blocking descriptor, after select() said writable, only PIPE_BUF bytes go at a
    time: a larger write may wait for the reader, and past any deadline."""
    view = memoryview(data)
    while view:
        if mode == "file":
            view = view[os.write(fd, view):]
            continue
        if mode == "nonblocking":
            try:
                view = view[os.write(fd, view):]
                continue
            except BlockingIOError:
                pass
        if not select.select([], [fd], [], limit)[1]:
            return len(view)
        if mode == "blocking":
            view = view[os.write(fd, view[:PIPE_BUF]):]
    return 0


class StdioChannel:
    """This process's stdin and stdout, with blocking I/O bounded by select().

    Works for pipes, sockets, ttys, regular files and /dev/null alike. Its
    coroutines never suspend, so ``run_sync`` drives an engine on it. Every write
    has a deadline: a peer that takes nothing for ``write_timeout`` seconds ends
    the play with WriteTimeout (after which what we say is dropped).
    """

    def __init__(self, stdin: Any = None, stdout: Any = None, write_timeout: float = WRITE_STALL) -> None:
        self._in = (stdin or sys.stdin.buffer).fileno()
        out, nonblocking = _sole_writer(stdout or sys.stdout.buffer)
        self._out_file = out  # keeps our descriptor open while we write through its fd
        self._out: int | None = out.fileno()
        self._mode = write_mode(self._out, nonblocking)
        self.write_timeout = write_timeout
        self._broken = False
        self._pending = bytearray()
        self._lines = _Lines()

    async def read_line(self, timeout: float | None = None) -> Line | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._lines.ready:
            if self._lines.eof:
                return None
            self._flush()  # everything said goes out before we wait for an answer
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._in], [], [], left)[0]:
                    raise ReadTimeout(f"nothing came in {timeout:g} s")
            try:
                chunk = os.read(self._in, CHUNK)
            except OSError:
                chunk = b""
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
        try:
            unsent = write_within(self._out, data, self.write_timeout, self._mode)
        except OSError:  # the peer is gone (EPIPE): what we say is lost, and it noticed
            self._broken = True
            return
        if unsent:
            self._broken = True  # the peer stopped reading; what we say from now on is dropped
            raise WriteTimeout(self.write_timeout, unsent)

    async def drain(self) -> None:
        self._flush()

    async def sleep(self, seconds: float) -> None:
        self._flush()
        time.sleep(seconds)

    async def close(self, ending: Event | None = None) -> None:
        try:
            self._flush()
        finally:
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
