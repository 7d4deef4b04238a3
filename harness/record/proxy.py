"""The transparent recording proxy (`codex-cassette record`).

The proxy sits where a client would start ``codex app-server``. It forwards
raw chunks both ways the moment they arrive (a thread per direction for a
local server, harness.record.hop; event-loop tasks for a remote one) and puts
a copy of each into the spool of its recorder process (harness.record.recorder),
which alone splits lines, parses, redacts and writes, when the wire is quiet:
recording never delays the wire, and what was forwarded survives the proxy.

Endings (harness.record.ending): the proxy's signal handlers are in place before
the server starts and stay until the cassette is finished. A SIGINT, SIGTERM or
SIGHUP is passed on to the server by its pid; it cuts the recording short only
if the client had not hung up when it came (the kernel says so at that moment:
our stdin polls as hung up), so a client that closes stdin and at once
terminates its server (the openai-codex SDK's ``close()``) records a clean end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from harness.errors import HarnessError
from harness.format.placeholders import Placeholders
from harness.format.redact import Redactor
from harness.format.writer import CassetteWriter
from harness.record.ending import FORWARDED_SIGNALS, Ending, ExitStatus
from harness.record.guard import ProviderGuard
from harness.record.hop import CHUNK, Hop
from harness.record.child import signal_number
from harness.record.process import PeerProcess, open_local_process
from harness.record.recorder import RecorderProcess, RecorderResult, open_stderr_copy, start_recorder
from harness.record.stdio import _FdSink, _FdSource, _ThreadedStdout, client_hung_up
from harness.record.tee import Tee, default_placeholders, header_meta

DRAIN_AFTER_EXIT = 5.0     # a grandchild may hold the child's pipes open
CLIENT_GONE_GRACE = 10.0   # the client vanished: give the server this long to notice
ANSWER_WAIT = 600.0        # the recorder may have a long backlog to write; never forever
# While another thread holds the GIL, a forwarding thread waits at most this long for it.
SWITCH_INTERVAL = 0.0005


@dataclass
class ProxyResult:
    status: ExitStatus
    cassette: Path
    complete: bool
    end: str
    error: str | None = None        # the peer's own explanation of a failed end (a lost SSH connection)
    write_error: str | None = None  # one paragraph: the cassette (or stderr copy) could not be written


@dataclass
class ProxySignals:
    """SIGINT/SIGTERM/SIGHUP for the proxy: each goes on to the server (or waits for it to
    start), and is noted as cutting the recording short unless the client had hung up."""

    ending: Ending
    process: PeerProcess | None = None
    pending: list[str] = field(default_factory=list)
    _installed: list[str] = field(default_factory=list)

    def install(self) -> "ProxySignals":
        loop = asyncio.get_running_loop()
        for name in FORWARDED_SIGNALS:
            try:
                loop.add_signal_handler(signal_number(name), self._on_signal, name)
                self._installed.append(name)
            except (ValueError, RuntimeError, NotImplementedError):
                pass  # not the main thread: the caller handles signals
        return self

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for name in self._installed:
            loop.remove_signal_handler(signal_number(name))
        self._installed = []

    def started(self, process: PeerProcess) -> None:
        self.process = process
        for name in self.pending:
            process.send_signal(name)
        self.pending = []

    def _on_signal(self, name: str) -> None:
        if not (self.ending.client_closed or client_hung_up(0)):
            self.ending.signals.append(name)
        if self.process is None:
            self.pending.append(name)
        else:
            self.process.send_signal(name)


@dataclass
class RecordingProxy:
    """Forwards the client's stdio to a peer process, its recorder taking a copy of everything."""

    process: PeerProcess
    recorder: RecorderProcess
    writer: CassetteWriter            # handed over to the recorder: for its clock and paths only
    ending: Ending = field(default_factory=Ending)
    client_in: Any = None    # ByteSource; default: our stdin
    client_out: Any = None   # _FdSink-like; default: our stdout
    err_out: Any = None      # default: our stderr
    guard: ProviderGuard | None = None

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hops_ended: dict[str, asyncio.Future[None]] = {}  # by side, set from the thread

    def _put(self, side: str, kind: str, payload: bytes = b"") -> None:
        """Into the recorder's spool; safe from any thread."""
        if kind == "eof" and side == "client":
            self.ending.client_closed = True
        elif kind == "eof" and side == "server":
            self.ending.server_closed = True
        self.recorder.put(side, kind, self.writer.now(), payload)

    # -- the wire, event-loop tasks (a remote server) ----------------------------------

    async def _client_to_server(self) -> None:
        forwarding = True
        while True:
            chunk = await self.client_in.read(CHUNK)
            if not chunk:
                self._put("client", "eof")
                if forwarding:
                    try:
                        await self.process.stdin.close()
                    except OSError:
                        pass
                return
            self._put("client", "data", chunk)
            if forwarding:
                try:
                    await self.process.stdin.write(chunk)
                except OSError:
                    forwarding = False  # the server stopped reading; keep recording the client

    async def _server_to_client(self) -> None:
        while True:
            chunk = await self.process.stdout.read(CHUNK)
            if not chunk:
                self._put("server", "eof")
                await self.client_out.close()
                return
            if self.guard is not None:
                safe = self.guard.safe_prefix(chunk)
                if self.guard.violation:
                    self.process.send_signal("SIGKILL")
                    if safe:
                        self._put("server", "data", chunk[:safe])
                        await self.client_out.write(chunk[:safe])
                    self._put("server", "eof")
                    await self.client_out.close()
                    return
            self._put("server", "data", chunk)
            await self.client_out.write(chunk)
            if self.client_out.broken:
                self.ending.client_gone = True

    # -- the wire, a thread per direction (a local server with raw pipes) -------------

    def _hop_chunk(self, side: str, data: bytes) -> None:
        self._put(side, "data", data)

    def _hop_guard(self, data: bytes) -> int:
        assert self.guard is not None
        allowed = self.guard.safe_prefix(data)
        if self.guard.violation:
            self._loop.call_soon_threadsafe(self.process.send_signal, "SIGKILL")  # type: ignore[union-attr]
        return allowed

    def _hop_end(self, side: str, eof: bool) -> None:
        try:
            if side == "client":
                if eof:
                    self._put("client", "eof")
                os.close(self.process.stdin_fd)  # type: ignore[attr-defined]  # the server's end of file
            else:
                if eof:
                    self._put("server", "eof")
                    self.client_out.close()
                os.close(self.process.stdout_fd)  # type: ignore[attr-defined]
                if self.client_out.broken:
                    self.ending.client_gone = True
        finally:
            self._loop.call_soon_threadsafe(_wake, self._hops_ended[side])  # type: ignore[union-attr]

    def _start_hops(self) -> tuple[Hop, Hop]:
        self._hops_ended = {side: self._loop.create_future() for side in ("client", "server")}  # type: ignore[union-attr]
        up = Hop("client", 0, self.process.stdin_fd, self._hop_chunk, self._hop_end)  # type: ignore[attr-defined]
        down = Hop("server", self.process.stdout_fd, 1, self._hop_chunk, self._hop_end,  # type: ignore[attr-defined]
                   check=self._hop_guard if self.guard is not None else None)
        self.client_out = _ThreadedStdout(down)
        return up.start(), down.start()

    async def _hop_done(self, hop: Hop) -> None:
        await asyncio.shield(self._hops_ended[hop.side])

    async def _stderr_pump(self) -> None:
        while True:
            chunk = await self.process.stderr.read(CHUNK)
            if not chunk:
                if self.recorder.copies_stderr:
                    self._put("stderr", "eof")
                return
            await self.err_out.write(chunk)
            if self.recorder.copies_stderr:  # else nothing reads it: spooling it would only cost memory
                self._put("stderr", "data", chunk)

    @property
    def _threaded(self) -> bool:
        """Our own stdio to a local server's raw pipes: forwarded by threads."""
        return (self.client_in is None and self.client_out is None
                and getattr(self.process, "stdin_fd", None) is not None)

    async def run(self) -> ProxyResult:
        """Forward until the server has exited and both directions are drained; then the
        recorder gets the verdict and finishes the cassette."""
        self._loop = asyncio.get_running_loop()
        hops: tuple[Hop, Hop] | None = None
        switch_interval = sys.getswitchinterval()
        if self._threaded:
            sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL))
            hops = self._start_hops()
        if self.client_in is None and hops is None:
            self.client_in = await _FdSource(0).open()
        if self.client_out is None:
            self.client_out = await _FdSink(1).open()
        if self.err_out is None:
            self.err_out = await _FdSink(2).open()
        if hops is None:
            up = asyncio.create_task(self._client_to_server())
            down = asyncio.create_task(self._server_to_client())
        else:
            up, down = (asyncio.create_task(self._hop_done(hop)) for hop in hops)
        err = asyncio.create_task(self._stderr_pump())
        status: ExitStatus | None = None
        try:
            try:
                status = await self._wait_child()
            except HarnessError as exc:  # the status cannot be known (the ending says so)
                self.ending.stopped = str(exc)
            done, pending = await asyncio.wait({down, err}, timeout=DRAIN_AFTER_EXIT)
            for task in pending:
                task.cancel()
            if not up.done():
                # A client that keeps its stdin open past the server's exit: stop listening.
                await asyncio.sleep(0)
                up.cancel()
            await asyncio.gather(up, down, err, return_exceptions=True)
            if hops is not None:
                for hop in hops:
                    hop.stop()
                # A stopped hop ends at its next poll, unless it is stuck writing to a
                # client that never reads: that one is left behind (a daemon thread).
                waits = [asyncio.create_task(self._hop_done(hop)) for hop in hops]
                await asyncio.wait(waits, timeout=5.0)
                for task in waits:
                    task.cancel()
        finally:
            for task in (up, down, err):
                task.cancel()
            if hops is not None:
                for hop in hops:
                    hop.stop()
            sys.setswitchinterval(switch_interval)
            close = getattr(self.process, "close", None)
            if close is not None:
                await close()
        self.ending.status = status
        if getattr(self.client_out, "hung_up", False):
            self.ending.client_gone = True
        error = self._peer_error()
        if self.guard is not None and self.guard.violation:
            self.ending.stopped = self.guard.violation
        elif error is not None:
            self.ending.stopped = str(error)
        if status is not None:
            self._put("server", "exit", json.dumps(status).encode())
        complete, end = self.ending.verdict()
        # Only the recorder reads the frames: a WebSocket client that sent its close frame had
        # ended its session, so its hang-up then is fine (harness.record.recorder decides).
        framed = dataclasses.replace(self.ending, client_gone=False).verdict()
        answer = await self._answer(complete, end, framed)
        failed = error or (self.guard.violation if self.guard else None)
        return ProxyResult(status if status is not None else "unknown", Path(answer.cassette), answer.complete,
                           answer.end, str(failed) if failed is not None else None, answer.write_error)

    async def _answer(self, complete: bool, end: str, framed: tuple[bool, str] | None = None) -> RecorderResult:
        failure = self.recorder.failure
        if failure is not None:
            complete, end = False, (f"recording stopped early: the recorder's spool could not take more "
                                    f"({failure.strerror or failure}); the session went on")
            framed = None
        self.recorder.end(complete, end, framed)
        answer = await self.recorder.answer(self.writer, ANSWER_WAIT)
        if failure is not None and answer.write_error is None:  # else the writer's own words say it
            answer.write_error = (f"could not keep recording {self.writer.path} ({failure.strerror or failure}); "
                                  f"the session went on unchanged. What was recorded up to then is in "
                                  f"{answer.cassette} (complete: false).")
        return answer

    def _peer_error(self) -> Exception | None:
        """A remote peer (harness.record.ssh.RemoteProcess) explains a lost connection or a
        missing command in ``exit.error``; a local one has no such thing."""
        return getattr(getattr(self.process, "exit", None), "error", None)

    async def _wait_child(self) -> ExitStatus:
        gone_since: float | None = None
        while True:
            try:
                return await self.process.wait(timeout=0.5)
            except asyncio.TimeoutError:
                pass
            if getattr(self.client_out, "hung_up", False):
                self.ending.client_gone = True
            if self.ending.client_gone:
                # Nobody will read the server any more; don't leave it running forever.
                now = asyncio.get_running_loop().time()
                gone_since = gone_since or now
                if now - gone_since > CLIENT_GONE_GRACE:
                    self.process.send_signal("SIGTERM" if now - gone_since < CLIENT_GONE_GRACE + 5 else "SIGKILL")


