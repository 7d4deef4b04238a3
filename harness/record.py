"""Recording: the transparent proxy (`codex-cassette record`) and in-process tee.

The proxy sits where a client would start ``codex app-server``. It forwards
raw chunks both ways the moment they arrive (a thread per direction for a
local server, harness.hop; event-loop tasks for a remote one) and hands a copy
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
import math
import os
import re
import select
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from harness.cassette import CassetteWriter, Event
from harness.errors import HarnessError
from harness.hop import CHUNK, Hop, write_all
from harness.placeholders import Placeholders
from harness.redact import Redactor
from harness.transport import PeerProcess, exit_status, open_local_process, signal_number
from harness.wire import Line, LineSplitter

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
DRAIN_AFTER_EXIT = 5.0     # a grandchild may hold the child's pipes open
CLIENT_GONE_GRACE = 10.0   # the client vanished: give the server this long to notice
RECORD_BATCH = 32          # lines recorded between two chances for the wire to move
# The recorder works when the wire is quiet: it waits while chunks keep arriving
# (QUIET); once the oldest unrecorded chunk is MAX_LAG old it works anyway, in SLICEs.
QUIET = 0.002
QUIET_MAX = 0.032  # the longest pause between two looks at a busy wire
MAX_LAG = 2.0
SLICE = 0.0005  # then QUIET's pause: a stale backlog takes about a fifth of a core
# While the recorder holds the GIL, a forwarding thread waits at most this long for it.
SWITCH_INTERVAL = 0.0005
_VERSION_RE = re.compile(r"/(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)")


_PROVIDER_RE = re.compile(rb'"modelProvider"\s*:\s*"([^"]*)"')


@dataclass
class ProviderGuard:
    """Stops a recording the moment codex says it talks to another model provider.

    An invalid config.toml makes codex fall back, silently, to the real OpenAI
    provider: recording offline against the mock must never go on from there
    (the next turn would try the internet). thread/start's and thread/resume's
    answers name the provider; the guard reads server bytes before the client
    gets them, line by line, so what came before the offending line still goes out.
    """

    required: str
    violation: str | None = None
    _tail: bytes = b""  # the unfinished last line of what was checked so far

    def safe_prefix(self, data: bytes) -> int:
        """How many bytes of ``data`` may be forwarded: all of them, or those before the
        line naming another provider (then ``violation`` says which)."""
        seen = self._tail + data
        self._tail = seen[seen.rfind(b"\n") + 1:][-(1 << 20):]
        if b'"modelProvider"' not in seen:
            return len(data)
        for found in _PROVIDER_RE.finditer(seen):
            name = found.group(1).decode("utf-8", "replace")
            if name != self.required:
                self.violation = (f"codex reports model provider {name!r}, not {self.required!r}: its config "
                                  "was not taken (an invalid config.toml makes codex fall back to the real "
                                  "OpenAI provider), so it was stopped before it could reach the internet.")
                line_start = seen.rfind(b"\n", 0, found.start()) + 1
                return max(0, line_start - (len(seen) - len(data)))
        return len(data)

    def check(self, data: bytes) -> bool:
        return self.safe_prefix(data) == len(data) and self.violation is None


def default_placeholders(extra: Mapping[str, str] | None = None,
                         env: Mapping[str, str] | None = None) -> Placeholders:
    """cwd, home and codex_home (when set), plus the user's; trivial values are skipped
    because templatizing "/" would rewrite every path."""
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    for name, value in (("cwd", os.getcwd()), ("home", env.get("HOME", "")),
                        ("codex_home", env.get("CODEX_HOME", ""))):
        if value and len(value.rstrip("/")) > 1:
            values[name] = value.rstrip("/")
    values.update(extra or {})
    return Placeholders(values)


def _templatize_bytes(placeholders: Placeholders, data: bytes) -> bytes:
    pairs = sorted(((v.encode(), n) for n, v in placeholders.values.items() if v), key=lambda p: -len(p[0]))
    for value, name in pairs:
        if value in data:
            data = data.replace(value, b"{{" + name.encode() + b"}}")
    return data


class Tee:
    """Turns wire bytes into cassette events: split, parse, redact, templatize.

    Also notes what the header wants to know (client info, codex version).
    """

    def __init__(self, writer: CassetteWriter, placeholders: Placeholders, redactor: Redactor) -> None:
        self.writer = writer
        self.placeholders = placeholders
        self.redactor = redactor
        self._splitters = {"client": LineSplitter(), "server": LineSplitter()}
        self.eofs: set[str] = set()
        self.client_info: dict[str, Any] | None = None
        self.codex_version: str | None = None
        self._init_id: Any = None

    def chunk(self, side: str, data: bytes, t: float) -> None:
        for line in self.split(side, data):
            self.line(side, Line(line), t)

    def split(self, side: str, data: bytes) -> list[bytes]:
        """The complete lines a chunk finishes (a partial tail waits for the next)."""
        return self._splitters[side].feed(data)

    def items(self, side: str, item: bytes | str, t: float) -> None:
        """One item of a line iterator (with or without its newline)."""
        data = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else bytes(item)
        parts = data.split(b"\n")
        if parts[-1] == b"" and len(parts) > 1:
            parts.pop()
        for part in parts:
            self.line(side, Line(part), t)

    def eof(self, side: str, t: float) -> None:
        if side in self.eofs:
            return
        rest = self._splitters[side].rest()
        if rest:
            self.line(side, Line(rest, newline=False), t)
        self.eofs.add(side)
        self.writer.write(Event(side=side, t=t, eof=True))

    def exit(self, status: int | str, t: float) -> None:
        self.writer.write(Event(side="server", t=t, exit=status))

    def line(self, side: str, line: Line, t: float) -> None:
        msg, ok = line.parse()
        if ok and isinstance(msg, dict):
            source = line.data.decode("utf-8", "replace")
            kept = self.redactor.scrub(msg, source)
            self._notice(side, kept)
            if "\\u" in source or any(v and v in source for v in self.placeholders.values.values()):
                kept = self.placeholders.templatize(kept)
            if kept is msg:  # nothing to hide or generalise: keep the peer's own bytes
                self.writer.write_verbatim(side, t, line.data, line.newline)
            else:
                self.writer.write(Event(side=side, t=t, msg=kept, newline=line.newline))
            return
        raw = self.redactor.scrub_bytes(line.data)
        try:
            raw = self.placeholders.templatize(raw.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            raw = _templatize_bytes(self.placeholders, raw)
        self.writer.write(Event(side=side, t=t, raw=raw, newline=line.newline))

    def _notice(self, side: str, msg: dict[str, Any]) -> None:
        if side == "client" and msg.get("method") == "initialize" and self.client_info is None:
            params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
            info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
            self.client_info = {k: info[k] for k in ("name", "version") if k in info}
            self._init_id = msg.get("id")
        elif side == "server" and self._init_id is not None and msg.get("id") == self._init_id:
            result = msg.get("result") if isinstance(msg.get("result"), dict) else {}
            found = _VERSION_RE.search(str(result.get("userAgent", "")))
            if found:
                self.codex_version = found.group(1)

    def final_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"redactions": sorted(self.redactor.applied)}
        if self.client_info:
            meta["client"] = self.client_info
        if self.codex_version:
            meta["codex_version"] = self.codex_version
        return meta


def header_meta(argv: Sequence[str], placeholders: Placeholders, redactor: Redactor,
                recorder: str) -> dict[str, Any]:
    return {
        "recorder": recorder,
        "command": placeholders.templatize(redactor.scrub(list(argv))),
        "placeholders": sorted(placeholders.values),
        "redactions": [],
    }


# -- the proxy's own stdio -------------------------------------------------------


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
        self._last_wire = -math.inf  # when a forwarding thread last moved a chunk
        self._hops_ended: dict[str, asyncio.Future[None]] = {}  # by side, set from the thread
        self._slice_start = -math.inf  # when the recorder's current slice of stale work began
        self._stderr_split = LineSplitter()
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
        await self._let_burst_pass(self._queue[0][3])
        return self._queue.popleft()

    async def _let_burst_pass(self, oldest: float) -> None:
        """Wait while a forwarding thread is streaming, so recording does not take the CPU
        (and the GIL) the wire needs. Once what waits to be recorded (since ``oldest``) is
        stale, record anyway, but in slices with pauses between them, so a long stream
        still gets most of the machine."""
        pause = QUIET
        while True:
            now = self.writer.now()
            if now - self._last_wire >= QUIET:
                return
            if now - oldest >= MAX_LAG:
                if now - self._slice_start < SLICE:
                    return
                await asyncio.sleep(QUIET)
                self._slice_start = self.writer.now()
                return
            await asyncio.sleep(pause)
            # A long burst: look less often (each look takes the GIL from the wire).
            pause = min(pause * 2, QUIET_MAX)

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
            for n, line in enumerate(self.tee.split(side, data), 1):
                self.tee.line(side, Line(line), t)
                if n % RECORD_BATCH == 0:
                    await asyncio.sleep(0)
                    await self._let_burst_pass(t)

    def _stderr(self, data: bytes | None) -> None:
        if self._stderr_fh is None:
            return
        lines = self._stderr_split.feed(data) if data is not None else []
        tail = self._stderr_split.rest() if data is None else b""
        for line in lines:
            self._stderr_fh.write(self.redactor.scrub_bytes(line) + b"\n")
        if tail:
            self._stderr_fh.write(self.redactor.scrub_bytes(tail))
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
        self._last_wire = self._put(side, "data", data)

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
        """A remote peer (harness.ssh.RemoteProcess) explains a lost connection or a
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
        if self.client_gone or getattr(self.client_out, "hung_up", False):
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
    writer = CassetteWriter(output, {**header_meta(argv, placeholders, redactor, "proxy"), **(meta or {})})
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


# -- in-process recording --------------------------------------------------------


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
                 guard: ProviderGuard | None = None) -> None:
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
                                                               self.redactor, "in-process"))
        self.tee = Tee(self.writer, self.placeholders, self.redactor)
        self.stdin = _RecordingStdin(handle.stdin, self) if handle.stdin is not None else None
        self.stdout = _RecordingStdout(handle.stdout, self)

    def _eof(self, side: str) -> None:
        if not self.writer._closed:
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

    def finish(self, *, complete: bool = True, exit: int | str | None = None) -> Path:
        """Write the cassette. The exit status is taken from the handle when it has one."""
        if exit is None:
            code = self._returncode()
            exit = exit_status(code) if code is not None else None
        if exit is not None and not self.writer._closed:
            self.tee.exit(exit, self.writer.now())
        meta = self.tee.final_meta()
        if self.guard is not None and self.guard.violation:
            complete, meta["end"] = False, self.guard.violation
        return self.writer.finish(complete=complete, **meta)

    async def __aenter__(self) -> "RecordingHandle":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(complete=exc_type is None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)
