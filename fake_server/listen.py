"""Serving cassettes on a socket, as `codex app-server --listen ws://IP:PORT | unix://PATH` would.

WebSocket on TCP or on a Unix socket (websockets' threading server: no event loop,
as on stdio). Each accepted WebSocket connection is a session: connection k plays
``NAME.k.jsonl`` (the first ``NAME.jsonl``) when the cassette has such siblings,
else every connection plays the one cassette. Each session writes its own report
(``report-PID.json`` becomes ``report-PID.K.json``); the listener keeps
``report-PID.json`` (``running`` while it serves) and, at the end, names the
sessions no client came for.

As codex does: the ws banner on stderr once listening, 200 on ``/readyz`` and
``/healthz``, no permessage-deflate; on unix the extra upgrade header, and a
path in use is refused. A SIGTERM or SIGINT drops every open connection without
a close frame (codex's way) and ends the process with code 0, or DIVERGED_EXIT
when a session failed.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.format.load import open_cassette
from harness.format.connections import connection_path
from harness.record.listen import UNIX_UPGRADE_HEADERS, ListenAddress, claim_socket_path, remove_socket_path
from harness.replay.channel import Stopped, run_sync
from harness.replay.divergence import closed_otherwise
from harness.replay.engine import DIVERGED_EXIT, ReplayEngine
from harness.replay.options import ReplayOptions
from harness.replay.report import Divergence, ReplayReport
from harness.replay.ws_channel import WebSocketChannel

from fake_server.serve import client_pid, write_report

HEALTH_PATHS = ("/readyz", "/healthz")
CLOSE_TIMEOUT = 2.0   # the closing handshake a session's end waits for
STOP_GRACE = 5.0      # how long the sessions get to end after a stop
SETTLE = 1.0          # a session only waiting for its client's close (already on its way) gets this long


_OPENING: "weakref.WeakSet[Any]" = weakref.WeakSet()  # this process's connections, from their accept on
_OPENING_LOCK = threading.Lock()


def _tracked_connection() -> type:
    """websockets' server connection, remembered from its accept: a connection whose upgrade
    never comes is in no list of the server's, yet its thread holds the server's shutdown."""
    from websockets.sync.server import ServerConnection

    class TrackedConnection(ServerConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            with _OPENING_LOCK:
                _OPENING.add(self)

    return TrackedConnection


def _drop_opening() -> None:
    """Drop every connection still in its opening handshake: a stop does not wait for an upgrade."""
    from websockets.protocol import State

    with _OPENING_LOCK:
        opening = [c for c in _OPENING if c.protocol.state is State.CONNECTING]
    for connection in opening:
        try:
            connection.socket.shutdown(socket.SHUT_RDWR)  # wakes its thread's read: the handshake fails
        except OSError:
            pass  # closed meanwhile


def session_cassettes(path: Path) -> list[Path]:
    """NAME.jsonl, NAME.2.jsonl, ... while they exist; just [path] when there is no NAME.2."""
    found = [path]
    while connection_path(path, len(found) + 1).is_file():
        found.append(connection_path(path, len(found) + 1))
    return found


def _numbered(report_path: Path | None, k: int) -> Path | None:
    if report_path is None:
        return None
    return report_path.with_name(f"{report_path.stem}.{k}{report_path.suffix}")


@dataclass
class SocketFake:
    """The listening fake: one engine per connection, each in its connection's thread."""

    listen: ListenAddress
    cassette_path: Path
    options: ReplayOptions
    report_path: Path | None = None
    cassettes: list[Path] = field(default_factory=list)
    reports: list[ReplayReport] = field(default_factory=list)
    _running: dict[WebSocketChannel, ReplayEngine] = field(default_factory=dict)
    _ended: threading.Condition = field(default_factory=threading.Condition)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0
    _stopping: bool = False

    def __post_init__(self) -> None:
        self.cassettes = session_cassettes(self.cassette_path)
        for path in self.cassettes:
            open_cassette(path)  # a broken cassette is said before anyone connects

    # -- one connection ------------------------------------------------------------

    def _session(self, connection: Any) -> None:
        channel = WebSocketChannel(connection)
        with self._lock:  # one section: a stop sees every session that started
            self._count += 1
            k = self._count
            if self._stopping:
                channel.request_stop()
                return
            if len(self.cassettes) > 1 and k > len(self.cassettes):
                engine = None
            else:
                path = self.cassettes[k - 1] if len(self.cassettes) > 1 else self.cassettes[0]
                engine = ReplayEngine(open_cassette(path), channel, self.options)
                engine.report.pid = client_pid()
                self._running[channel] = engine
        if engine is None:
            self._no_cassette(connection, k)
            return
        try:
            self._play(engine, channel, _numbered(self.report_path, k))
        finally:
            with self._ended:
                with self._lock:
                    self._running.pop(channel, None)
                self._ended.notify_all()

    def _play(self, engine: ReplayEngine, channel: WebSocketChannel, report_path: Path | None) -> None:
        write_report(engine.report, report_path)  # a full disk is said, never the session's end
        try:
            report = run_sync(engine.run())
        except Stopped:
            report = engine.report
            report.status = "stopped"
        if report.status == "ok" and channel.peer_close is not None:
            _check_close(engine, channel.peer_close)
        with self._lock:
            self.reports.append(report)
        write_report(report, report_path)
        if report.failed(self.options.strict):
            print(report.summary(), file=sys.stderr, flush=True)

    def _no_cassette(self, connection: Any, k: int) -> None:
        last = self.cassettes[-1]
        message = (f"fake codex: connection {k} has no cassette: there are {len(self.cassettes)} "
                   f"({self.cassettes[0].name} .. {last.name}), one per connection")
        report = ReplayReport(cassette=str(last.with_name(f"{self.cassette_path.stem}.{k}{last.suffix}")),
                              role="server", status="error", pid=client_pid())
        report.divergence = Divergence(kind="error", message=message)
        with self._lock:
            self.reports.append(report)
        write_report(report, _numbered(self.report_path, k))
        print(message, file=sys.stderr, flush=True)
        connection.close(1011, "codex-cassette: no cassette for this connection")

    # -- HTTP before the upgrade -----------------------------------------------------

    def _process_request(self, connection: Any, request: Any) -> Any:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        if self.listen.scheme == "ws" and request.path.split("?")[0] in HEALTH_PATHS:
            return connection.respond(HTTPStatus.OK, "")
        return connection.respond(HTTPStatus.BAD_REQUEST, "Connection header did not include 'upgrade'")

    def _process_response(self, connection: Any, request: Any, response: Any) -> Any:
        if response.status_code == 101 and self.listen.scheme == "unix":
            for name, value in UNIX_UPGRADE_HEADERS.items():
                response.headers[name] = value
        return response

    # -- the listener ------------------------------------------------------------------

    def _server(self) -> Any:
        from websockets.sync.server import serve, unix_serve

        kwargs: dict[str, Any] = dict(process_request=self._process_request, process_response=self._process_response,
                                      compression=None, max_size=None, server_header=None,
                                      close_timeout=CLOSE_TIMEOUT, ping_interval=None,
                                      create_connection=_tracked_connection())
        if self.listen.scheme == "ws":
            try:
                return serve(self._session, self.listen.host, self.listen.port, **kwargs)
            except OSError as exc:
                raise HarnessError(f"cannot listen on {self.listen.url}: {exc.strerror or exc}") from None
        path = self.listen.socket_path()
        claim_socket_path(path)
        try:
            return unix_serve(self._session, str(path), **kwargs)
        except OSError as exc:
            raise HarnessError(f"cannot listen on unix://{path}: {exc.strerror or exc}") from None

    def run(self) -> int:
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        unix_path = None
        try:
            server = self._server()
            unix_path = None if self.listen.scheme == "ws" else self.listen.socket_path()
            listener = ReplayReport(cassette=str(self.cassette_path), role="server", pid=client_pid())
            write_report(listener, self.report_path)  # running: whoever launched us can find and stop us
            if self.listen.scheme == "ws":
                bound = self.listen.with_port(server.socket.getsockname()[1])
                print("\n".join(bound.banner()), file=sys.stderr, flush=True)
            threading.Thread(target=server.serve_forever, name="fake codex listener", daemon=True).start()
            while not stop.wait(0.5):
                pass
            self._stop(server)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if unix_path is not None:
                remove_socket_path(unix_path)
        return self._finish(listener)

    def _stop(self, server: Any) -> None:
        with self._lock:
            self._stopping = True
        # A session whose client already closed (only its close is still to be read) ends on its own.
        deadline = time.monotonic() + SETTLE
        with self._ended:
            while time.monotonic() < deadline and any(e.report.awaiting_close for e in self._snapshot().values()):
                self._ended.wait(max(0.0, deadline - time.monotonic()))
        for channel in self._snapshot():
            channel.request_stop()
        # Stop accepting; the sessions end at their next wait, each writing its report.
        done = threading.Thread(target=server.shutdown, kwargs={"close_connections": False}, daemon=True)
        done.start()
        deadline = time.monotonic() + STOP_GRACE
        while done.is_alive() and time.monotonic() < deadline:
            _drop_opening()  # again while the shutdown runs: one may have been accepted meanwhile
            done.join(0.05)

    def _snapshot(self) -> dict[WebSocketChannel, ReplayEngine]:
        with self._lock:
            return dict(self._running)

    def _finish(self, listener: ReplayReport) -> int:
        with self._lock:
            served = self._count
            reports = list(self.reports)
        expected = len(self.cassettes) if len(self.cassettes) > 1 else 1
        listener.status = "stopped"
        listener.total = expected
        listener.played = min(served, expected)
        listener.unplayed = [{"at": str(self.cassettes[min(k, len(self.cassettes) - 1)]),
                              "event": f"session {k + 1}: no client connected"} for k in range(served, expected)]
        if listener.unplayed:
            listener.status = "incomplete"
        write_report(listener, self.report_path)
        failed = listener.failed(self.options.strict) or any(r.failed(self.options.strict) for r in reports)
        if listener.unplayed and listener.failed(self.options.strict):
            print(listener.summary(), file=sys.stderr, flush=True)
        return DIVERGED_EXIT if failed else 0


def _check_close(engine: ReplayEngine, live: dict[str, Any]) -> None:
    """The client's close frame, matched like a message: a client that dropped the connection,
    or closed it with another code, where the cassette has its close frame diverged there."""
    events = engine.cassette.events
    ended = [events[p] for p in range(len(events)) if engine.cassette.side_of(p) == "client" and events[p].eof]
    div = (closed_otherwise(engine.cassette, ended[-1], live, engine.options.peer, engine.for_report)
           if ended else None)
    if div is not None:
        engine.report.divergence = div
        engine.report.status = "diverged"


def serve_socket(listen: ListenAddress, cassette_path: str | Path, options: ReplayOptions,
                 report_path: str | Path | None = None) -> int:
    report = Path(str(report_path).replace("{pid}", str(client_pid()))) if report_path is not None else None
    return SocketFake(listen, Path(cassette_path), options, report).run()
