"""Recording: the transparent proxy (`codex-cassette record`) and in-process tee.

The proxy sits where a client would start ``codex app-server``. It forwards
raw chunks both ways the moment they arrive (a thread per direction for a
local server, harness.record.hop; event-loop tasks for a remote one) and hands a copy
to a recorder task, which alone splits lines, parses, redacts and writes, and
does so when the wire is quiet: recording never delays the wire.
``RecordingHandle`` does the same for a process handle a driver launched
itself (optio's host layer), without a wrapper binary.

A cassette is marked ``complete: true`` only when the session ended the clean
way: the client closed its stdin, the server closed its stdout and exited with
code 0, the client was still there to read everything, and no signal was
forwarded. Anything else (a killed client, a killed or crashing server, a
signalled proxy) still leaves a loadable cassette, with ``complete: false``
and the reason in ``meta.end``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from harness.format.writer import CassetteWriter

from harness.errors import HarnessError
from harness.record.hop import CHUNK, Hop
from harness.format.placeholders import Placeholders
from harness.format.redact import Redactor
from harness.record.process import PeerProcess, open_local_process, signal_number
from harness.format.wire import LineSplitter
from harness.record.guard import ProviderGuard
from harness.record.quiet import QuietWire
from harness.record.stdio import _FdSink, _FdSource, _ThreadedStdout
from harness.record.tee import Tee, default_placeholders, header_meta

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
DRAIN_AFTER_EXIT = 5.0     # a grandchild may hold the child's pipes open
CLIENT_GONE_GRACE = 10.0   # the client vanished: give the server this long to notice
RECORD_BATCH = 32          # lines recorded between two chances for the wire to move
# While the recorder holds the GIL, a forwarding thread waits at most this long for it.
SWITCH_INTERVAL = 0.0005



# -- the proxy -------------------------------------------------------------------


@dataclass
class ProxyResult:
    status: int | str
    cassette: Path
    complete: bool
    end: str
    error: str | None = None  # the peer's own explanation of a failed end (a lost SSH connection)


@dataclass
class RecordingProxy:
    """Forwards the client's stdio to a peer process, teeing both ways into a cassette."""

    process: PeerProcess
    writer: CassetteWriter
    placeholders: Placeholders
    redactor: Redactor
    stderr_file: Path | None = None
    client_in: Any = None    # ByteSource; default: our stdin
    client_out: Any = None   # _FdSink-like; default: our stdout
    err_out: Any = None      # default: our stderr
    signalled: list[str] = field(default_factory=list)
    client_closed: bool = False
    guard: ProviderGuard | None = None

    def __post_init__(self) -> None:
        self.tee = Tee(self.writer, self.placeholders, self.redactor)
        # Filled by the forwarding threads and the loop alike (deque appends are atomic).
        self._queue: collections.deque[tuple[str, str, Any, float]] = collections.deque()
        self._waiting: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The recorder works when the wire is quiet (harness.record.quiet).
        self._quiet = QuietWire(self.writer.now)
        self._hops_ended: dict[str, asyncio.Future[None]] = {}  # by side, set from the thread
        self._stderr_split = LineSplitter()
        self._stderr_scrub = self.redactor.line_scrubber()  # a key block spans stderr lines
        self._stderr_fh = open(self.stderr_file, "wb") if self.stderr_file else None
        self.client_gone = False

    def _put(self, side: str, what: str, data: Any = None) -> float:
        """Queue something for the recorder; safe from any thread. Returns its time."""
        t = self.writer.now()
        self._queue.append((side, what, data, t))
        waiting = self._waiting
        if waiting is not None and self._loop is not None:
            self._waiting = None
            self._loop.call_soon_threadsafe(_wake, waiting)
        return t

    async def _next(self) -> tuple[str, str, Any, float]:
        while not self._queue:
            self._waiting = self._loop.create_future()  # type: ignore[union-attr]
            if not self._queue:  # an item that came in meanwhile did not see the future
                await self._waiting
            self._waiting = None
        await self._quiet.let_burst_pass(self._queue[0][3])
        return self._queue.popleft()

    async def _recorder(self) -> None:
        while True:
            side, what, data, t = await self._next()
            if what == "stop":
                return
            if side == "stderr":
                self._stderr(data)
            elif what == "data":
                await self._record_chunk(side, data, t)
            elif what == "eof":
                self.tee.eof(side, t)
            elif what == "exit":
                self.tee.exit(data, t)

    async def _record_chunk(self, side: str, data: bytes, t: float) -> None:
        # A 256 KiB chunk can be thousands of lines; recording them in one go
        # would stall the forwarding tasks (the wire) for tens of milliseconds.
        with self.writer.batch():
            for n, _ in enumerate(self.tee.feed(side, data, t), 1):
                if n % RECORD_BATCH == 0:
                    await asyncio.sleep(0)
                    await self._quiet.let_burst_pass(t)

    def _stderr(self, data: bytes | None) -> None:
        if self._stderr_fh is None:
            return
        lines = self._stderr_split.feed(data) if data is not None else []
        tail = self._stderr_split.rest() if data is None else b""
        for line in lines:
            self._stderr_fh.write(self._stderr_scrub.scrub_bytes(line) + b"\n")
        if tail:
            self._stderr_fh.write(self._stderr_scrub.scrub_bytes(tail))
        self._stderr_fh.flush()

    async def _client_to_server(self) -> None:
        forwarding = True
        while True:
            chunk = await self.client_in.read(CHUNK)
            if not chunk:
                self.client_closed = True
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
                self.client_gone = True

    # -- the wire, a thread per direction (a local server with raw pipes) -------------

    def _hop_chunk(self, side: str, data: bytes) -> None:
        self._quiet.last_wire = self._put(side, "data", data)

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
                    self.client_closed = True
                    self._put("client", "eof")
                os.close(self.process.stdin_fd)  # the server's end of file, whatever ended us
            else:
                if eof:
                    self._put("server", "eof")
                    self.client_out.close()
                os.close(self.process.stdout_fd)
                if self.client_out.broken:
                    self.client_gone = True
        finally:
            self._loop.call_soon_threadsafe(_wake, self._hops_ended[side])  # type: ignore[union-attr]

    def _start_hops(self) -> tuple[Hop, Hop]:
        self._hops_ended = {side: self._loop.create_future() for side in ("client", "server")}  # type: ignore[union-attr]
        up = Hop("client", 0, self.process.stdin_fd, self._hop_chunk, self._hop_end)
        down = Hop("server", self.process.stdout_fd, 1, self._hop_chunk, self._hop_end,
                   check=self._hop_guard if self.guard is not None else None)
        self.client_out = _ThreadedStdout(down)
        return up.start(), down.start()

    async def _hop_done(self, hop: Hop) -> None:
        await asyncio.shield(self._hops_ended[hop.side])

    async def _stderr_pump(self) -> None:
        while True:
            chunk = await self.process.stderr.read(CHUNK)
            if not chunk:
                self._put("stderr", "data", None)
                return
            await self.err_out.write(chunk)
            self._put("stderr", "data", chunk)

    def _on_signal(self, name: str) -> None:
        # A client that closed stdin and then terminates its server (the openai-codex SDK's
        # close() does) has finished its session: that signal does not cut the recording short.
        if not self.client_closed:
            self.signalled.append(name)
        self.process.send_signal(name)

    @property
    def _threaded(self) -> bool:
        """Our own stdio to a local server's raw pipes: forwarded by threads."""
        return (self.client_in is None and self.client_out is None
                and getattr(self.process, "stdin_fd", None) is not None)

    async def run(self) -> ProxyResult:
        loop = self._loop = asyncio.get_running_loop()
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
        installed = []
        for name in FORWARDED_SIGNALS:
            try:
                loop.add_signal_handler(signal_number(name), self._on_signal, name)
                installed.append(name)
            except (ValueError, RuntimeError, NotImplementedError):
                pass  # not the main thread: the caller handles signals
        recorder = asyncio.create_task(self._recorder())
        if hops is None:
            up = asyncio.create_task(self._client_to_server())
            down = asyncio.create_task(self._server_to_client())
        else:
            up, down = (asyncio.create_task(self._hop_done(hop)) for hop in hops)
        err = asyncio.create_task(self._stderr_pump())
        try:
            status = await self._wait_child()
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
            self._put("server", "exit", status)
            self._put("", "stop")
            await asyncio.wait_for(recorder, 120.0)
        finally:
            for name in installed:
                loop.remove_signal_handler(signal_number(name))
            for task in (up, down, err, recorder):
                task.cancel()
            if hops is not None:
                for hop in hops:
                    hop.stop()
            sys.setswitchinterval(switch_interval)
            if self._stderr_fh:
                self._stderr_fh.close()
            close = getattr(self.process, "close", None)
            if close is not None:
                await close()
        complete, end = self._verdict(status)
        meta = self.tee.final_meta()
        meta["end"] = end
        path = self.writer.finish(complete=complete, **meta)
        error = self._peer_error() or (self.guard.violation if self.guard else None)
        return ProxyResult(status, path, complete, end, str(error) if error is not None else None)

    def _peer_error(self) -> Exception | None:
        """A remote peer (harness.record.ssh.RemoteProcess) explains a lost connection or a
        missing command in ``exit.error``; a local one has no such thing."""
        return getattr(getattr(self.process, "exit", None), "error", None)

    async def _wait_child(self) -> int | str:
        gone_since: float | None = None
        while True:
            try:
                return await self.process.wait(timeout=0.5)
            except asyncio.TimeoutError:
                pass
            if getattr(self.client_out, "hung_up", False):
                self.client_gone = True
            if self.client_gone:
                # Nobody will read the server any more; don't leave it running forever.
                now = asyncio.get_running_loop().time()
                gone_since = gone_since or now
                if now - gone_since > CLIENT_GONE_GRACE:
                    self.process.send_signal("SIGTERM" if now - gone_since < CLIENT_GONE_GRACE + 5 else "SIGKILL")

    def _verdict(self, status: int | str) -> tuple[bool, str]:
        if self.guard is not None and self.guard.violation:
            return False, self.guard.violation
        # (A WebSocket client that sent its close frame has ended its session: its hang-up then is fine.)
        if (self.client_gone or getattr(self.client_out, "hung_up", False)) and not self.tee.closed_by_frame:
            return False, "the client went away before the session ended"
        if self.signalled:
            return False, f"the recorder got {self.signalled[0]} and passed it on to the server"
        error = self._peer_error()
        if error is not None:
            return False, str(error)
        if isinstance(status, str) and not (self.client_closed and status in FORWARDED_SIGNALS):
            return False, f"the server ended by {status}"
        if "client" not in self.tee.eofs:
            return False, f"the server exited with {status} while the client was still connected"
        if "server" not in self.tee.eofs:
            return False, "the server exited without closing its stdout"
        if status != 0 and not isinstance(status, str):
            return False, f"the server exited with code {status}"
        return True, "clean"


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
                         ) -> ProxyResult:
    """Run ``argv`` behind the recording proxy on this process's stdio.

    ``open_process(argv, env, cwd)`` starts the server: a local subprocess by
    default (with raw pipes, forwarded by threads), or e.g. a remote one over
    SSH. ``meta`` is added to the header.
    """
    if open_process is None:
        open_process = functools.partial(open_local_process, raw_stdio=True)
    env = dict(os.environ if env is None else env)
    placeholders = placeholders or default_placeholders(env=env)
    redactor = redactor or Redactor.default(env=env)
    # --meta is written into the header too: scrubbed like everything else the recorder writes.
    writer = CassetteWriter(output, {**header_meta(argv, placeholders, redactor, "proxy"),
                                     **redactor.scrub(dict(meta or {}))})
    try:
        process = await open_process(list(argv), env, cwd)
    except HarnessError as exc:
        # Keep the (empty) cassette, saying why: a refused login is worth a look later too.
        writer.finish(complete=False, end=redactor.scrub(f"the server could not be started: {exc}"))
        raise
    except BaseException:
        writer.finish(complete=False, end="the server could not be started")
        raise
    proxy = RecordingProxy(process, writer, placeholders, redactor,
                           Path(stderr_file) if stderr_file else None, guard=guard)
    return await proxy.run()


