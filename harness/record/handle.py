"""In-process recording: ``RecordingHandle`` wraps the process handle a driver launched itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import HarnessError
from harness.format.placeholders import Placeholders
from harness.format.redact import Redactor
from harness.format.writer import CassetteWriter
from harness.record.guard import ProviderGuard
from harness.record.child import exit_status
from harness.record.ending import Ending, ExitStatus
from harness.record.tee import Tee, default_placeholders, header_meta

class _RecordingStdin:
    def __init__(self, inner: Any, owner: "RecordingHandle") -> None:
        self._inner = inner
        self._owner = owner

    def write(self, data: bytes) -> Any:
        result = self._inner.write(data)
        self._owner.tee.chunk("client", bytes(data), self._owner.writer.now())
        return result

    async def drain(self) -> None:
        drain = getattr(self._inner, "drain", None)
        if drain is not None:
            await drain()

    def close(self) -> Any:
        result = self._inner.close()
        self._owner._eof("client")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _RecordingStdout:
    def __init__(self, inner: Any, owner: "RecordingHandle") -> None:
        self._inner = inner
        self._owner = owner

    def __aiter__(self) -> Any:
        return self._lines()

    async def _lines(self) -> Any:
        guard = self._owner.guard
        try:
            async for item in self._inner:
                if guard is not None and not guard.check(item if isinstance(item, bytes) else item.encode()):
                    self._owner.stop_server()
                    raise HarnessError(guard.violation)
                self._owner.tee.items("server", item, self._owner.writer.now())
                yield item
        finally:
            self._owner._eof("server")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class RecordingHandle:
    """Wraps a driver's process handle (``.stdin.write``, ``.stdout`` line iterator)
    and records everything that passes through it; other attributes pass through.

    ``async with RecordingHandle(handle, "x.jsonl") as h: conv.attach(h) ...``
    """

    def __init__(self, handle: Any, cassette: str | Path | CassetteWriter, *,
                 placeholders: Placeholders | None = None, redactor: Redactor | None = None,
                 command: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 guard: ProviderGuard | None = None, fresh: bool = False,
                 volatile: Sequence[str] = (), baseline: str | Path | None = None) -> None:
        env = os.environ if env is None else env
        self._handle = handle
        self.guard = guard
        self.placeholders = placeholders or default_placeholders(env=env)
        self.redactor = redactor or Redactor.default(env=env)
        if isinstance(cassette, CassetteWriter):
            self.writer = cassette
            self.writer.meta.update(header_meta(command, self.placeholders, self.redactor, "in-process"))
        else:
            self.writer = CassetteWriter(cassette, header_meta(command, self.placeholders,
                                                               self.redactor, "in-process"),
                                         fresh=fresh, volatile=volatile, baseline=baseline)
        self.tee = Tee(self.writer, self.placeholders, self.redactor)
        self.stdin = _RecordingStdin(handle.stdin, self) if handle.stdin is not None else None
        self.stdout = _RecordingStdout(handle.stdout, self)

    def _eof(self, side: str) -> None:
        if not self.writer.closed:
            self.tee.eof(side, self.writer.now())

    def stop_server(self) -> None:
        """Kill the wrapped process (the provider guard tripped)."""
        for obj in (self._handle, getattr(self._handle, "pid_like", None), getattr(self._handle, "proc", None)):
            kill = getattr(obj, "kill", None)
            if callable(kill):
                try:
                    kill()
                except (ProcessLookupError, OSError):
                    pass
                return

    def _returncode(self) -> int | None:
        for obj in (self._handle, getattr(self._handle, "pid_like", None), getattr(self._handle, "proc", None)):
            code = getattr(obj, "returncode", None)
            if isinstance(code, int):
                return code
        return None

    def finish(self, *, complete: bool = True, exit: ExitStatus | None = None,
               stopped: str | None = None) -> Path:
        """Write the cassette; ``meta.end`` says how the session ended (harness.record.ending),
        as the proxy says it. The exit status is taken from the handle when it has one; an
        unknown one makes the cassette incomplete, never exit 0. ``complete=False`` or a
        ``stopped`` reason marks a session the caller knows went wrong. Returns the cassette,
        or after a write error the ``.partial`` kept (``writer.failure`` says why)."""
        if exit is None:
            code = self._returncode()
            exit = exit_status(code) if code is not None else None
        if exit is not None and not self.writer.closed:
            self.tee.exit(exit, self.writer.now())
        if self.guard is not None and self.guard.violation:
            stopped = self.guard.violation
        elif stopped is None and not complete:
            stopped = "the recording was ended early by the code driving it"
        ending = Ending(client_closed="client" in self.tee.eofs, server_closed="server" in self.tee.eofs,
                        status=exit, stopped=stopped)
        ok, end = ending.verdict()
        return self.tee.finish(ok, end)

    async def __aenter__(self) -> "RecordingHandle":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(stopped=None if exc_type is None else
                    f"the block recording it raised {exc_type.__name__}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)
