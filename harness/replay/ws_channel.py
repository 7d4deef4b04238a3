"""The engine's Channel over one WebSocket connection (websockets' threading API).

Blocking, like the stdio channel: the fake serving a socket runs one engine per
connection, each in the thread websockets gives the connection, driven by
``run_sync`` (no event loop). One text frame is one message (a binary frame is
ignored, as codex ignores it): the engine writes one message per ``write`` call,
so a write is a frame (its newline dropped).

Endings follow the cassette: a recorded eof with a close frame sends that close
frame; one without (codex killed mid-session, or a stdio cassette's server that
went away mid-session) drops the connection with no close frame, which the client
sees as code 1006, as it would have from codex. How the client ended is kept in
``peer_close`` for the engine to compare with the recorded close frame.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

# Only a socket fake loads this module, and it has websockets loaded already.
from websockets.exceptions import ConnectionClosed

from harness.format.cassette import Event
from harness.format.wire import Line
from harness.replay.channel import ReadTimeout, Stopped

DROPPED = {"code": 1006, "reason": ""}  # what a WebSocket end reports for a connection lost without a close frame
NO_STATUS = 1005  # how a close frame without a code is recorded


class WebSocketChannel:
    """One accepted connection (a ``websockets.sync.server.ServerConnection``)."""

    def __init__(self, connection: Any) -> None:
        self._conn = connection
        self._stop = threading.Event()
        self._write_closed = False
        self.peer_close: dict[str, Any] | None = None  # set once the client's side ended

    def request_stop(self) -> None:
        """From another thread (the fake's SIGTERM): end this session at once, dropping the
        connection as codex does when it is stopped; the engine's wait raises Stopped."""
        self._stop.set()
        self._drop()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped()

    async def read_line(self, timeout: float | None = None) -> Line | None:
        self._check_stop()
        if self.peer_close is not None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                data = self._conn.recv(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                self._check_stop()
                raise ReadTimeout(f"nothing came in {timeout:g} s") from None
            except ConnectionClosed as closed:
                self._check_stop()
                frame = closed.rcvd
                self.peer_close = {"code": frame.code, "reason": frame.reason} if frame is not None else DROPPED
                return None
            if isinstance(data, str):
                return Line(data.encode())
            # A binary frame: codex 0.163.0 ignores it (no answer, the session goes on, even
            # when it holds a valid request), and so does the fake; its read timeout runs on.
            self._check_stop()

    def write(self, data: bytes) -> None:
        if self._write_closed:
            return
        if data.endswith(b"\n"):
            data = data[:-1]
        try:
            self._conn.send(data, text=True)
        except (ConnectionClosed, OSError):
            self._write_closed = True  # the client is gone; the engine notices on its next read

    async def drain(self) -> None:
        self._check_stop()

    async def sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Stopped()

    async def close(self, ending: Event | None = None) -> None:
        """End our side: as the cassette's eof says (``ending``), else with a normal close."""
        if self._write_closed:
            return
        self._write_closed = True
        if self.peer_close is not None:
            return  # the client closed first; the library answered its close frame
        if ending is not None and ending.close is None:
            self._drop()
            return
        frame = ending.close if ending is not None and ending.close is not None else {"code": 1000, "reason": ""}
        try:
            if frame["code"] == NO_STATUS:
                self._conn.close(None)  # an empty close frame, as recorded (1005 itself is never sent)
            else:
                self._conn.close(frame["code"], frame.get("reason", ""))
        except OSError:
            pass

    def _drop(self) -> None:
        """Cut the connection without a close frame (TCP FIN, as a killed codex's)."""
        try:
            self._conn.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone
