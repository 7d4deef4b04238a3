"""The recording proxy (`python -m harness record`) and in-process recording.

The proxy always runs as a real subprocess in front of a real peer: a small
scripted python "server" written below, the real codex binary offline, or the
fake server. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.format.cassette import load_cassette

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
WAIT = 30.0

# The scripted peer: `peer.py MODE [ARG]`.
PEER = r'''
import json, os, signal, sys, time
out = sys.stdout.buffer
def send(obj):
    out.write(json.dumps(obj).encode() + b"\n"); out.flush()
def echo(code=0):
    # Echo every line verbatim (the last one may lack its newline); note it on stderr.
    for line in iter(sys.stdin.buffer.readline, b""):
        out.write(line); out.flush()
        sys.stderr.buffer.write(b"peer got %d bytes\n" % len(line)); sys.stderr.flush()
    sys.exit(code)
mode = sys.argv[1]
if mode == "echo":
    echo(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
elif mode == "env":
    token, key = os.environ["MY_SERVICE_TOKEN"], os.environ["OPENAI_API_KEY"]
    send({"method": "peer/env", "params": {"token": token, "key": key, "cwd": os.getcwd()}})
    sys.stderr.write("peer env: token=%s key=%s\n" % (token, key)); sys.stderr.flush()
    echo()
elif mode == "burst":
    # Each request {"id": k, "params": {"n": N}} gets N notifications, written in one go, then its answer.
    for line in iter(sys.stdin.buffer.readline, b""):
        req = json.loads(line)
        out.write(b"".join(b'{"method":"burst/item","params":{"k":%d,"i":%d}}\n' % (req["id"], i)
                           for i in range(req["params"]["n"])))
        send({"id": req["id"], "result": {"n": req["params"]["n"]}})
elif mode == "pid":
    send({"method": "peer/hello", "params": {"pid": os.getpid()}})
    echo()
elif mode == "signals":
    def on_signal(num, frame):
        send({"method": "peer/signal", "params": {"name": signal.Signals(num).name}})
        if num == signal.SIGINT:
            sys.exit(7)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    send({"method": "peer/hello", "params": {"pid": os.getpid()}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(99)
'''


@pytest.fixture
def peer(tmp_path: Path) -> Path:
    path = tmp_path / "peer.py"
    path.write_text(PEER)
    return path


def proxy_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def record_argv(cassette: Path, *server: str, extra: tuple[str, ...] = (), stderr_file: Path | None = None) -> list[str]:
    argv = [PY, "-m", "harness", "record", "-o", str(cassette)]
    if stderr_file is not None:
        argv += ["--stderr-file", str(stderr_file)]
    return argv + list(extra) + ["--", *server]


async def start_proxy(tmp_path: Path, *server: str, extra: tuple[str, ...] = (),
                      env: dict[str, str] | None = None) -> tuple[asyncio.subprocess.Process, Path, Path]:
    cassette, errfile = tmp_path / "out.jsonl", tmp_path / "server.stderr"
    proc = await asyncio.create_subprocess_exec(
        *record_argv(cassette, *server, extra=extra, stderr_file=errfile),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env or proxy_env(), cwd=str(tmp_path), limit=1 << 26)
    return proc, cassette, errfile


async def read_json_line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
    assert line, "the proxy closed its stdout early"
    return json.loads(line)


async def finish(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes, int]:
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode is not None
    return out, err, proc.returncode


def kinds(cassette_path: Path) -> list[tuple[str, str]]:
    return [(e.side, e.kind) for e in load_cassette(cassette_path).events]


# -- bytes -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bytes_pass_unchanged_and_are_recorded_exactly(tmp_path: Path, peer: Path) -> None:
    big = {"id": 1, "method": "big", "params": {"data": "x" * (16 << 20)}}
    big_line = json.dumps(big).encode()
    invalid = b"\xff\xfe\x00 not utf-8 \x80"
    data = big_line + b"\n" + invalid + b"\n" + b'{"id":2,"method":"small"}\n' + b'{"last":"no newline"}'
    proc, cassette_path, errfile = await start_proxy(tmp_path, PY, str(peer), "echo")
    started = time.monotonic()
    out, err = await asyncio.wait_for(proc.communicate(data), WAIT)
    rc = proc.returncode
    elapsed = time.monotonic() - started
    assert rc == 0, err.decode(errors="replace")
    assert out == data  # every byte back, the 16 MiB line and the missing final newline included
    # stderr passes through, interleaved as the server wrote it, and into the side file
    expected_err = b"".join(b"peer got %d bytes\n" % n for n in
                            (len(big_line) + 1, len(invalid) + 1, 26, len(b'{"last":"no newline"}')))
    assert err == expected_err
    assert errfile.read_bytes() == expected_err

    c = load_cassette(cassette_path)
    assert c.complete and c.meta["end"] == "clean" and c.meta["recorder"] == "proxy"
    for side in ("client", "server"):
        evs = [e for e in c.events if e.side == side and e.kind in ("msg", "raw")]
        assert [e.kind for e in evs] == ["msg", "raw", "msg", "msg"]
        assert evs[0].msg == big
        assert evs[1].raw == invalid
        assert evs[2].msg == {"id": 2, "method": "small"} and evs[2].newline
        assert evs[3].msg == {"last": "no newline"} and not evs[3].newline
    assert ("client", "eof") in kinds(cassette_path)
    assert kinds(cassette_path)[-2:] == [("server", "eof"), ("server", "exit")]
    assert c.events[-1].exit == 0
    print(f"16 MiB line echoed through the proxy and recorded in {elapsed:.2f} s")


@pytest.mark.asyncio
async def test_bursts_are_recorded_whole_and_in_the_order_both_sides_saw(tmp_path: Path, peer: Path) -> None:
    # The recorder waits while a burst streams; what it writes afterwards must still be every
    # line, each request before the burst it provoked and that burst before the next request.
    proc, cassette_path, _ = await start_proxy(tmp_path, PY, str(peer), "burst")
    assert proc.stdin is not None and proc.stdout is not None
    sizes = [20_000, 1, 5_000, 0, 3]
    for k, n in enumerate(sizes, 1):
        proc.stdin.write(b'{"id":%d,"method":"burst","params":{"n":%d}}\n' % (k, n))
        for i in range(n):
            assert json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))["params"] == {"k": k, "i": i}
        assert (await read_json_line(proc)) == {"id": k, "result": {"n": n}}
    proc.stdin.close()
    out, err, rc = await finish(proc)
    assert rc == 0 and out == b"", err.decode(errors="replace")

    c = load_cassette(cassette_path)
    assert c.complete, c.meta.get("end")
    expected: list[tuple[str, Any]] = []
    for k, n in enumerate(sizes, 1):
        expected.append(("client", {"id": k, "method": "burst", "params": {"n": n}}))
        expected += [("server", {"method": "burst/item", "params": {"k": k, "i": i}}) for i in range(n)]
        expected.append(("server", {"id": k, "result": {"n": n}}))
    got = [(e.side, e.msg) for e in c.events if e.kind == "msg"]
    assert len(got) == len(expected)
    assert got == expected
    times = [e.t for e in c.events]
    assert times == sorted(times)


# -- secrets and placeholders ---------------------------------------------------------


@pytest.mark.asyncio
async def test_secrets_never_reach_the_cassette_but_reach_the_client(tmp_path: Path, peer: Path) -> None:
    token, key = "tok-9f8e7d6c5b4a3210", "sk-proj-ZyXwVuTsRqPoNmLkJiHgFeDcBa_01234"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"
    email, password, ticket = "carol@example.org", "pa55-word-!", "TCK-424242"
    client_msg = {"id": 1, "method": "initialize",
                  "params": {"clientInfo": {"name": "sec-client", "version": "2.0"},
                             "auth": f"Bearer {jwt}", "login": {"email": email, "password": password},
                             "note": f"ticket {ticket}", "deep": {"x": [{"pin": "1234-5678"}]},
                             "project": f"{tmp_path}/proj-zeta"}}
    data = json.dumps(client_msg).encode() + b"\n" + f"raw line with {key}\n".encode()
    env = proxy_env(MY_SERVICE_TOKEN=token, OPENAI_API_KEY=key)
    proc, cassette_path, errfile = await start_proxy(
        tmp_path, PY, str(peer), "env", env=env,
        extra=("--redact-regex", r"ticket=TCK-\d{6}", "--redact-path", "pin=$.params.deep.x[*].pin",
               "--placeholder", "project=proj-zeta"))
    out, err = await asyncio.wait_for(proc.communicate(data), WAIT)
    assert proc.returncode == 0, err.decode(errors="replace")
    # Transparent: the client sees the secrets exactly as the server sent them.
    first, rest = out.split(b"\n", 1)
    assert json.loads(first)["params"]["token"] == token and json.loads(first)["params"]["key"] == key
    assert rest == data
    assert token.encode() in err and key.encode() in err  # stderr passthrough is untouched too

    blob = cassette_path.read_bytes() + errfile.read_bytes()
    for secret in (token, key, jwt, email, password, ticket, "1234-5678", "proj-zeta", str(tmp_path)):
        assert secret.encode() not in blob, f"{secret!r} leaked into the cassette"
    c = load_cassette(cassette_path)
    # `Bearer <jwt>` is a bearer token; `token=...` and `"token": ...` are secret-named fields.
    assert set(c.meta["redactions"]) >= {"env:OPENAI_API_KEY", "bearer_token", "token",
                                         "email", "password", "ticket", "pin"}
    assert c.meta["client"] == {"name": "sec-client", "version": "2.0"}
    assert {"cwd", "home", "project"} <= set(c.meta["placeholders"])
    env_note = next(e for e in c.messages("server") if e.msg.get("method") == "peer/env")
    assert env_note.msg["params"] == {"token": "{{redacted:token}}",
                                      "key": "{{redacted:env:OPENAI_API_KEY}}", "cwd": "{{cwd}}"}
    init = next(c.messages("client")).msg["params"]
    assert init["project"] == "{{cwd}}/{{project}}"
    assert init["deep"] == {"x": [{"pin": "{{redacted:pin}}"}]}
    assert b"token={{redacted:token}}" in errfile.read_bytes()


# -- ends of a recording ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_exit_code_passes_through(tmp_path: Path, peer: Path) -> None:
    proc, cassette_path, _ = await start_proxy(tmp_path, PY, str(peer), "echo", "3")
    out, err = await asyncio.wait_for(proc.communicate(b'{"id":1,"method":"x"}\n'), WAIT)
    assert proc.returncode == 3 and out == b'{"id":1,"method":"x"}\n'
    c = load_cassette(cassette_path)
    assert c.events[-1].exit == 3
    assert not c.complete and "code 3" in c.meta["end"]


@pytest.mark.asyncio
async def test_server_killed_leaves_an_incomplete_cassette(tmp_path: Path, peer: Path) -> None:
    proc, cassette_path, _ = await start_proxy(tmp_path, PY, str(peer), "pid")
    hello = await read_json_line(proc)
    os.kill(hello["params"]["pid"], signal.SIGKILL)
    _, _, rc = await finish(proc)
    assert rc == -signal.SIGKILL  # the proxy dies the way its server died
    c = load_cassette(cassette_path)
    assert not c.complete and c.events[-1].exit == "SIGKILL"
    assert ("server", "eof") in kinds(cassette_path)
    assert "SIGKILL" in c.meta["end"]


@pytest.mark.asyncio
async def test_proxy_sigterm_is_forwarded_and_leaves_an_incomplete_cassette(tmp_path: Path, peer: Path) -> None:
    proc, cassette_path, _ = await start_proxy(tmp_path, PY, str(peer), "pid")
    assert proc.stdin is not None
    proc.stdin.write(b'{"id":1,"method":"ping"}\n')
    await read_json_line(proc)  # hello
    assert (await read_json_line(proc))["method"] == "ping"
    proc.send_signal(signal.SIGTERM)
    _, _, rc = await finish(proc)
    assert rc == -signal.SIGTERM
    c = load_cassette(cassette_path)
    assert not c.complete and c.events[-1].exit == "SIGTERM" and "SIGTERM" in c.meta["end"]
    assert sorted(e.msg["method"] for e in c.messages()) == ["peer/hello", "ping", "ping"]


@pytest.mark.asyncio
async def test_sigterm_after_the_client_closed_is_a_clean_end(tmp_path: Path, peer: Path) -> None:
    """The openai-codex SDK's close(): stdin closed, then SIGTERM at once. The session was over."""
    proc, cassette_path, _ = await start_proxy(tmp_path, PY, str(peer), "signals")  # ignores EOF
    assert proc.stdin is not None
    await read_json_line(proc)  # hello
    proc.stdin.close()
    partial = cassette_path.with_name("out.jsonl.partial")
    for _ in range(200):  # the proxy has seen the EOF before the signal, as with the SDK's pipe
        if '"eof"' in partial.read_text():
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, _, rc = await finish(proc)
    assert rc == -signal.SIGTERM  # the server died by it; the proxy dies the same way
    c = load_cassette(cassette_path)
    assert c.complete, c.meta.get("end")
    assert ("client", "eof") in kinds(cassette_path)


