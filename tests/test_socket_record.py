"""`codex-cassette record --listen`: the socket recorder, its CLI, in front of a server that
listens as codex does (here the fake itself, a real subprocess printing codex's banner;
the real codex is in test_socket_live.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from socket_client import (INIT, WAIT, Conversation, client, init_events, server,  # noqa: E402
                           sessions_settled, start_fake, write_cassette)

from fake_server.commands import FakeCodexCommand  # noqa: E402
from harness.format.cassette import Event, load_cassette  # noqa: E402
from harness.pytest.sockets import ListeningProcess, listen_url  # noqa: E402

SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"


def upstream_cassette(path: Path, note: str = "hello") -> Path:
    return write_cassette(path, [
        *init_events(), client({"id": 2, "method": "model/list", "params": {"note": note}}),
        server({"id": 2, "result": {"data": []}}),
        server({"method": "thread/started", "params": {"thread": {"id": "thr_1"}}}),
        Event(side="client", eof=True), Event(side="server", eof=True)])


def start_recorder(tmp_path: Path, upstream: Path, transport: str = "ws", out: str = "rec.jsonl",
                   *flags: str) -> ListeningProcess:
    """`record --listen URL -- <the fake listening as codex would>`."""
    fake = FakeCodexCommand(upstream, timeout=WAIT, extra=["--linger=2"])
    url = listen_url(transport, tmp_path, "client.sock")
    argv = [sys.executable, "-m", "harness", "record", "-o", str(tmp_path / out), "--listen", url, *flags, "--",
            *fake.cold_argv("app-server", "--listen", listen_url(transport, tmp_path, "upstream.sock"))]
    return ListeningProcess.start(argv, fake.env(), url, tmp_path / "recorder.stderr")


async def session(url: str, *, close: bool = True, reason: str = "", note: str = "hello") -> Conversation:
    conv = await Conversation.open(url)
    await conv.send(INIT)
    await conv.until("id", 1)
    await conv.send({"method": "initialized"})
    await conv.send({"id": 2, "method": "model/list", "params": {"note": note}})
    await conv.until("method", "thread/started")
    if close:
        await conv.ws.close(1000, reason)
    return conv


def meta(path: Path) -> dict:
    return load_cassette(path).meta


@pytest.mark.parametrize("transport", ["ws", "unix"])
def test_two_connections_two_cassettes_then_each_replays(tmp_path: Path, transport: str) -> None:
    recorder = start_recorder(tmp_path, upstream_cassette(tmp_path / "up.jsonl"), transport)
    try:
        async def both() -> list[Conversation]:
            return await asyncio.gather(session(recorder.url), session(recorder.url))

        asyncio.run(both())
    finally:
        code = recorder.stop()
    assert code == 0, recorder.stderr_tail()
    first, second = tmp_path / "rec.jsonl", tmp_path / "rec.2.jsonl"
    for n, path in enumerate((first, second), 1):
        head = meta(path)
        assert (head["complete"], head["end"], head["transport"], head["connection"]) == (True, "clean", transport, n)
        kinds = [e.kind for e in load_cassette(path).events]
        assert kinds.count("msg") == 6 and kinds[-2:] == ["eof", "eof"]
    # Recorded from a socket, replayed by the fake on a socket to the same client, a session each.
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    fake = start_fake(first, transport, replay_dir)
    try:
        asyncio.run(session(fake.url))
        asyncio.run(session(fake.url))
        sessions_settled(replay_dir, 2)
    finally:
        assert fake.stop() == 0, fake.stderr_tail()


def test_secrets_in_frames_and_close_reasons_are_redacted(tmp_path: Path) -> None:
    recorder = start_recorder(tmp_path, upstream_cassette(tmp_path / "up.jsonl", note=SECRET))
    try:
        asyncio.run(session(recorder.url, note=SECRET, reason=f"bye {SECRET}"))
    finally:
        recorder.stop()
    text = (tmp_path / "rec.jsonl").read_text()
    assert SECRET not in text
    cassette = load_cassette(tmp_path / "rec.jsonl")
    assert cassette.meta["redactions"] == ["openai_api_key"]
    assert cassette.events[3].msg["params"]["note"] == "{{redacted:openai_api_key}}"
    assert [e.close for e in cassette.events if e.close][0]["reason"] == "bye {{redacted:openai_api_key}}"


def test_a_health_probe_passes_through_and_records_nothing(tmp_path: Path) -> None:
    recorder = start_recorder(tmp_path, upstream_cassette(tmp_path / "up.jsonl"))
    try:
        port = int(recorder.url.rsplit(":", 1)[1])

        async def probe() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            writer.close()
            return head

        assert asyncio.run(probe()).startswith(b"HTTP/1.1 200")
    finally:
        recorder.stop()
    assert not (tmp_path / "rec.jsonl").exists()
    banner = (tmp_path / "recorder.stderr").read_text().splitlines()
    assert banner.count("codex app-server (WebSockets)") == 1  # ours; the server's own is not passed on
    assert f"  listening on: {recorder.url}" in banner


def test_a_client_that_drops_is_recorded_as_a_drop(tmp_path: Path) -> None:
    recorder = start_recorder(tmp_path, upstream_cassette(tmp_path / "up.jsonl"))
    try:
        async def drop() -> None:
            conv = await session(recorder.url, close=False)
            conv.ws.transport.abort()
            await asyncio.sleep(0.2)

        asyncio.run(drop())
    finally:
        recorder.stop()
    cassette = load_cassette(tmp_path / "rec.jsonl")
    assert cassette.meta["complete"] is False
    assert cassette.meta["end"] == "the client dropped the connection without a close frame"
    ends = [e for e in cassette.events if e.eof]
    assert ends[0].side == "client" and ends[0].close is None


def test_the_authorization_header_passes_and_is_never_recorded(tmp_path: Path) -> None:
    recorder = start_recorder(tmp_path, upstream_cassette(tmp_path / "up.jsonl"))
    token = "capability-" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    try:
        async def with_header() -> None:
            from websockets.asyncio.client import connect

            ws = await connect(recorder.url, additional_headers={"Authorization": f"Bearer {token}"},
                               compression=None)
            await ws.send(json.dumps(INIT))
            await asyncio.wait_for(ws.recv(), WAIT)
            await ws.close()

        asyncio.run(with_header())
    finally:
        recorder.stop()
    assert token not in (tmp_path / "rec.jsonl").read_text()


def test_a_re_recording_with_fewer_sessions_drops_the_stale_ones(tmp_path: Path) -> None:
    stale = write_cassette(tmp_path / "rec.2.jsonl", init_events())
    recorder = start_recorder(tmp_path, upstream_cassette(tmp_path / "up.jsonl"))
    try:
        asyncio.run(session(recorder.url))
    finally:
        recorder.stop()
    assert (tmp_path / "rec.jsonl").is_file() and not stale.exists()


def test_usage_errors_name_the_missing_half(tmp_path: Path) -> None:
    out = str(tmp_path / "x.jsonl")
    both = subprocess.run([sys.executable, "-m", "harness", "record", "-o", out, "--", "codex", "app-server",
                           "--listen", "ws://127.0.0.1:0"], capture_output=True, timeout=60)
    assert both.returncode == 2 and b"give --listen URL too" in both.stderr
    stdio = subprocess.run([sys.executable, "-m", "harness", "record", "-o", out, "--listen", "ws://127.0.0.1:0",
                            "--", "codex", "app-server"], capture_output=True, timeout=60)
    assert stdio.returncode == 2 and b"must listen on a socket too" in stdio.stderr
    bad = subprocess.run([sys.executable, "-m", "harness", "record", "-o", out, "--listen", "ws://localhost",
                          "--", "codex", "app-server"], capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"ws:// takes an IP address and a port" in bad.stderr


def test_the_provider_guard_cuts_a_socket_session_before_the_client_hears(tmp_path: Path) -> None:
    upstream = write_cassette(tmp_path / "up.jsonl", [
        *init_events(), client({"id": 2, "method": "thread/start", "params": {}}),
        server({"id": 2, "result": {"thread": {"id": "thr_1"}, "modelProvider": "openai"}}),
        Event(side="client", eof=True), Event(side="server", eof=True)])
    recorder = start_recorder(tmp_path, upstream, "ws", "rec.jsonl", "--require-model-provider", "mock")
    try:
        async def ask() -> Conversation:
            conv = await Conversation.open(recorder.url)
            await conv.send(INIT)
            await conv.until("id", 1)
            await conv.send({"method": "initialized"})
            await conv.send({"id": 2, "method": "thread/start", "params": {}})
            await conv.rest()
            return conv

        conv = asyncio.run(ask())
        code = recorder.proc.wait(WAIT)  # it stopped "codex" and ends by itself
    finally:
        recorder.stop()
    assert [m.get("id") for m in conv.received] == [1]  # the answer naming another provider never came
    assert code == 2
    cassette = load_cassette(tmp_path / "rec.jsonl")
    assert cassette.meta["complete"] is False and "not 'mock'" in cassette.meta["end"]
    assert not [e for e in cassette.events if e.msg and e.msg.get("id") == 2 and e.side == "server"]
