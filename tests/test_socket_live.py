"""The real codex 0.163.0 on `--listen ws://` and `unix://`, offline (loopback mock model):
recorded through `codex-cassette record --listen`, replayed by the fake to a real
WebSocket client; two concurrent connections; a connection dropped mid-turn; and
`codex app-server proxy` (WebSocket over stdio) recorded by the stdio recorder."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from socket_client import WAIT, Conversation, sessions_settled, start_fake  # noqa: E402

from harness.format.cassette import load_cassette  # noqa: E402
from harness.live.model_script import GateStep, TextStep  # noqa: E402
from harness.live.session import LiveCodex, LiveScenario  # noqa: E402
from harness.pytest.sockets import ListeningProcess, listen_url  # noqa: E402
from harness.replay.report import ReplayReport  # noqa: E402

pytestmark = pytest.mark.live
TURN = 30.0  # a real codex turn against the mock, bounded


def started(script: list) -> LiveCodex:
    live = LiveCodex(LiveScenario(name="socket", codex={"approval_policy": "never"}, model=[])).start()
    live.mock.add_steps(script)
    return live


def start_recorder(live: LiveCodex, transport: str, out: Path) -> ListeningProcess:
    out.parent.mkdir(parents=True, exist_ok=True)
    url = listen_url(transport, out.parent, "client.sock")
    upstream = listen_url(transport, live.workdir, "codex.sock")
    argv = [sys.executable, "-m", "harness", "record", "-o", str(out), "--listen", url,
            "--require-model-provider", "mock",
            *[f"--placeholder={k}={v}" for k, v in live.placeholders().values.items()],
            "--", str(live.binary), "app-server", "--listen", upstream]
    return ListeningProcess.start(argv, live.env, url, out.parent / "recorder.stderr", cwd=str(live.workdir))


async def bootstrap(conv: Conversation, cwd: str, name: str) -> str:
    await conv.send({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": name, "version": "1"}}})
    await conv.until("id", 1)
    await conv.send({"method": "initialized"})
    await conv.send({"id": 2, "method": "thread/start", "params": {"cwd": cwd}})
    started = await conv.until("id", 2)
    assert started["result"]["modelProvider"] == "mock"  # never the real provider
    return started["result"]["thread"]["id"]


async def text_session(url: str, cwd: str, name: str, turn: bool = True) -> Conversation:
    conv = await Conversation.open(url)
    thread = await bootstrap(conv, cwd, name)
    if turn:
        await conv.send({"id": 3, "method": "turn/start",
                         "params": {"threadId": thread, "input": [{"type": "text", "text": "Say hello"}]}})
        done = await asyncio.wait_for(conv.until("method", "turn/completed"), TURN)
        assert done["params"]["turn"]["status"] == "completed"
    await conv.ws.close()
    return conv


def session_reports(workdir: Path) -> list[ReplayReport]:
    return [ReplayReport.read(p) for p in sorted(workdir.glob("report-*.*.json"))]


def deltas(conv: Conversation) -> str:
    return "".join(m["params"]["delta"] for m in conv.received if m.get("method") == "item/agentMessage/delta")


@pytest.mark.parametrize("transport", ["ws", "unix"])
def test_record_two_concurrent_connections_then_replay_them(tmp_path: Path, transport: str) -> None:
    live = started([TextStep("Hello from the mock", chunks=4)])
    try:
        recorder = start_recorder(live, transport, tmp_path / "rec" / "session.jsonl")
        try:
            async def both() -> list[Conversation]:
                return await asyncio.gather(text_session(recorder.url, str(live.workdir), "one"),
                                            text_session(recorder.url, str(live.workdir), "two", turn=False))

            recorded = asyncio.run(both())
        finally:
            code = recorder.stop()
        assert code == 0, recorder.stderr_tail()
    finally:
        live.stop()
    assert deltas(recorded[0]) == "Hello from the mock"
    first, second = tmp_path / "rec" / "session.jsonl", tmp_path / "rec" / "session.2.jsonl"
    cassettes = {load_cassette(p).meta["client"]["name"]: load_cassette(p) for p in (first, second)}
    for cassette in cassettes.values():
        assert (cassette.meta["complete"], cassette.meta["transport"]) == (True, transport)
        end = [e for e in cassette.events if e.eof]
        assert end[0].side == "client" and end[0].close == {"code": 1000, "reason": ""}
        assert end[1].side == "server" and end[1].close is None  # codex answers a close frame by hanging up
    # Replayed by the fake, a connection per cassette, to the same client on the same transport.
    replay = tmp_path / "replay"
    replay.mkdir()
    fake = start_fake(first, transport, replay)
    try:
        async def again() -> list[Conversation]:
            by_name = {}
            for path in (first, second):
                name = load_cassette(path).meta["client"]["name"]
                by_name[name] = await text_session(fake.url, "/elsewhere/work", name, turn=name == "one")
            return [by_name["one"], by_name["two"]]

        replayed = asyncio.run(again())
        sessions_settled(replay, 2)
    finally:
        assert fake.stop() == 0, fake.stderr_tail()
    assert deltas(replayed[0]) == "Hello from the mock"
    assert all(r.status == "ok" for r in session_reports(replay))


def test_codex_killed_mid_turn_is_recorded_and_replayed_as_a_drop(tmp_path: Path) -> None:
    live = started([GateStep("hold", timeout=TURN)])
    out = tmp_path / "rec" / "killed.jsonl"
    try:
        recorder = start_recorder(live, "ws", out)
        try:
            async def killed() -> Conversation:
                conv = await Conversation.open(recorder.url)
                thread = await bootstrap(conv, str(live.workdir), "one")
                await conv.send({"id": 3, "method": "turn/start",
                                 "params": {"threadId": thread, "input": [{"type": "text", "text": "go"}]}})
                await asyncio.wait_for(conv.until("method", "item/agentMessage/delta"), TURN)
                os.kill(codex_pid(recorder.proc.pid), signal.SIGKILL)
                await conv.rest()
                return conv

            conv = asyncio.run(killed())
            code = recorder.proc.wait(WAIT)  # codex gone, the recorder ends as it did
        finally:
            recorder.stop()
    finally:
        live.stop()
    assert conv.closed is not None and conv.closed.rcvd is None  # dropped: 1006
    assert code == -signal.SIGKILL
    cassette = load_cassette(out)
    assert cassette.meta["complete"] is False
    assert cassette.meta["end"] == "the server exited with SIGKILL while the connection was open"
    tail = [(e.side, e.kind) for e in cassette.events if e.kind in ("eof", "exit")]
    assert tail[0] == ("server", "eof") and ("server", "exit") in tail
    assert [e for e in cassette.events if e.eof and e.side == "server"][0].close is None
    replay = tmp_path / "replay"
    replay.mkdir()
    fake = start_fake(out, "ws", replay)
    try:
        async def again() -> Conversation:
            conv = await Conversation.open(fake.url)
            thread = await bootstrap(conv, "/elsewhere", "one")
            await conv.send({"id": 3, "method": "turn/start",
                             "params": {"threadId": thread, "input": [{"type": "text", "text": "go"}]}})
            await conv.rest()
            return conv

        again_conv = asyncio.run(again())
        sessions_settled(replay, 1)
    finally:
        fake.stop()
    assert again_conv.closed is not None and again_conv.closed.rcvd is None
    assert deltas(again_conv) == deltas(conv) != ""
    assert [r.status for r in session_reports(replay)] == ["ok"]


def codex_pid(recorder_pid: int) -> int:
    children = Path(f"/proc/{recorder_pid}/task/{recorder_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


async def over_stdio(argv: list[str], env: dict[str, str], cwd: str, run) -> tuple[Conversation, int]:
    """Run ``argv`` with a socket as its stdin and stdout and a WebSocket client on the other end:
    what a client of `codex app-server proxy` does."""
    from websockets.asyncio.client import connect

    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    theirs.close()
    try:
        ws = await connect("ws://localhost/", sock=ours, compression=None, max_size=None, open_timeout=WAIT,
                           close_timeout=2)
        conv = Conversation(ws)
        await run(conv)
        await ws.close()
        code = await asyncio.to_thread(proc.wait, WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return conv, code


def test_app_server_proxy_is_recorded_as_websocket_over_stdio(tmp_path: Path) -> None:
    live = started([TextStep("Through the proxy", chunks=3)])
    out = tmp_path / "proxy.jsonl"
    control = str(live.workdir / "control.sock")
    codex = subprocess.Popen([str(live.binary), "app-server", "--listen", f"unix://{control}"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=live.env, cwd=str(live.workdir))
    try:
        ListeningProcess(codex, f"unix://{control}", tmp_path / "none")._wait_ready(WAIT)

        async def turn(conv: Conversation) -> None:
            thread = await bootstrap(conv, str(live.workdir), "proxied")
            await conv.send({"id": 3, "method": "turn/start",
                             "params": {"threadId": thread, "input": [{"type": "text", "text": "hi"}]}})
            await asyncio.wait_for(conv.until("method", "turn/completed"), TURN)

        argv = [sys.executable, "-m", "harness", "record", "-o", str(out), "--require-model-provider", "mock",
                *[f"--placeholder={k}={v}" for k, v in live.placeholders().values.items()],
                "--", str(live.binary), "app-server", "proxy", "--sock", control]
        recorded, code = asyncio.run(over_stdio(argv, live.env, str(live.workdir), turn))
        assert code == 0
        # The replay: the real `codex app-server proxy` in front of the fake's socket.
        fake = start_fake(out, "unix", tmp_path)
        try:
            async def same(conv: Conversation) -> None:
                thread = await bootstrap(conv, "/elsewhere", "proxied")
                await conv.send({"id": 3, "method": "turn/start",
                                 "params": {"threadId": thread, "input": [{"type": "text", "text": "hi"}]}})
                await asyncio.wait_for(conv.until("method", "turn/completed"), WAIT)

            replayed, _ = asyncio.run(over_stdio([str(live.binary), "app-server", "proxy", "--sock",
                                                  fake.url[len("unix://"):]], live.env, str(live.workdir), same))
            sessions_settled(tmp_path, 1)
        finally:
            assert fake.stop() == 0, fake.stderr_tail()
    finally:
        codex.terminate()
        codex.wait(WAIT)
        live.stop()
    cassette = load_cassette(out)
    assert (cassette.meta["transport"], cassette.meta["complete"]) == ("ws-stdio", True), cassette.meta["end"]
    assert deltas(recorded) == deltas(replayed) == "Through the proxy"
    assert [r.status for r in session_reports(tmp_path)] == ["ok"]
