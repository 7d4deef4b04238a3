"""How the replay engine talks to its live peer: a line-oriented duplex channel.

Two kinds: stdio of the current process (the fake server as a subprocess) and an
in-memory pipe pair (the fake server inside the test's event loop, behind a
handle shaped like a subprocess's, which optio's driver and others accept).
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections import deque
from typing import Any, AsyncIterator, Protocol

from harness.wire import CHUNK, Line, LineSplitter


class Channel(Protocol):
    async def read_line(self) -> Line | None:
        """The next line from the peer; None once it closed its stream."""

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer (see drain)."""

    async def drain(self) -> None:
        """Wait until written bytes were taken (bounded by the caller)."""

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


def _pollable(stream: Any) -> bool:
    """Pipes and sockets work with the event loop; files, ttys and /dev/null do not (reliably)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


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
    """The current process's stdin/stdout, asynchronously.

    Pipes and sockets go through the event loop. A regular file or /dev/null,
    which epoll refuses, is read in the default executor and written directly
    (neither ever blocks for long).
    """

    def __init__(self, stdin: Any = None, stdout: Any = None) -> None:
        self._stdin = stdin or sys.stdin.buffer
        self._stdout = stdout or sys.stdout.buffer
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._out_fd: int | None = None
        self._lines = _Lines()

    async def open(self) -> "StdioChannel":
        loop = asyncio.get_running_loop()
        if _pollable(self._stdin):
            reader = asyncio.StreamReader(limit=CHUNK)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self._stdin)
            self._reader = reader
        if _pollable(self._stdout):
            out = _sole_writer(self._stdout)
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        else:
            self._out_fd = self._stdout.fileno()
        return self

    async def _read_chunk(self) -> bytes:
        if self._reader is not None:
            return await self._reader.read(CHUNK)
        return await asyncio.get_running_loop().run_in_executor(None, os.read, self._stdin.fileno(), CHUNK)

    async def read_line(self) -> Line | None:
        while not self._lines.ready:
            if self._lines.eof:
                return None
            self._lines.feed(await self._read_chunk())
        return self._lines.ready.popleft()

    def write(self, data: bytes) -> None:
        if self._writer is not None:
            if not self._writer.is_closing():
                self._writer.write(data)
        elif self._out_fd is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(self._out_fd, view):]

    async def drain(self) -> None:
        if self._writer is None:
            return
        try:
            await self._writer.drain()
        except (ConnectionError, BrokenPipeError):
            pass

    async def close(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            try:
                await self._writer.drain()
            except (ConnectionError, BrokenPipeError):
                pass
            # Closing the pipe transport closes fd 1: that is the peer's end of stream.
            self._writer.close()
            await asyncio.sleep(0)
        elif self._out_fd is not None:
            try:
                os.close(self._out_fd)
            except OSError:
                pass
            self._out_fd = None


class _Pipe:
    """One direction of an in-memory pipe: chunks in, end-of-stream as None.

    A deque plus waiter futures rather than asyncio.Queue: every replayed
    message crosses here, and Queue's put/get cost more than the rest of the
    engine's per-message work (bench/replay_throughput.py).
    """

    def __init__(self) -> None:
        self.chunks: deque[bytes | None] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self.closed = False

    def _wake(self) -> None:
        if self._waiters:
            for fut in self._waiters:
                if not fut.done():
                    fut.set_result(None)
            self._waiters.clear()

    def put(self, data: bytes) -> None:
        if self.closed:
            raise BrokenPipeError("the other side closed this pipe")
        if data:
            self.chunks.append(data)
            self._wake()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.chunks.append(None)
            self._wake()

    def qsize(self) -> int:
        return len(self.chunks)

    async def get(self) -> bytes | None:
        """The next chunk, None at end of stream (which stays for later readers too)."""
        while not self.chunks:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut  # a cancelled getter's future is skipped by the next _wake
        chunk = self.chunks.popleft()
        if chunk is None:
            self.chunks.appendleft(None)
        return chunk


class MemoryChannel:
    """The engine's end of an in-memory pipe pair."""

    def __init__(self, inbound: _Pipe, outbound: _Pipe) -> None:
        self._in = inbound
        self._out = outbound
        self._lines = _Lines()

    async def read_line(self) -> Line | None:
        while not self._lines.ready:
            if self._lines.eof:
                return None
            chunk = await self._in.get()
            self._lines.feed(chunk or b"")
        return self._lines.ready.popleft()

    def write(self, data: bytes) -> None:
        if not self._out.closed:
            self._out.put(data)

    async def drain(self) -> None:
        # Let the reader run now and then, as a pipe's buffer would force.
        if self._out.qsize() > 256:
            await asyncio.sleep(0)

    async def close(self) -> None:
        self._out.close()


class HandleStdin:
    """What a driver writes to: write() plus an awaitable drain(), like a StreamWriter."""

    def __init__(self, pipe: _Pipe) -> None:
        self._pipe = pipe

    def write(self, data: bytes | str) -> None:
        self._pipe.put(data.encode("utf-8") if isinstance(data, str) else data)

    async def drain(self) -> None:
        if self._pipe.closed:
            raise BrokenPipeError("the fake codex has ended")

    def close(self) -> None:
        self._pipe.close()

    def is_closing(self) -> bool:
        return self._pipe.closed


class HandleStdout:
    """What a driver reads: an async iterator of lines (bytes, newline kept), and read(n)."""

    def __init__(self, pipe: _Pipe) -> None:
        self._pipe = pipe
        self._buf = b""
        self._eof = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._pipe.chunks
        if not self._buf and chunks:
            # The common case, without a trip through get(): one whole message per write.
            chunk = chunks[0]
            if chunk is not None and chunk.endswith(b"\n") and chunk.count(b"\n") == 1:
                return chunks.popleft()
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[: nl + 1], self._buf[nl + 1:]
                return line
            if self._eof:
                if self._buf:
                    line, self._buf = self._buf, b""
                    return line
                raise StopAsyncIteration
            chunk = await self._pipe.get()
            if chunk is None:
                self._eof = True
            elif not self._buf and chunk.endswith(b"\n") and chunk.count(b"\n") == 1:
                return chunk  # the common case: one whole message per write
            else:
                self._buf += chunk

    async def readline(self) -> bytes:
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return b""

    async def read(self, n: int = -1) -> bytes:
        if not self._buf and not self._eof:
            chunk = await self._pipe.get()
            if chunk is None:
                self._eof = True
            else:
                self._buf = chunk
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def memory_pair() -> tuple[MemoryChannel, HandleStdin, HandleStdout]:
    """An engine channel and the two ends a driver holds."""
    to_engine, to_driver = _Pipe(), _Pipe()
    return MemoryChannel(to_engine, to_driver), HandleStdin(to_engine), HandleStdout(to_driver)


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
