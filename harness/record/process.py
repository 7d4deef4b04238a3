"""How a peer process is reached: the common process shape, and the local one.

The recording proxy (and anything else that drives a codex process) talks to a
``PeerProcess``: byte streams plus ``wait``/``send_signal``. A local subprocess
(here) and a remote one over SSH (harness.record.ssh) have the same shape, so callers
never care where codex runs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from typing import IO, Any, Mapping, Protocol, Sequence

from harness.format.wire import LineSplitter
from harness.record.child import ChildProcess, TransportError
from harness.record.ending import ExitStatus



class ByteSink(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class ByteSource(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class PeerProcess(Protocol):
    """What the proxy needs from a running codex, wherever it runs."""

    stdin: ByteSink
    stdout: ByteSource
    stderr: ByteSource

    async def wait(self, timeout: float | None = None) -> int | str: ...
    def send_signal(self, name: str) -> None: ...


class _PipeSink:
    """Writes to a child's stdin; a write to a dead child raises BrokenPipeError."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise BrokenPipeError("the process's stdin is closed")
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            # Bounded: a child that never reads must not hold a close forever.
            await asyncio.wait_for(self._writer.wait_closed(), 5.0)
        except (OSError, asyncio.TimeoutError):
            pass


class _PipeSource:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)

    async def readline(self) -> bytes:
        return await self._reader.readline()


@dataclass
class LocalProcess:
    """A local subprocess with piped stdio, in the common PeerProcess shape.

    With ``raw_stdio`` its stdin and stdout are plain pipe fds (``stdin_fd``,
    ``stdout_fd``) that the event loop does not touch, so a forwarding thread
    can move bytes with blocking reads and writes (harness.record.hop). The
    child is signalled and reaped by harness.record.child alone.
    """

    child: ChildProcess
    stdin: _PipeSink | None
    stdout: _PipeSource | None
    stderr: _PipeSource
    argv: tuple[str, ...] = ()
    stdin_fd: int | None = None
    stdout_fd: int | None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def returncode(self) -> int | None:
        return self.child.returncode

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """The exit status; raises asyncio.TimeoutError if still running after timeout."""
        return await self.child.wait_async(timeout)

    async def close(self) -> None:
        """Let go of the pidfd; the pipes end with the process."""
        self.child.close()

    def send_signal(self, name: str) -> None:
        self.child.send_signal(name)


async def _reader(pipe: IO[bytes], limit: int = 1 << 20) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


class _PipeWriting(asyncio.streams.FlowControlMixin):
    """A pipe's writing protocol that, like asyncio.subprocess's, lets ``wait_closed()`` work."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._closed: asyncio.Future[None] = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        return self._closed


async def _writer(pipe: IO[bytes]) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(lambda: _PipeWriting(loop), pipe)
    return asyncio.StreamWriter(transport, protocol, None, loop)


async def open_local_process(argv: Sequence[str], env: Mapping[str, str] | None = None,
                             cwd: str | None = None, *, raw_stdio: bool = False) -> LocalProcess:
    """Start ``argv`` with piped stdin/stdout/stderr (no shell); see LocalProcess for ``raw_stdio``."""
    ours: list[int] = []   # our ends of the raw pipes
    theirs: list[int] = []  # the child's ends, closed here once it has them
    if raw_stdio:
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        ours, theirs = [w_in, r_out], [r_in, w_out]
        for fd in ours:
            os.set_inheritable(fd, False)
    try:
        child = ChildProcess.start(argv, stdin=theirs[0] if raw_stdio else subprocess.PIPE,
                                   stdout=theirs[1] if raw_stdio else subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, cwd=cwd)
    except TransportError:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    assert child.stderr is not None
    stderr = _PipeSource(await _reader(child.stderr))
    if raw_stdio:
        return LocalProcess(child, None, None, stderr, tuple(argv), stdin_fd=ours[0], stdout_fd=ours[1])
    assert child.stdin is not None and child.stdout is not None
    return LocalProcess(child, _PipeSink(await _writer(child.stdin)), _PipeSource(await _reader(child.stdout)),
                        stderr, tuple(argv))


@dataclass
class OwnedProcess:
    """A local codex as a driver's handle, in asyncio.subprocess.Process's shape
    (``stdin`` a StreamWriter, ``stdout`` a StreamReader of lines, ``wait()``,
    ``returncode``, ``kill()``), signalled and reaped by harness.record.child: its
    exit status is known even when the event loop that drove it has closed."""

    child: ChildProcess
    stdin: asyncio.StreamWriter
    stdout: asyncio.StreamReader
    stderr: None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def returncode(self) -> int | None:
        self.child.poll()
        return self.child.returncode

    async def wait(self) -> int:
        await self.child.wait_async()
        assert self.child.returncode is not None
        return self.child.returncode

    def send_signal(self, sig: int | str) -> None:
        self.child.send_signal(sig)

    def kill(self) -> None:
        self.child.kill()

    def terminate(self) -> None:
        self.child.terminate()


async def spawn_owned(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None, *,
                      limit: int = 1 << 26, stderr: Any = None) -> OwnedProcess:
    """Start a local codex for in-process recording (``stderr`` as Popen takes it: None inherits)."""
    child = ChildProcess.start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd)
    assert child.stdin is not None and child.stdout is not None
    return OwnedProcess(child, await _writer(child.stdin), await _reader(child.stdout, limit))


# -- a PeerProcess as a driver's process handle -----------------------------------

_EOF = object()
HANDLE_CHUNK = 1 << 18


class _HandleStdin:
    """``write`` (sync, buffered), ``await drain()``, ``close()``: asyncio.StreamWriter's shape."""

    def __init__(self, owner: "DriverHandle") -> None:
        self._owner = owner
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.error: OSError | None = None  # what the peer said when a write failed

    def _pump_started(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        # One task writes everything, so bytes go out in the order write() was called.
        while True:
            item = await self._queue.get()
            try:
                if self.error is None:
                    if item is _EOF:
                        await self._owner.process.stdin.close()
                    else:
                        await self._owner.process.stdin.write(item)  # type: ignore[arg-type]
            except OSError as exc:  # a lost SSH connection is a ConnectionResetError
                self.error = exc
            finally:
                self._queue.task_done()
            if item is _EOF:
                return

    def write(self, data: bytes) -> None:
        if self._closed:
            raise BrokenPipeError("the process's stdin is closed")
        if self.error is not None:
            raise self.error
        self._queue.put_nowait(bytes(data))
        self._pump_started()

    async def drain(self) -> None:
        """Wait until everything written so far has gone out; raise what stopped it."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), self._owner.write_timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"the peer did not take our input within {self._owner.write_timeout:g} s") from None
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """End of input for the peer, after what was written before (codex exits 0 on it)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(_EOF)
        self._pump_started()

    def is_closing(self) -> bool:
        return self._closed

    async def flushed(self, timeout: float) -> None:
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout)


class _HandleStdout:
    """Async iterator of the peer's stdout lines (bytes, newline kept; a last line may lack it)."""

    def __init__(self, owner: "DriverHandle") -> None:
        self._owner = owner

    def __aiter__(self) -> Any:
        return self._lines()

    async def _lines(self) -> Any:
        splitter = LineSplitter()
        while True:
            chunk = await self._owner.process.stdout.read(HANDLE_CHUNK)
            if not chunk:
                break
            for line in splitter.feed(chunk):
                yield line + b"\n"
        rest = splitter.rest()
        if rest:
            yield rest
        await self._owner._stdout_ended()


class DriverHandle:
    """A :class:`PeerProcess` (async ``stdin.write`` / ``stdout.read``) as the handle
    a driver gets from a subprocess launcher (optio's ``launch_subprocess``, an
    asyncio subprocess): ``stdin.write(bytes)`` then ``await stdin.drain()``,
    ``stdin.close()``, ``async for line in stdout``, ``await wait()``, ``returncode``.

    Made so a driver written for local subprocesses can drive a codex on another
    host (``harness.record.ssh.RemoteProcess``), e.g. under ``RecordingHandle``. Writes
    go out in order through one task; a failed write (a lost connection) is
    raised by the next ``drain()`` or ``write()``. The peer's stderr is read all
    along, because over SSH an unread stderr fills the flow-control window it
    shares with stdout and stalls it; its last bytes are kept in ``stderr_tail``.
    When stdout ends the handle waits up to ``exit_grace`` seconds for the exit
    status (``exit_value``: a code, a signal name, or "connection lost") and then
    releases the peer (``process.close()``: the SSH connection), so a test that
    closes stdin and reads to the end leaves nothing open. Build it inside the
    event loop that will drive it.
    """

    def __init__(self, process: PeerProcess, *, exit_grace: float = 5.0, write_timeout: float = 60.0,
                 stderr_keep: int = 1 << 16) -> None:
        self.process = process
        self.exit_grace = exit_grace
        self.write_timeout = write_timeout
        self.exit_value: ExitStatus | None = None
        self.stderr_tail = b""
        self._stderr_keep = stderr_keep
        self._released = False
        self.stdin = _HandleStdin(self)
        self.stdout = _HandleStdout(self)
        self.stderr = None  # drained here; see stderr_tail
        self._stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        while True:
            chunk = await self.process.stderr.read(HANDLE_CHUNK)
            if not chunk:
                return
            self.stderr_tail = (self.stderr_tail + chunk)[-self._stderr_keep:]

    @property
    def pid(self) -> int | None:
        return getattr(self.process, "pid", None)

    @property
    def returncode(self) -> int | None:
        return getattr(self.process, "returncode", None)

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """The exit status; raises asyncio.TimeoutError if still running after timeout."""
        if self.exit_value is None:
            self.exit_value = await self.process.wait(timeout)
        return self.exit_value

    async def _stdout_ended(self) -> None:
        try:
            await self.wait(self.exit_grace)
        except asyncio.TimeoutError:
            return  # still running with its stdout closed: aclose() will deal with it
        await self._release()

    async def _release(self) -> None:
        if self._released:
            return
        self._released = True
        await asyncio.wait({self._stderr_task}, timeout=1.0)
        self._stderr_task.cancel()
        close = getattr(self.process, "close", None)
        if close is not None:
            await close()

    async def aclose(self, grace: float | None = None) -> ExitStatus | None:
        """End the session: close stdin, wait up to grace for the exit (SIGTERM, then
        SIGKILL if it lingers), release the peer. Returns the exit status if known."""
        grace = self.exit_grace if grace is None else grace
        self.stdin.close()
        await self.stdin.flushed(grace)
        for signame in (None, "SIGTERM", "SIGKILL"):
            if signame is not None:
                self.process.send_signal(signame)
            try:
                await self.wait(grace)
                break
            except asyncio.TimeoutError:
                continue
        await self._release()
        return self.exit_value
