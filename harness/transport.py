"""How a peer process is reached: the common process shape, and the local one.

The recording proxy (and anything else that drives a codex process) talks to a
``PeerProcess``: byte streams plus ``wait``/``send_signal``. A local subprocess
(here) and a remote one over SSH (harness.ssh) have the same shape, so callers
never care where codex runs.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, Union

from harness.errors import HarnessError

ExitStatus = Union[int, str]  # an exit code, or a signal name such as "SIGKILL"


class TransportError(HarnessError):
    """A peer process could not be started or reached."""


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


def exit_status(returncode: int) -> int | str:
    """asyncio's returncode as a cassette ``exit`` value: code, or signal name."""
    if returncode >= 0:
        return returncode
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"SIG{-returncode}"


def signal_number(name: str) -> int:
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise TransportError(f"unknown signal {name!r}; use a name such as SIGTERM or SIGINT") from None


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


@dataclass
class LocalProcess:
    """A local subprocess with piped stdio, in the common PeerProcess shape."""

    proc: asyncio.subprocess.Process
    stdin: _PipeSink
    stdout: _PipeSource
    stderr: _PipeSource
    argv: tuple[str, ...] = ()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self, timeout: float | None = None) -> int | str:
        """The exit status; raises asyncio.TimeoutError if still running after timeout."""
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        return exit_status(code)

    async def close(self) -> None:
        """Nothing to release beyond the pipes, which end with the process."""

    def send_signal(self, name: str) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal_number(name))
            except ProcessLookupError:
                pass  # exited between the check and the signal


async def open_local_process(argv: Sequence[str], env: Mapping[str, str] | None = None,
                             cwd: str | None = None) -> LocalProcess:
    """Start ``argv`` with piped stdin/stdout/stderr (no shell)."""
    if not argv:
        raise TransportError("no command given to start")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(env) if env is not None else None, cwd=cwd,
            limit=1 << 20)
    except OSError as exc:
        raise TransportError(f"cannot start {argv[0]!r}: {exc.strerror or exc}. Check that the "
                             "command exists and is executable (the part after `--`).") from None
    assert proc.stdin and proc.stdout and proc.stderr
    return LocalProcess(proc, _PipeSink(proc.stdin), _PipeSource(proc.stdout),
                        _PipeSource(proc.stderr), tuple(argv))
