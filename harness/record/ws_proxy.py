"""Recording a codex that listens on a socket: `record --listen URL -- codex app-server --listen ...`.

The recorder starts codex, learns where it listens (the ws banner on codex's
stderr, or the unix path of its command line, once it accepts), listens where the
client connects, and prints codex's banner for its own address (codex's own
banner, which names codex's port, is not passed on). Each accepted connection is
forwarded byte for byte to a connection of its own to codex (auth headers,
pings, close frames, /readyz probes all pass as they are), and each direction's
copy is read as WebSocket (harness.record.ws_tee). A connection whose upgrade
codex accepts is a session with a cassette of its own: the first NAME.jsonl,
then NAME.2.jsonl, ... in the order the upgrades were accepted.

A session is ``complete`` when it ended by a close frame and both sides ended;
a connection dropped by either side, or cut by codex's end or a signal, is
recorded as it happened (an eof without close frame; codex's exit) and marked
``complete: false`` with the reason.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import HarnessError
from harness.format.placeholders import Placeholders
from harness.format.redact import Redactor
from harness.format.writer import CassetteWriter
from harness.record.guard import ProviderGuard
from harness.record.listen import (ListenAddress, claim_socket_path, is_banner_line, listen_arg,
                                   listening_url, remove_socket_path)
from harness.format.connections import connection_path
from harness.record.child import exit_status, signal_number
from harness.record.ending import FORWARDED_SIGNALS
from harness.record.process import LocalProcess, open_local_process
from harness.record.quiet import QuietWire
from harness.record.recorder import open_stderr_copy
from harness.record.tee import header_meta
from harness.record.ws_connection import ProxiedConnection

READY_TIMEOUT = 30.0    # codex's start, up to its banner or its socket
EXIT_LINK = 1.0         # a session codex dropped waits this long for codex's exit, to record it
DRAIN_AFTER_EXIT = 5.0  # after codex exits: how long open sessions get to end
# While the recorder holds the GIL, a forwarding thread waits at most this long for it.
SWITCH_INTERVAL = 0.0005


@dataclass
class SocketRecorder:
    """codex behind a recording socket proxy: one cassette per session."""

    argv: list[str]
    output: Path
    listen: ListenAddress
    placeholders: Placeholders
    redactor: Redactor
    env: dict[str, str]
    cwd: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    guard: ProviderGuard | None = None
    stderr_file: Path | None = None
    sessions: list[ProxiedConnection] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    process: LocalProcess | None = None
    signalled: str | None = None
    signalled_at: float | None = None  # (time.monotonic)
    status: int | str | None = None  # codex's exit
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _exit: asyncio.Future | None = None
    quiet: QuietWire = field(default_factory=lambda: QuietWire(time.monotonic))
    fresh: bool = False                 # a session's cassette does not keep the old one's unchanged lines
    volatile: Sequence[str] = ()        # more values a re-record does not compare

    def __post_init__(self) -> None:
        self.upstream = listen_arg(self.argv)
        if not self.upstream.is_socket:
            raise HarnessError(f"--listen {self.listen.url}: the command after `--` must listen on a socket too "
                               "(add `--listen ws://127.0.0.1:0` or `--listen unix://PATH` to it); it speaks stdio")
        if self.upstream.scheme != self.listen.scheme:
            raise HarnessError(f"--listen {self.listen.url} and the command's --listen {self.upstream.url} must be "
                               "the same kind of socket (ws or unix)")
        # The same copy as the stdio recorder's: 0600, redacted across lines, a bad path said first.
        self._stderr_copy = open_stderr_copy(self.stderr_file, self.redactor) if self.stderr_file else None

    def new_session(self) -> tuple[int, CassetteWriter]:
        number = len(self.written) + 1
        path = connection_path(self.output, number)
        self.written.append(path)
        header = {**header_meta(self.argv, self.placeholders, self.redactor, "proxy"), **self.meta,
                  "transport": self.listen.scheme, "connection": number}
        return number, CassetteWriter(path, header, fresh=self.fresh, volatile=self.volatile)

    def kill_codex(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal("SIGKILL")

    # -- codex's start ------------------------------------------------------------------

    async def _pass_stderr(self, banner: bool) -> str | None:
        """Copy codex's stderr to ours (and the stderr file, redacted), leaving out its banner;
        with ``banner``, return as soon as it names codex's address (None at its end)."""
        assert self.process is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                return None
            text = line.decode("utf-8", "replace")
            if is_banner_line(text):
                url = listening_url(text)
                if banner and url is not None:
                    return url
                continue
            sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()
            if self._stderr_copy is not None:
                self._stderr_copy.feed(line)

    async def _upstream(self) -> ListenAddress:
        """Where codex accepts connections, once it does."""
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        if self.upstream.scheme == "ws":
            try:
                url = await asyncio.wait_for(self._pass_stderr(banner=True), READY_TIMEOUT)
            except asyncio.TimeoutError:
                url = None
            if url is None and self.signalled:
                raise HarnessError(f"stopped by {self.signalled} before codex listened")
            if url is None:
                raise HarnessError(self._not_ready(f"it printed no `listening on: ws://...` line in {READY_TIMEOUT:g} s"))
            return ListenAddress.parse(url)
        path = self.upstream.socket_path(self.env)
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                break
            try:
                _, writer = await asyncio.open_unix_connection(str(path))
                writer.close()
                return self.upstream
            except OSError:
                await asyncio.sleep(0.02)
        raise HarnessError(self._not_ready(f"nothing accepted connections on unix://{path} in {READY_TIMEOUT:g} s"))

    def _not_ready(self, why: str) -> str:
        code = self.process.returncode if self.process is not None else None
        ended = f"; it exited with {exit_status(code)}" if code is not None else ""
        return f"codex did not start listening: {why}{ended} (its stderr is above)"

    # -- the client side ------------------------------------------------------------------

    def _listener(self) -> socket.socket:
        if self.listen.scheme == "ws":
            family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
            listener = socket.create_server((self.listen.host, self.listen.port), family=family)
        else:
            path = self.listen.socket_path(self.env)
            claim_socket_path(path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(64)
        listener.setblocking(False)
        return listener

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(listener)
            client.setblocking(True)  # the hops read and write it blocking
            conn = ProxiedConnection(self, client, loop)
            self.sessions.append(conn)
            task = asyncio.ensure_future(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: ProxiedConnection) -> None:
        loop = asyncio.get_running_loop()
        target = self._target
        family = socket.AF_UNIX if target.scheme == "unix" else (
            socket.AF_INET6 if ":" in target.host else socket.AF_INET)
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setblocking(False)
        address: Any = str(target.socket_path(self.env)) if target.scheme == "unix" else (target.host, target.port)
        try:
            await loop.sock_connect(server, address)
        except OSError:
            server.close()
            conn.close()  # codex is gone: as a refused connection
            return
        server.setblocking(True)
        conn.start(server)
        try:
            await conn.record()
            await self._finish_session(conn)
        finally:
            conn.close()

    async def _finish_session(self, conn: ProxiedConnection) -> None:
        if conn.tee is None:
            return  # no session (a /readyz probe, a refused upgrade)
        if conn.feed.first_close is None and conn.first_end == "server" and self._exit is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), EXIT_LINK)
            except asyncio.TimeoutError:
                pass
        code = self._exit.result() if self._exit is not None and self._exit.done() else None
        if code is not None and conn.feed.first_close is None:
            conn.tee.exit(code, time.monotonic() - conn.t0)
        complete, end = conn.verdict(code, self.signalled, self.signalled_at)
        conn.tee.finish(complete, end)

    def _on_signal(self, name: str) -> None:
        if self.signalled is None:
            self.signalled, self.signalled_at = name, time.monotonic()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(name)

    # -- the whole run ----------------------------------------------------------------------

    async def run(self) -> int | str:
        loop = asyncio.get_running_loop()
        self._exit = loop.create_future()
        self.process = await open_local_process(self.argv, self.env, self.cwd)
        installed = []
        for name in FORWARDED_SIGNALS:
            try:
                loop.add_signal_handler(signal_number(name), self._on_signal, name)
                installed.append(name)
            except (ValueError, RuntimeError, NotImplementedError):
                pass
        listener = None
        accepting = None
        own_path = self.listen.socket_path(self.env) if self.listen.scheme == "unix" else None
        waiter = asyncio.ensure_future(self._wait_exit())
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL))
        try:
            self._target = await self._upstream()
            listener = self._listener()
            accepting = asyncio.ensure_future(self._accept(listener))
            if self.listen.scheme == "ws":
                bound = self.listen.with_port(listener.getsockname()[1])
                sys.stderr.write("\n".join(bound.banner()) + "\n")
                sys.stderr.flush()
            pumps = [asyncio.ensure_future(self._pass_stderr(banner=False)),
                     asyncio.ensure_future(self._pass_stdout())]
            self.status = await waiter
            accepting.cancel()
            await asyncio.wait(pumps, timeout=DRAIN_AFTER_EXIT)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=DRAIN_AFTER_EXIT)
            for conn in self.sessions:
                conn.stop()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=1.0)
            for task in list(self._tasks) + pumps:
                task.cancel()
        finally:
            sys.setswitchinterval(switch_interval)
            for name in installed:
                loop.remove_signal_handler(signal_number(name))
            if accepting is not None:
                accepting.cancel()
            if listener is not None:
                listener.close()
                if own_path is not None:
                    remove_socket_path(own_path)
            if self.process.returncode is None:
                self.process.send_signal("SIGTERM")
            if not waiter.done():
                await asyncio.wait({waiter}, timeout=5.0)
            self._finish_left_open()
            if self._stderr_copy is not None:
                self._stderr_copy.feed(None)
                self._stderr_copy.close()
        self._drop_stale_sessions()
        return self.status  # type: ignore[return-value]

    async def _wait_exit(self) -> int | str:
        assert self.process is not None
        status = await self.process.wait()
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(status)
        return status

    async def _pass_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := await self.process.stdout.read(1 << 16):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()

    def _finish_left_open(self) -> None:
        """Sessions still open when we end (their recording task was cut) are written as they stand."""
        code = self._exit.result() if self._exit is not None and self._exit.done() else None
        for conn in self.sessions:
            if conn.tee is not None and not conn.tee.writer.closed:
                _, end = conn.verdict(code, self.signalled, self.signalled_at)
                conn.tee.finish(False, end if end != "clean" else "the recorder ended before the session did")

    def _drop_stale_sessions(self) -> None:
        """A re-recording with fewer sessions than the last one: the extra NAME.k.jsonl go."""
        if not self.written:
            return
        k = len(self.written) + 1
        while connection_path(self.output, k).is_file():
            os.unlink(connection_path(self.output, k))
            k += 1


async def record_socket(argv: Sequence[str], output: str | Path, listen: ListenAddress, *,
                        placeholders: Placeholders, redactor: Redactor, env: Mapping[str, str],
                        cwd: str | None = None, meta: Mapping[str, Any] | None = None,
                        guard: ProviderGuard | None = None, stderr_file: str | Path | None = None,
                        fresh: bool = False, volatile: Sequence[str] = ()) -> SocketRecorder:
    """Run ``argv`` (a codex listening on a socket) behind the recorder listening at ``listen``."""
    recorder = SocketRecorder(list(argv), Path(output), listen, placeholders, redactor, dict(env), cwd,
                              dict(meta or {}), guard, Path(stderr_file) if stderr_file else None,
                              fresh=fresh, volatile=tuple(volatile))
    await recorder.run()
    return recorder
