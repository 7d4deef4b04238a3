"""A real WebSocket client (the websockets library) for the socket tests, every wait bounded,
and the pieces they share: a fake listening on a socket, cassettes written from events."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed

from fake_server.commands import FakeCodexCommand
from harness.format.cassette import Cassette, Event
from harness.format.writer import dump_cassette
from harness.pytest.sockets import ListeningProcess, listen_url

WAIT = 10.0


async def open_ws(url: str) -> ClientConnection:
    """Connect as a codex client would: no compression offered, codex-sized messages."""
    kwargs: dict[str, Any] = {"compression": None, "max_size": None, "open_timeout": WAIT, "close_timeout": 2}
    if url.startswith("unix://"):
        return await unix_connect(url[len("unix://"):], uri="ws://localhost/", **kwargs)
    return await connect(url, **kwargs)


@dataclass
class Conversation:
    """One connection's messages, read as they come."""

    ws: ClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: ConnectionClosed | None = None

    @classmethod
    async def open(cls, url: str) -> "Conversation":
        return cls(await open_ws(url))

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def next(self) -> dict[str, Any]:
        msg = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
        self.received.append(msg)
        return msg

    async def until(self, key: str, value: Any) -> dict[str, Any]:
        while True:
            msg = await self.next()
            if msg.get(key) == value:
                return msg

    async def rest(self) -> ConnectionClosed:
        """Read until the server ends the connection; what ended it."""
        try:
            while True:
                await self.next()
        except ConnectionClosed as closed:
            self.closed = closed
            return closed


def write_cassette(path: Path, events: list[Event], **meta: Any) -> Path:
    return dump_cassette(Cassette(path=None, meta={"codex_version": "0.163.0", "complete": True, **meta},
                                  events=events), path)


def client(msg: dict[str, Any]) -> Event:
    return Event(side="client", msg=msg)


def server(msg: dict[str, Any]) -> Event:
    return Event(side="server", msg=msg)


INIT = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "ws-test", "version": "1"}}}


def init_events(user_agent: str = "codex_cli_rs/0.163.0") -> list[Event]:
    return [client(INIT), server({"id": 1, "result": {"userAgent": user_agent}}),
            client({"method": "initialized"})]


def start_fake(cassette: Path, transport: str, workdir: Path, *extra: str) -> ListeningProcess:
    """The fake as a process listening on a socket (the cold one: no fork server in these tests)."""
    command = FakeCodexCommand(cassette, report=workdir / "report-{pid}.json", timeout=WAIT, extra=list(extra))
    url = listen_url(transport, workdir)
    return ListeningProcess.start(command.cold_argv("app-server", "--listen", url), command.env(), url,
                                  workdir / "fake.stderr")


def sessions_settled(workdir: Path, count: int, timeout: float = WAIT) -> None:
    """Wait (bounded) until ``count`` sessions of the fake wrote a final report, so a stop that
    follows finds them done rather than cutting them short (a loaded machine is slow)."""
    from harness.replay.report import ReplayReport

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = 0
        for path in workdir.glob("report-*.*.json"):
            try:
                done += ReplayReport.read(path).status != "running"
            except (ValueError, OSError):
                pass  # being written
        if done >= count:
            return
        time.sleep(0.02)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=60)
