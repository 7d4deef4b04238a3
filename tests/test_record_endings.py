"""How recordings end (issue 12, point 5), on real parts: the real codex offline behind
the recording proxy, driven by the openai-codex SDK whose ``close()`` hangs up and at
once sends SIGTERM; signals that race the first byte; a server that exits 0 while a
SIGTERM is on its way; a status nobody can know; and ``meta.end`` said the same way by
the proxy and by in-process recording. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.format.cassette import load_cassette

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
WAIT = 30.0
SCENARIO = REPO / "tests" / "scenarios" / "text_turn.yaml"


def proxy_argv(cassette: Path, *server: str) -> list[str]:
    return [PY, "-m", "harness", "record", "-o", str(cassette), "--", *server]


def env_with_repo(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def header_and_last(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    lines = path.read_text().strip().split("\n")
    return json.loads(lines[0])["meta"], json.loads(lines[-1])


@pytest.mark.live
def test_sdk_close_hang_up_then_sigterm_is_a_clean_end_every_time(tmp_path: Path) -> None:
    """The openai-codex SDK's close(): stdin closed, SIGTERM at once. Through the proxy to the
    real codex, every one of these endings is recorded complete and clean."""
    pytest.importorskip("openai_codex")
    from openai_codex import Codex, CodexConfig

    from harness.live import MockModelThread, find_codex_binary, make_codex_home

    codex = str(find_codex_binary())
    rounds = 12
    with MockModelThread([]) as mock:
        home = make_codex_home(mock.base_url, tmp_path / "home")
        env = env_with_repo(home.env)
        for n in range(rounds):
            cassette = tmp_path / f"close-{n}.jsonl"
            client = Codex(CodexConfig(launch_args_override=tuple(proxy_argv(cassette, codex, "app-server")),
                                       env=env, cwd=str(tmp_path)))
            assert client.metadata.serverInfo.version.startswith("0.163.0")
            client.close()  # closes stdin, SIGTERMs, waits (2 s) for the proxy
            deadline = time.monotonic() + WAIT
            while not cassette.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            meta, last = header_and_last(cassette)
            assert (meta["complete"], meta["end"]) == (True, "clean"), f"round {n}: {meta}"
            assert last["exit"] in (0, "SIGTERM")
            assert not list(tmp_path.glob("*.partial"))


def test_a_server_exiting_0_as_sigterm_arrives_is_never_recorded_as_255(tmp_path: Path) -> None:
    """`cat` exits 0 the moment its stdin closes; the client hangs up and terminates the
    proxy at once, so the forwarded SIGTERM meets a server that is exiting, or gone."""
    for n in range(30):
        cassette = tmp_path / f"cat-{n}.jsonl"
        proxy = subprocess.Popen(proxy_argv(cassette, "cat"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env_with_repo())
        assert proxy.stdin is not None and proxy.stdout is not None
        proxy.stdin.write(b'{"id":1,"method":"ping"}\n')
        proxy.stdin.flush()
        assert proxy.stdout.readline() == b'{"id":1,"method":"ping"}\n'
        proxy.stdin.close()
        proxy.terminate()
        rc = proxy.wait(WAIT)
        assert rc in (0, -signal.SIGTERM), proxy.stderr.read() if proxy.stderr else rc
        meta, last = header_and_last(cassette)
        assert meta["complete"] and meta["end"] == "clean", meta
        assert last["exit"] in (0, "SIGTERM")
        proxy.stdout.close()
        if proxy.stderr is not None:
            proxy.stderr.close()


def test_a_signal_as_the_first_byte_arrives_still_leaves_its_cassette(tmp_path: Path) -> None:
    """SIGTERM the proxy the moment the server's first line reaches the client: the handlers
    are in place before anything is forwarded, so the recording ends, saying why."""
    server = ["sh", "-c", 'echo \'{"method":"hello"}\'; exec sleep 30']
    for n in range(10):
        cassette = tmp_path / f"early-{n}.jsonl"
        proxy = subprocess.Popen(proxy_argv(cassette, *server), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, env=env_with_repo())
        assert proxy.stdout is not None and proxy.stdin is not None
        assert proxy.stdout.readline() == b'{"method":"hello"}\n'
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(WAIT) == -signal.SIGTERM  # the server died by it; so does the proxy
        proxy.stdin.close()
        proxy.stdout.close()
        meta, last = header_and_last(cassette)
        assert not meta["complete"]
        assert meta["end"] == "the recorder got SIGTERM and passed it on to the server"
        assert last["exit"] == "SIGTERM"


@pytest.mark.asyncio
async def test_a_status_nobody_saw_is_never_recorded_as_exit_0(tmp_path: Path) -> None:
    """In-process recording of a real process whose exit status someone else took (reaped
    behind the recorder's back): the cassette says the status is not known."""
    from harness.pytest.endings import end_process
    from harness.record.handle import RecordingHandle
    from harness.record.process import spawn_owned

    proc = await spawn_owned(["cat"])
    recorder = RecordingHandle(proc, tmp_path / "lost.jsonl", command=["cat"])
    recorder.stdin.write(b'{"id":1}\n')
    await recorder.stdin.drain()
    proc.stdin.close()
    await asyncio.wait_for(proc.stdin.wait_closed(), WAIT)
    deadline = time.monotonic() + WAIT
    while os.waitpid(proc.pid, os.WNOHANG) == (0, 0):  # not ours to do: now nobody can tell how it ended
        assert time.monotonic() < deadline, "cat did not exit at the end of its input"
        await asyncio.sleep(0.01)
    status, stopped = end_process(recorder, proc, grace=5.0)
    assert status is None and stopped is None
    path = recorder.finish(exit=status, stopped=stopped)
    cassette = load_cassette(path)
    assert not cassette.complete
    assert cassette.meta["end"] == "the server's exit status is not known"
    assert not [e for e in cassette.events if e.kind == "exit"]


class Client:
    """The client side of one session, over a proxy subprocess or an in-process handle."""

    def __init__(self, stdin: Any, stdout: Any) -> None:
        self.stdin = stdin
        self._lines = None if isinstance(stdout, asyncio.StreamReader) else stdout.__aiter__()
        self._stdout = stdout

    async def line(self) -> bytes:
        if self._lines is None:
            return await asyncio.wait_for(self._stdout.readline(), WAIT)
        return await asyncio.wait_for(self._lines.__anext__(), WAIT)

    async def rest(self) -> None:
        if self._lines is None:
            await asyncio.wait_for(self._stdout.read(), WAIT)
            return

        async def drain() -> None:
            async for _ in self._lines:
                pass
        await asyncio.wait_for(drain(), WAIT)


INITIALIZE = b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"t","version":"1"}}}\n'


