"""The proxy's own stdio: our stdout/stderr as async sinks that notice a hang-up, our stdin as a source."""

from __future__ import annotations

import asyncio
import os
import select

from harness.record.hop import CHUNK, Hop, write_all

class _ClientOut(asyncio.streams.FlowControlMixin):
    """Write side of our stdout/stderr; notices when the reader goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.set()


class _FdSink:
    """Our stdout or stderr as an async sink. Pipes get a non-blocking transport
    (with hang-up detection); files and others fall back to plain writes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False
        self.closed_by_us = False
        self._writer: asyncio.StreamWriter | None = None
        self._proto: _ClientOut | None = None

    async def open(self) -> "_FdSink":
        loop = asyncio.get_running_loop()
        try:
            pipe = os.fdopen(os.dup(self.fd), "wb", buffering=0)
            transport, proto = await loop.connect_write_pipe(_ClientOut, pipe)
            self._proto = proto
            self._writer = asyncio.StreamWriter(transport, proto, None, loop)
        except (ValueError, OSError):
            self._writer = None  # a regular file: blocking writes are fine
        return self

    @property
    def hung_up(self) -> bool:
        """The reader closed its end before we closed ours."""
        return self.broken or bool(self._proto and self._proto.lost.is_set() and not self.closed_by_us)

    async def write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            if self._writer is None:
                write_all(self.fd, data)
            else:
                self._writer.write(data)
                await self._writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.broken = True

    async def close(self) -> None:
        if self._proto is not None and (self._proto.lost.is_set() or _reader_gone(self.fd)):
            self.broken = True  # the reader left before the server ended
        self.closed_by_us = True
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()
            try:
                await asyncio.wait_for(self._writer.wait_closed(), 5.0)
            except (OSError, asyncio.TimeoutError):
                pass
        if self.fd == 1:
            # Also drop our own fd 1, so the client sees end-of-file now.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)


class _ThreadedStdout:
    """Our stdout as a forwarding thread writes it: what the verdict needs to know."""

    def __init__(self, hop: Hop) -> None:
        self.hop = hop
        self.closed_by_us = False

    @property
    def broken(self) -> bool:
        return self.hop.broken

    @property
    def hung_up(self) -> bool:
        return self.hop.broken or (not self.closed_by_us and _reader_gone(1))

    def close(self) -> None:
        if _reader_gone(1):
            self.hop.broken = True  # the reader left before the server ended
        self.closed_by_us = True
        # Drop fd 1, so the client sees end-of-file now, not when we exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def _reader_gone(fd: int) -> bool:
    """A pipe whose read end is closed polls as an error on its write end."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, AttributeError):
        return False


class _FdSource:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._reader: asyncio.StreamReader | None = None

    async def open(self) -> "_FdSource":
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=CHUNK, loop=loop)
        try:
            pipe = os.fdopen(os.dup(self.fd), "rb", buffering=0)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
            self._reader = reader
        except (ValueError, OSError):
            self._reader = None  # a regular file: read it in a thread
        return self

    async def read(self, n: int) -> bytes:
        if self._reader is not None:
            return await self._reader.read(n)
        return await asyncio.get_running_loop().run_in_executor(None, os.read, self.fd, n)


def client_hung_up(fd: int = 0) -> bool:
    """Whether the client has closed its end of our stdin, whether or not we read it all yet:
    a pipe whose writers are all gone polls as a hang-up, a socket as a read hang-up. The
    kernel's answer at the moment of asking, so a signal's handler can tell which came first."""
    hangups = select.POLLHUP | getattr(select, "POLLRDHUP", 0)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | hangups)
        return any(ev & hangups for _, ev in poller.poll(0))
    except (OSError, AttributeError, ValueError):
        return False
