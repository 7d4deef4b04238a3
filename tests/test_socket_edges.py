"""Sockets at their edges (issue 21, point 7): a unix path too long for the kernel, a
connection that never upgrades at a SIGTERM, a binary frame. The real recorder, the real
fake and (live) the real codex 0.163.0, every wait bounded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from socket_client import INIT, WAIT, open_ws, run_python, sessions_settled, start_fake  # noqa: E402
from test_socket_fake import THREAD, reports, session_cassette  # noqa: E402

from harness.pytest.sockets import ListeningProcess, listen_url  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HANDSHAKE = REPO / "cassettes" / "optio" / "handshake.jsonl"


def long_unix_url(tmp_path: Path) -> str:
    path = f"{tmp_path}/{'s' * 120}.sock"
    assert len(path.encode()) > 107
    return f"unix://{path}"


def one_paragraph_about_the_limit(err: str, url: str) -> bool:
    return ("Traceback" not in err and url in err and "107 bytes" in err and "108" in err
            and "None" not in err and err.strip().count("\n") == 0)


def test_record_refuses_a_unix_path_too_long_in_one_paragraph(tmp_path: Path) -> None:
    url = long_unix_url(tmp_path)
    done = run_python("import sys, runpy; sys.argv = sys.argv[1:]; runpy.run_module('harness', run_name='__main__')",
                      "harness", "record", "-o", str(tmp_path / "c.jsonl"), "--listen", url, "--",
                      sys.executable, "-m", "fake_server", "--cassette", str(HANDSHAKE), "app-server",
                      "--listen", f"unix://{tmp_path}/up.sock")
    err = done.stderr.decode()
    assert done.returncode == 2 and one_paragraph_about_the_limit(err, url), err


def test_the_fake_refuses_a_unix_path_too_long_in_one_paragraph(tmp_path: Path) -> None:
    url = long_unix_url(tmp_path)
    done = run_python("import sys, runpy; sys.argv = sys.argv[1:]; runpy.run_module('fake_server', "
                      "run_name='__main__')", "fake_server", "--cassette", str(HANDSHAKE), "app-server",
                      "--listen", url)
    err = done.stderr.decode()
    assert done.returncode == 2 and one_paragraph_about_the_limit(err, url), err


@pytest.mark.parametrize("transport", ["ws", "unix"])
def test_a_connection_that_never_upgrades_does_not_hold_a_sigterm(tmp_path: Path, transport: str) -> None:
    fake = start_fake(session_cassette(tmp_path / "s.jsonl"), transport, tmp_path)
    if transport == "ws":
        host, port = fake.url[len("ws://"):].rsplit(":", 1)
        silent = socket.create_connection((host, int(port)), timeout=WAIT)
    else:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(fake.url[len("unix://"):])
    try:
        silent.sendall(b"GET / HTTP/1.1\r\n")  # half a request, then nothing
        time.sleep(0.3)  # accepted, its handshake waiting
        started = time.monotonic()
        fake.proc.send_signal(signal.SIGTERM)
        fake.proc.wait(WAIT)
        took = time.monotonic() - started
    finally:
        silent.close()
        fake.stop()
    assert took < 2.0, f"the fake took {took:.2f} s to end after SIGTERM"


async def send_binary_frames(ws: Any) -> list[dict]:
    """A binary frame holding a valid request, then one of garbage: what came back after
    each (within a second)."""
    after_binary: list[dict] = []
    for payload in (json.dumps({**INIT, "id": 77}).encode(), b"\x00\xffnot json"):
        await ws.send(payload)  # bytes: a binary frame
        try:
            after_binary.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0)))
        except asyncio.TimeoutError:
            pass
    return after_binary


async def binary_then_text(url: str) -> tuple[list[dict], list[dict]]:
    """Binary frames, then the session as text frames: what the binary ones got, and the answers."""
    ws = await open_ws(url)
    after_binary = await send_binary_frames(ws)
    answers = []
    for msg in (INIT, {"method": "initialized"}, THREAD):
        await ws.send(json.dumps(msg))
    while len(answers) < 3:
        answers.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    await ws.close()
    return after_binary, answers


def test_the_fake_ignores_a_binary_frame_as_codex_does(tmp_path: Path) -> None:
    fake = start_fake(session_cassette(tmp_path / "s.jsonl"), "ws", tmp_path)
    try:
        after_binary, answers = asyncio.run(binary_then_text(fake.url))
        sessions_settled(tmp_path, 1)
    finally:
        code = fake.stop()
    assert after_binary == []
    assert [a.get("id") for a in answers] == [1, 2, None]
    assert code == 0
    assert [r.status for r in reports(tmp_path).values()].count("ok") == 1


@pytest.mark.live
def test_codex_ignores_a_binary_frame(tmp_path: Path) -> None:
    """The fact the fake copies: codex 0.163.0 answers no binary frame (not even one holding a
    valid request) and the session goes on."""
    from harness.live.session import LiveCodex, LiveScenario

    live = LiveCodex(LiveScenario(name="binary", codex={"approval_policy": "never"}, model=[])).start()
    try:
        url = listen_url("ws", live.workdir)
        codex = ListeningProcess.start([str(live.binary), "app-server", "--listen", url], live.env, url,
                                       tmp_path / "codex.stderr", cwd=str(live.workdir))
        try:
            async def probe() -> tuple[list[dict], list[dict]]:
                ws = await open_ws(codex.url)
                after_binary = await send_binary_frames(ws)
                await ws.send(json.dumps(INIT))
                answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                await ws.close()
                return after_binary, [answer]

            after_binary, answers = asyncio.run(probe())
            assert codex.proc.poll() is None
        finally:
            codex.proc.terminate()
            codex.proc.wait(WAIT)
    finally:
        live.stop()
    assert after_binary == []
    assert answers[0]["id"] == 1 and "userAgent" in answers[0]["result"]
