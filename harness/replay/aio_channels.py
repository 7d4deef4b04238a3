"""Channels for an engine running inside an asyncio event loop.

- ``memory_pair()``: an in-memory pipe pair; the engine holds one end, a driver
  the other two, shaped like a subprocess's stdin and stdout (the in-process fake).
- ``ProcessChannel``: the engine on a process handle (re-recording a live codex).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any, AsyncIterator

from harness.format.cassette import Event
from harness.replay.channel import WRITE_STALL, Line, ReadTimeout, WriteTimeout, _Lines

if sys.version_info >= (3, 11):
    async def bounded(awaitable: Any, timeout: float | None) -> Any:
        """asyncio.wait_for without its extra task per call (one per peer message)."""
        try:
            async with asyncio.timeout(timeout):
                return await awaitable
        except TimeoutError:
            raise ReadTimeout(f"nothing came in {timeout:g} s") from None
else:  # pragma: no cover - Python 3.10
    async def bounded(awaitable: Any, timeout: float | None) -> Any:
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except asyncio.TimeoutError:
            raise ReadTimeout(f"nothing came in {timeout:g} s") from None


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

    async def read_line(self, timeout: float | None = None) -> Line | None:
        if self._lines.ready:
            return self._lines.ready.popleft()
        return await bounded(self._read_line(), timeout)

    async def _read_line(self) -> Line | None:
        while not self._lines.ready:
            if self._lines.eof:
                return None
            chunk = await self._in.get()
            self._lines.feed(chunk or b"")
        return self._lines.ready.popleft()

    def write(self, data: bytes) -> None:
        out = self._out
        if not out.closed and data:  # _Pipe.put, inlined: every replayed message comes here
            out.chunks.append(data)
            if out._waiters:
                out._wake()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def drain(self) -> None:
        # Let the reader run now and then, as a pipe's buffer would force.
        if self._out.qsize() > 256:
            await asyncio.sleep(0)

    async def close(self, ending: Event | None = None) -> None:
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
    (and record a false end of stream). A codex that takes nothing of what we write
    for ``write_timeout`` seconds ends the play (WriteTimeout), as a client does.
    """

    def __init__(self, handle: Any, write_timeout: float = WRITE_STALL) -> None:
        self.write_timeout = write_timeout
        self._stdin = handle.stdin
        self._stdout = handle.stdout
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pump: asyncio.Task | None = None
        self._eof = False
        self._stalled = False
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

    async def read_line(self, timeout: float | None = None) -> Line | None:
        self.start()
        if self._eof:
            return None
        item = await bounded(self._queue.get(), timeout)
        if item is None:
            self._eof = True
            return None
        newline = item.endswith(b"\n")
        data = item[:-1] if newline else item
        return Line(data, newline=newline)

    def write(self, data: bytes) -> None:
        if not self.closed and not self._stalled:
            try:
                self._stdin.write(data)
            except (ConnectionError, RuntimeError):
                pass  # codex is gone; the engine notices on its next read

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def drain(self) -> None:
        if self._stalled:
            return
        try:
            await asyncio.wait_for(self._stdin.drain(), self.write_timeout)
        except (ConnectionError, RuntimeError):
            pass
        except asyncio.TimeoutError:
            self._stalled = True  # what we say from now on is dropped
            raise WriteTimeout(self.write_timeout, 0) from None

    async def close(self, ending: Event | None = None) -> None:
        if not self.closed:
            try:
                await self.drain()
            finally:
                self.closed = True
                self._stdin.close()

    async def finish(self, timeout: float) -> None:
        """Let the pump read codex's stdout to its end (so the recording has it), bounded."""
        if self._pump is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), timeout)
        except asyncio.TimeoutError:
            self._pump.cancel()
