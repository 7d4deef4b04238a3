"""Shared fixtures for codex-cassette's own tests.

The driver under test is the real optio-codex CodexConversation; these fixtures
only wire it to a fake codex (in-process, or as a real subprocess launched by
optio's own host layer) and collect what it reports, with every wait bounded.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent
WAIT = 10.0  # the longest any test waits for one thing to happen


@pytest.fixture(autouse=True)
def _inner_pytest_as_on_a_desk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """An inner pytest run (pytester) prints as on a developer's machine. With $CI or
    $BUILD_NUMBER set (as .ci/run has it), pytest repeats each failure's whole message in
    its short summary, and the tests that count what a user reads would count that too."""
    if "pytester" in request.fixturenames:
        monkeypatch.delenv("CI", raising=False)
        monkeypatch.delenv("BUILD_NUMBER", raising=False)


@pytest.fixture(name="server", scope="module")
def fork_server_per_module() -> Iterator[Any]:
    """A warm fork server for one test module (the launcher tests hand it to `launcher_argv`)."""
    from fake_server.forkserver import start_server

    server = start_server()
    assert server.wait_ready(WAIT * 3)
    yield server
    server.stop()


@dataclass
class OptioSession:
    """A CodexConversation attached to a handle, with its events and messages collected."""

    conv: Any
    handle: Any
    events: list[dict] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    reader: asyncio.Task | None = None
    host: Any = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _on_event(self, obj: dict) -> None:
        self.events.append(obj)
        self._changed.set()

    def _on_message(self, text: str) -> None:
        self.messages.append(text)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
        try:
            await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                 f"events so far: {[e.get('method') or e.get('type') for e in self.events]}")

    def methods(self) -> list[str]:
        return [e.get("method") or e.get("type") or "response" for e in self.events]

    async def turn(self, text: str, timeout: float = WAIT) -> str:
        before = len(self.messages)
        await self.conv.send(text)
        await self.until(lambda: len(self.messages) > before, timeout, f"the answer to {text!r}")
        return self.messages[before]

    async def close(self) -> None:
        stdin = self.handle.stdin
        if stdin is not None:
            stdin.close()
        if self.reader is not None:
            try:
                await asyncio.wait_for(self.reader, WAIT)
            except (asyncio.TimeoutError, Exception):
                self.reader.cancel()
        if self.host is not None:
            # Let the fake end by itself first (it writes its final report on the way out);
            # only one that does not is terminated.
            try:
                await asyncio.wait_for(self.handle.pid_like.wait(), WAIT)
            except asyncio.TimeoutError:
                await asyncio.wait_for(self.host.terminate_subprocess(self.handle, aggressive=True), WAIT)


async def start_optio(handle: Any, *, bootstrap: bool = True, **conv_kwargs: Any) -> OptioSession:
    from optio_codex.conversation import CodexConversation

    conv_kwargs.setdefault("cwd", "/work/project")
    conv = CodexConversation(**conv_kwargs)
    session = OptioSession(conv=conv, handle=handle)
    conv.on_event(session._on_event)
    conv.on_message(session._on_message)
    conv.attach(handle)
    session.reader = asyncio.create_task(conv.run_reader())
    if bootstrap:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
    return session


async def launch_fake_subprocess(fake: Any, tmp_path: Path) -> tuple[Any, Any]:
    """The fake as a real subprocess, launched the way optio's session layer launches codex."""
    from optio_host.host import LocalHost

    host = LocalHost(str(tmp_path / "optio-host"))
    os.makedirs(host.workdir, exist_ok=True)
    handle = await host.launch_subprocess(shlex.join(fake.argv), env=fake.env, stdin=True, merge_stderr=False)
    return host, handle


@pytest.fixture(params=["inprocess", "subprocess"])
def launch_mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def optio(fake_codex: Any, launch_mode: str, tmp_path: Path):
    """Start optio's CodexConversation against the fake codex, in the parametrised launch mode."""
    sessions: list[OptioSession] = []

    async def start(**conv_kwargs: Any) -> OptioSession:
        host = None
        if launch_mode == "inprocess":
            handle = fake_codex.handle()
        else:
            host, handle = await launch_fake_subprocess(fake_codex, tmp_path)
        session = await start_optio(handle, **conv_kwargs)
        session.host = host
        sessions.append(session)
        return session

    yield start


@pytest.fixture
def optio_start():
    """``await optio_start(handle, **CodexConversation kwargs)``: the driver on any handle."""
    return start_optio