@pytest.mark.asyncio
async def test_signals_are_forwarded_to_the_server(tmp_path: Path, peer: Path) -> None:
    proc, cassette_path, _ = await start_proxy(tmp_path, PY, str(peer), "signals")
    await read_json_line(proc)  # hello: the server's handlers are installed
    proc.send_signal(signal.SIGHUP)
    assert (await read_json_line(proc))["params"] == {"name": "SIGHUP"}
    proc.send_signal(signal.SIGINT)
    assert (await read_json_line(proc))["params"] == {"name": "SIGINT"}
    _, _, rc = await finish(proc)
    assert rc == 7  # the server's own exit code after SIGINT
    c = load_cassette(cassette_path)
    assert [e.msg["params"].get("name") for e in c.messages("server")][1:] == ["SIGHUP", "SIGINT"]
    assert c.events[-1].exit == 7 and not c.complete


CLIENT = r'''
import subprocess, sys
proxy = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
proxy.stdin.write(b'{"id":1,"method":"ping"}\n'); proxy.stdin.flush()
line = proxy.stdout.readline()
print("ready", proxy.pid, line.decode().strip(), flush=True)
sys.stdin.read()   # until the test kills us
'''


@pytest.mark.asyncio
async def test_client_killed_leaves_an_incomplete_cassette(tmp_path: Path, peer: Path) -> None:
    cassette_path = tmp_path / "out.jsonl"
    client = await asyncio.create_subprocess_exec(
        PY, "-c", CLIENT, *record_argv(cassette_path, PY, str(peer), "echo"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env=proxy_env(), cwd=str(tmp_path))
    assert client.stdout is not None
    ready = await asyncio.wait_for(client.stdout.readline(), WAIT)
    assert ready.startswith(b"ready") and b'"ping"' in ready, ready
    proxy_pid = int(ready.split()[1])
    client.kill()
    await asyncio.wait_for(client.wait(), WAIT)
    deadline = time.monotonic() + WAIT
    while not cassette_path.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert cassette_path.exists(), "the proxy did not write its cassette after the client died"
    c = load_cassette(cassette_path)
    assert not c.complete and "client went away" in c.meta["end"]
    assert ("client", "eof") in kinds(cassette_path) and c.events[-1].exit == 0
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and Path(f"/proc/{proxy_pid}").exists() \
            and "Z" not in Path(f"/proc/{proxy_pid}/stat").read_text().split()[2]:
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_usage_errors_are_one_paragraph(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "harness", "record", "-o", str(tmp_path / "x.jsonl"), "--redact-regex", "oops",
        "--", "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=proxy_env())
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 2 and out == b""
    assert err.startswith(b"codex-cassette: redaction rule 'oops' must look like KIND=REGEX") and b"Traceback" not in err
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "harness", "record", "-o", str(tmp_path / "y.jsonl"), "--", str(tmp_path / "missing-binary"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=proxy_env())
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 2 and b"cannot start" in err and b"Traceback" not in err
    assert not load_cassette(tmp_path / "y.jsonl").complete


# -- in-process recording with the optio driver ----------------------------------------

# A tiny app-server stand-in: enough protocol for CodexConversation's bootstrap and a turn.
APP_SERVER = r'''
import json, sys
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    method, rid = msg.get("method"), msg.get("id")
    if method == "initialize":
        send({"id": rid, "result": {"userAgent": "codex_cli_rs/9.8.7 (test)", "codexHome": sys.argv[1]}})
    elif method == "account/read":
        send({"id": rid, "result": {"account": None, "requiresOpenaiAuth": False}})
    elif method == "model/list":
        send({"id": rid, "result": {"data": []}})
    elif method == "thread/start":
        send({"id": rid, "result": {"thread": {"id": "thr_1", "cwd": msg["params"]["cwd"]},
                                    "model": "m", "modelProvider": "mock"}})
    elif method == "turn/start":
        send({"id": rid, "result": {"turn": {"id": "turn_1", "status": "inProgress", "items": []}}})
        for word in ("hello ", "world"):
            send({"method": "item/agentMessage/delta", "params": {"threadId": "thr_1", "turnId": "turn_1",
                                                                   "itemId": "msg_1", "delta": word}})
        send({"method": "turn/completed", "params": {"threadId": "thr_1", "turn": {"id": "turn_1", "status": "completed"}}})
'''


async def drive_optio(handle: Any, cwd: str) -> str:
    """Bootstrap CodexConversation on `handle`, run one turn, return the answer."""
    from optio_codex.conversation import CodexConversation

    conv = CodexConversation(cwd=cwd)
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_message(text: str) -> None:
        if not answer.done():
            answer.set_result(text)
    conv.on_message(on_message)
    try:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
        await conv.send("say hello")
        return await asyncio.wait_for(answer, WAIT)
    finally:
        handle.stdin.close()
        await asyncio.wait_for(reader, WAIT)


@pytest.mark.asyncio
async def test_recording_handle_around_optio_host_process(tmp_path: Path) -> None:
    from optio_host.host import LocalHost

    from harness.record.handle import RecordingHandle

    script = tmp_path / "app_server.py"
    script.write_text(APP_SERVER)
    host = LocalHost(str(tmp_path))
    raw = await host.launch_subprocess(f"{PY} {script} {tmp_path}/codex-home", stdin=True, merge_stderr=False,
                                       cwd=str(tmp_path))
    cassette_path = tmp_path / "inproc.jsonl"
    async with RecordingHandle(raw, cassette_path, command=["app_server.py"]) as handle:
        assert handle.pid_like is raw.pid_like  # other attributes pass through
        answer = await drive_optio(handle, str(tmp_path))
        await asyncio.wait_for(raw.pid_like.wait(), WAIT)
    assert answer == "hello world"
    c = load_cassette(cassette_path)
    assert c.complete and c.meta["recorder"] == "in-process"
    assert c.meta["client"] == {"name": "optio_codex", "version": "0.1.0"} and c.meta["codex_version"] == "9.8.7"
    methods = [e.msg.get("method") for e in c.messages("client")]
    assert methods == ["initialize", "initialized", "account/read", "model/list", "thread/start", "turn/start"]
    start = next(e for e in c.messages("client") if e.msg.get("method") == "thread/start")
    assert start.msg["params"]["cwd"] == str(tmp_path)  # the test's cwd is elsewhere: no placeholder
    assert [(e.side, e.kind) for e in c.events[-3:]] == [("client", "eof"), ("server", "eof"), ("server", "exit")]
    assert c.events[-1].exit == 0
    assert len(list(c.messages("server"))) == 8


@pytest.mark.live
@pytest.mark.asyncio
async def test_optio_through_proxy_to_real_codex_then_to_the_fake_server(tmp_path: Path) -> None:
    """optio -> proxy -> real codex (offline) records A; optio -> proxy -> fake server
    replaying A records B; B holds the same messages as A."""
    from optio_host.host import LocalHost

    from harness.live import MockModel, TextStep, check_mock_provider, find_codex_binary, make_codex_home

    try:
        codex = find_codex_binary()
    except Exception as exc:  # not installed: nothing to record from
        pytest.skip(f"no codex binary: {exc}")
    host = LocalHost(str(tmp_path))
    os.makedirs(host.workdir, exist_ok=True)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    async with MockModel([TextStep("hello from the mock", chunks=3)]) as mock:
        home = make_codex_home(mock.base_url, tmp_path / "codexhome")
        env = {k: v for k, v in home.env.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
        argv = record_argv(first, str(codex), "app-server")
        raw = await host.launch_subprocess(" ".join(map(str, argv)), env=env, stdin=True, merge_stderr=False)
        answer = await drive_optio(raw, host.workdir)
        await asyncio.wait_for(raw.pid_like.wait(), WAIT)
    assert answer == "hello from the mock"
    a = load_cassette(first)
    start = next(e for e in a.messages("server") if "modelProvider" in (e.msg.get("result") or {}))
    check_mock_provider(start.msg["result"])
    assert a.complete, a.meta
    assert a.meta["client"]["name"] == "optio_codex" and a.meta["codex_version"].count(".") == 2
    assert {"cwd", "home", "codex_home"} <= set(a.meta["placeholders"])
    assert str(home.codex_home).encode() not in first.read_bytes()

    fake = [PY, "-m", "fake_server", "--cassette", str(first), "app-server"]
    raw = await host.launch_subprocess(" ".join(record_argv(second, *fake)), env=env, stdin=True,
                                       merge_stderr=False)
    answer = await drive_optio(raw, host.workdir)
    await asyncio.wait_for(raw.pid_like.wait(), WAIT)
    assert answer == "hello from the mock"
    b = load_cassette(second)

    def msgs(c: Any, side: str) -> list[str]:
        return sorted(json.dumps(e.msg, sort_keys=True) for e in c.messages(side))
    assert msgs(b, "client") == msgs(a, "client")
    assert msgs(b, "server") == msgs(a, "server")


@pytest.mark.asyncio
async def test_round_trip_through_the_proxy_then_replayed_with_placeholders_rebound(tmp_path: Path) -> None:
    """optio -> proxy -> fake server (a core-suite scenario) records C; C then replays to
    optio from another directory: the same messages, live ids mapped, {{cwd}} bound anew."""
    from optio_host.host import LocalHost

    from fake_server import FakeCodexCommand, InProcessCodex

    scenario = REPO / "tests" / "scenarios" / "text_turn.yaml"
    host = LocalHost(str(tmp_path / "host"))
    os.makedirs(host.workdir, exist_ok=True)
    recorded = tmp_path / "c.jsonl"
    fake = FakeCodexCommand(scenario, timeout=10)
    argv = record_argv(recorded, *fake.argv())
    raw = await host.launch_subprocess(" ".join(argv), env=proxy_env(), cwd=host.workdir, stdin=True,
                                       merge_stderr=False)
    first_cwd = host.workdir
    answer = await drive_optio_turns(raw, first_cwd, ["Say hello to the world", "Say hello"])
    await asyncio.wait_for(raw.pid_like.wait(), WAIT)
    assert answer == ["Hello, world.", "Hello!"]
    c = load_cassette(recorded)
    assert c.complete and "cwd" in c.meta["placeholders"]
    assert first_cwd.encode() not in recorded.read_bytes()          # the cwd became {{cwd}}
    start = next(e.msg for e in c.messages("client") if e.msg.get("method") == "thread/start")
    assert start["params"]["cwd"] == "{{cwd}}"

    elsewhere = str(tmp_path / "elsewhere")
    handle = InProcessCodex(c)
    answer = await drive_optio_turns(handle, elsewhere, ["Say hello to the world", "Say hello"])
    await asyncio.wait_for(handle.wait(), WAIT)
    assert answer == ["Hello, world.", "Hello!"]
    report = handle.report
    assert report.status == "ok" and not report.unplayed, report.summary()
    assert report.bindings["cwd"] == elsewhere


async def drive_optio_turns(handle: Any, cwd: str, prompts: list[str]) -> list[str]:
    from optio_codex.conversation import CodexConversation

    conv = CodexConversation(cwd=cwd)
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    answers: asyncio.Queue[str] = asyncio.Queue()
    conv.on_message(answers.put_nowait)
    try:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
        out = []
        for prompt in prompts:
            await conv.send(prompt)
            out.append(await asyncio.wait_for(answers.get(), WAIT))
        return out
    finally:
        handle.stdin.close()
        await asyncio.wait_for(reader, WAIT)