@pytest.mark.asyncio
@pytest.mark.parametrize("kill", [False, True], ids=["clean", "server-killed"])
async def test_proxy_and_in_process_say_the_same_end(tmp_path: Path, kill: bool) -> None:
    """One session, recorded by the proxy and by RecordingHandle around the same server
    (the fake codex on a scenario): the two cassettes' ``end`` are the same words."""
    from fake_server import FakeCodexCommand

    from harness.record.handle import RecordingHandle
    from harness.record.process import spawn_owned

    fake = FakeCodexCommand(SCENARIO, timeout=10, extra=["--allow-unplayed", "--linger=30"]).cold_argv()
    ends = {}
    for how in ("proxy", "in-process"):
        cassette = tmp_path / f"{how}.jsonl"
        if how == "proxy":
            proc: Any = await asyncio.create_subprocess_exec(
                *proxy_argv(cassette, *fake), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, env=env_with_repo())
            client = Client(proc.stdin, proc.stdout)
            server_pid = _fake_pid(proc.pid)
        else:
            server = await spawn_owned(fake, env_with_repo(), stderr=subprocess.DEVNULL)
            proc = RecordingHandle(server, cassette, command=["codex", "app-server"])
            client = Client(proc.stdin, proc.stdout)
            server_pid = server.pid
        client.stdin.write(INITIALIZE)
        await client.stdin.drain()
        assert json.loads(await client.line())["id"] == 1
        if kill:
            os.kill(server_pid, signal.SIGKILL)
        client.stdin.close()
        await client.rest()
        if how == "proxy":
            await asyncio.wait_for(proc.wait(), WAIT)
        else:
            await asyncio.wait_for(server.wait(), WAIT)
            proc.finish()
        ends[how] = load_cassette(cassette).meta["end"]
    expected = "the server ended by SIGKILL" if kill else "clean"
    assert ends == {"proxy": expected, "in-process": expected}


def _fake_pid(proxy_pid: int) -> int:
    """The proxy's server: its child running the cold fake (`python -S _boot.py ...`); the
    other child is the recorder, a fork of the proxy."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{proxy_pid}/task/{proxy_pid}/children").read_text().split():
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if len(argv) > 1 and argv[1] == b"-S":
                return int(child)
        time.sleep(0.02)
    raise AssertionError("the proxy started no server")