def _wake(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)


async def record_command(argv: Sequence[str], output: str | Path, *,
                         placeholders: Placeholders | None = None, redactor: Redactor | None = None,
                         stderr_file: str | Path | None = None, env: Mapping[str, str] | None = None,
                         cwd: str | None = None,
                         open_process: Callable[..., Awaitable[PeerProcess]] | None = None,
                         meta: Mapping[str, Any] | None = None,
                         guard: ProviderGuard | None = None,
                         fresh: bool = False, volatile: Sequence[str] = (),
                         ) -> ProxyResult:
    """Run ``argv`` behind the recording proxy on this process's stdio.

    ``open_process(argv, env, cwd)`` starts the server: a local subprocess by
    default (with raw pipes, forwarded by threads), or e.g. a remote one over
    SSH. ``meta`` is added to the header. The cassette path and the stderr copy
    are checked (and the recorder started) before the server is.
    """
    if open_process is None:
        open_process = functools.partial(open_local_process, raw_stdio=True)
    env = dict(os.environ if env is None else env)
    placeholders = placeholders or default_placeholders(env=env)
    redactor = redactor or Redactor.default(env=env)
    # --meta is written into the header too: scrubbed like everything else the recorder writes.
    writer = CassetteWriter(output, {**header_meta(argv, placeholders, redactor, "proxy"),
                                     **redactor.scrub(dict(meta or {}))},
                            fresh=fresh, volatile=volatile)
    try:
        stderr_copy = open_stderr_copy(stderr_file, redactor) if stderr_file else None
    except HarnessError:
        writer.discard()
        raise
    recorder = start_recorder(writer, Tee(writer, placeholders, redactor), stderr_copy)
    signals = ProxySignals(Ending()).install()
    try:
        try:
            process = await open_process(list(argv), env, cwd)
        except HarnessError as exc:
            # Keep the (empty) cassette, saying why: a refused login is worth a look later too.
            recorder.end(False, redactor.scrub(f"the server could not be started: {exc}"))
            await recorder.answer(writer, ANSWER_WAIT)
            raise
        signals.started(process)
        proxy = RecordingProxy(process, recorder, writer, signals.ending, guard=guard)
        return await proxy.run()
    finally:
        signals.remove()
