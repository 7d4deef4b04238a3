"""The fake codex on `--listen ws://` and `unix://`: a real WebSocket client against the real
fake subprocess (its argv as a client would run it), every wait bounded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from socket_client import (INIT, WAIT, Conversation, client, init_events, open_ws, run_python,  # noqa: E402
                           server, sessions_settled, start_fake, write_cassette)

from fake_server.commands import FakeCodexCommand  # noqa: E402
from harness.format.cassette import Event  # noqa: E402
from harness.replay.engine import DIVERGED_EXIT, DIVERGENCE_CODE  # noqa: E402
from harness.replay.report import ReplayReport  # noqa: E402

DATA = Path(__file__).parent / "data"
THREAD = {"id": 2, "method": "thread/start", "params": {"cwd": "/w"}}


def reports(workdir: Path) -> dict[str, ReplayReport]:
    return {p.name: ReplayReport.read(p) for p in sorted(workdir.glob("report-*.json"))}


def session_cassette(path: Path, thread: str = "thr_1", **meta) -> Path:
    return write_cassette(path, [*init_events(), client(THREAD),
                                 server({"id": 2, "result": {"thread": {"id": thread}}}),
                                 server({"method": "thread/started", "params": {"thread": {"id": thread}}}),
                                 Event(side="client", eof=True), Event(side="server", eof=True)], **meta)


async def play_session(url: str) -> list[dict]:
    conv = await Conversation.open(url)
    await conv.send(INIT)
    await conv.until("id", 1)
    await conv.send({"method": "initialized"})
    await conv.send(THREAD)
    await conv.until("id", 2)
    await conv.until("method", "thread/started")
    await conv.ws.close()
    return conv.received


async def http_get(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    writer.close()
    return head


def test_ws_banner_health_and_a_stdio_cassette_over_a_socket(tmp_path: Path) -> None:
    cassette = session_cassette(tmp_path / "s.jsonl")
    fake = start_fake(cassette, "ws", tmp_path)
    try:
        banner = (tmp_path / "fake.stderr").read_text().splitlines()
        port = int(fake.url.rsplit(":", 1)[1])
        assert banner[:5] == ["codex app-server (WebSockets)", f"  listening on: ws://127.0.0.1:{port}",
                              f"  readyz: http://127.0.0.1:{port}/readyz",
                              f"  healthz: http://127.0.0.1:{port}/healthz",
                              "  note: binds localhost only (use SSH port-forwarding for remote access)"]
        for path, status in (("/readyz", b"200"), ("/healthz", b"200"), ("/", b"400")):
            head = asyncio.run(http_get("127.0.0.1", port, path))
            assert head.split(b" ")[1] == status, head
        received = asyncio.run(play_session(fake.url))
        assert [m.get("method") or m["id"] for m in received] == [1, 2, "thread/started"]
        sessions_settled(tmp_path, 1)
    finally:
        code = fake.stop()
    assert code == 0
    found = reports(tmp_path)
    session = next(r for name, r in found.items() if name.count(".") == 2)
    assert session.status == "ok" and session.played == session.total
    assert not any(r.failed() for r in found.values())


def test_unix_socket_session_header_and_path_in_use(tmp_path: Path) -> None:
    cassette = session_cassette(tmp_path / "s.jsonl")
    fake = start_fake(cassette, "unix", tmp_path)
    path = fake.url[len("unix://"):]
    try:
        async def check() -> None:
            ws = await open_ws(fake.url)
            assert ws.response.status_code == 101
            assert ws.response.headers["x-codex-websocket-max-unfragmented-message-bytes"] == "16777216"
            await ws.close()

        asyncio.run(check())
        second = run_python("import sys, runpy; sys.argv = sys.argv[1:]; runpy.run_module('fake_server', "
                            "run_name='__main__')", "fake_server", "--cassette", str(cassette), "app-server",
                            "--listen", fake.url)
        assert second.returncode == 2
        assert b"already in use at " + path.encode() in second.stderr
    finally:
        fake.stop()
    assert not os.path.exists(path)  # removed at the end, as codex removes its own


def test_each_connection_plays_its_own_cassette(tmp_path: Path) -> None:
    first = session_cassette(tmp_path / "resume.jsonl", thread="thr_first")
    session_cassette(tmp_path / "resume.2.jsonl", thread="thr_second")
    fake = start_fake(first, "ws", tmp_path)
    try:
        async def two() -> tuple[list[dict], list[dict], Conversation]:
            one = await play_session(fake.url)
            two = await play_session(fake.url)
            third = await Conversation.open(fake.url)  # no NAME.3.jsonl: refused with a close frame
            await third.rest()
            return one, two, third

        one, two, third = asyncio.run(two())
        sessions_settled(tmp_path, 3)
    finally:
        code = fake.stop()
    assert one[1]["result"]["thread"]["id"] == "thr_first"
    assert two[1]["result"]["thread"]["id"] == "thr_second"
    assert third.closed is not None and third.closed.rcvd.code == 1011
    assert code == DIVERGED_EXIT  # connection 3 had nothing to play
    found = reports(tmp_path)
    errors = [r for r in found.values() if r.status == "error"]
    assert len(errors) == 1 and "connection 3 has no cassette" in errors[0].divergence.message
    assert sorted(r.status for r in found.values()) == ["error", "ok", "ok", "stopped"]


def test_one_cassette_serves_concurrent_connections(tmp_path: Path) -> None:
    cassette = session_cassette(tmp_path / "s.jsonl")
    fake = start_fake(cassette, "ws", tmp_path)
    try:
        async def both() -> list[list[dict]]:
            return await asyncio.gather(play_session(fake.url), play_session(fake.url))

        sessions = asyncio.run(both())
        sessions_settled(tmp_path, 2)
    finally:
        fake.stop()
    assert all(len(s) == 3 for s in sessions)
    assert [r.status for r in reports(tmp_path).values()].count("ok") == 2


def test_a_dropped_connection_replays_as_one(tmp_path: Path) -> None:
    # codex killed mid-turn: the recording shows its side ending without a close frame.
    cassette = write_cassette(tmp_path / "drop.jsonl", [
        *init_events(), client({"id": 2, "method": "turn/start", "params": {}}),
        server({"id": 2, "result": {"turn": {"id": "t1"}}}),
        server({"method": "item/agentMessage/delta", "params": {"delta": "Once upon"}}),
        Event(side="server", eof=True), Event(side="server", exit="SIGKILL"),
    ], transport="ws")
    fake = start_fake(cassette, "ws", tmp_path)
    try:
        async def drive() -> Conversation:
            conv = await Conversation.open(fake.url)
            await conv.send(INIT)
            await conv.until("id", 1)
            await conv.send({"method": "initialized"})
            await conv.send({"id": 2, "method": "turn/start", "params": {}})
            await conv.rest()
            return conv

        conv = asyncio.run(drive())
        sessions_settled(tmp_path, 1)
    finally:
        fake.stop()
    assert [m.get("method") or m["id"] for m in conv.received] == [1, 2, "item/agentMessage/delta"]
    assert conv.closed is not None and conv.closed.rcvd is None  # no close frame: code 1006, as from codex
    session = next(r for name, r in reports(tmp_path).items() if name.count(".") == 2)
    assert session.status == "ok" and session.exit_code == "SIGKILL"  # as recorded, not a made-up 1


def test_a_client_that_drops_where_the_recording_closed_diverges(tmp_path: Path) -> None:
    cassette = write_cassette(tmp_path / "close.jsonl", [
        *init_events(), Event(side="client", eof=True, close={"code": 1000, "reason": ""}),
        Event(side="server", eof=True)], transport="ws")
    fake = start_fake(cassette, "ws", tmp_path)
    try:
        async def drop() -> None:
            conv = await Conversation.open(fake.url)
            await conv.send(INIT)
            await conv.until("id", 1)
            await conv.send({"method": "initialized"})
            await asyncio.sleep(0.2)  # let the fake take `initialized` before the drop
            conv.ws.transport.abort()

        asyncio.run(drop())
        sessions_settled(tmp_path, 1)
    finally:
        fake.stop()
    session = next(r for name, r in reports(tmp_path).items() if name.count(".") == 2)
    assert session.status == "diverged"
    assert "close the connection with code 1000, but it dropped the connection" in session.divergence.message


def test_a_divergence_is_answered_over_the_socket(tmp_path: Path) -> None:
    fake = start_fake(session_cassette(tmp_path / "s.jsonl"), "ws", tmp_path)
    try:
        async def wrong() -> Conversation:
            conv = await Conversation.open(fake.url)
            await conv.send(INIT)
            await conv.until("id", 1)
            await conv.send({"method": "initialized"})
            await conv.send({"id": 2, "method": "thread/start", "params": {"cwd": "/elsewhere"}})
            await conv.rest()
            return conv

        conv = asyncio.run(wrong())
    finally:
        code = fake.stop()
    error = conv.received[-1]["error"]
    assert error["code"] == DIVERGENCE_CODE and "s.jsonl" in error["message"]
    assert conv.closed is not None and conv.closed.rcvd is not None and conv.closed.rcvd.code == 1000
    assert code == DIVERGED_EXIT


def test_a_socket_cassette_replays_over_stdio(tmp_path: Path) -> None:
    # The client's close frame is its end of stream; on stdio that is closing stdin.
    cassette = write_cassette(tmp_path / "ws.jsonl", [
        *init_events(), Event(side="client", eof=True, close={"code": 1000, "reason": ""}),
        Event(side="server", eof=True)], transport="ws")
    command = FakeCodexCommand(cassette, timeout=WAIT)
    lines = "".join(json.dumps(m) + "\n" for m in (INIT, {"method": "initialized"})).encode()
    proc = subprocess.run(command.cold_argv("app-server"), input=lines, capture_output=True, timeout=60,
                          env=command.env())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0]) == {"id": 1, "result": {"userAgent": "codex_cli_rs/0.163.0"}}


def test_the_stdio_path_imports_no_websockets(tmp_path: Path) -> None:
    cassette = session_cassette(tmp_path / "s.jsonl")
    lines = "\n".join(json.dumps(m) for m in (INIT, {"method": "initialized"}, THREAD)) + "\n"
    probe = ("import os, sys\n"
             "from fake_server.__main__ import main\n"
             "code = main(['--cassette', sys.argv[1], 'app-server'])\n"
             "os.write(2, b'WEBSOCKETS=%d' % ('websockets' in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(cassette)], input=lines.encode(),
                          capture_output=True, timeout=60)
    assert b"WEBSOCKETS=0" in proc.stderr, proc.stderr
    assert b'"thread/started"' in proc.stdout


@pytest.mark.parametrize("frame", [{"code": 4001, "reason": "bye"}, {"code": 1005, "reason": ""}])
def test_a_recorded_server_close_frame_is_sent_as_recorded(tmp_path: Path, frame: dict) -> None:
    cassette = write_cassette(tmp_path / "close.jsonl", [
        *init_events(), Event(side="server", eof=True, close=frame), Event(side="client", eof=True)],
        transport="ws")
    fake = start_fake(cassette, "ws", tmp_path)
    try:
        async def drive() -> Conversation:
            conv = await Conversation.open(fake.url)
            await conv.send(INIT)
            await conv.until("id", 1)
            await conv.send({"method": "initialized"})
            await conv.rest()
            return conv

        conv = asyncio.run(drive())
        sessions_settled(tmp_path, 1)
    finally:
        fake.stop()
    assert conv.closed is not None and conv.closed.rcvd is not None
    assert (conv.closed.rcvd.code, conv.closed.rcvd.reason) == (frame["code"], frame["reason"])
    session = next(r for name, r in reports(tmp_path).items() if name.count(".") == 2)
    assert session.status == "ok"
