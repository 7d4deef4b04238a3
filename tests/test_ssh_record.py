"""Recording a codex on another host: `codex-cassette record --ssh ...` and the pytest
plugin's ``{"ssh": {...}}`` option, against a real asyncssh server on 127.0.0.1
(tests/sshd.py, key-based auth). The remote "codex" is the fake server, or the real
codex offline (marked live). Each recording is then replayed to the same driver.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

sys.path.insert(0, os.path.dirname(__file__))

from sshd import SSHTestServer  # noqa: E402

from harness.format.cassette import load_cassette  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TEXT_TURN = REPO / "tests" / "scenarios" / "text_turn.yaml"
APPROVAL = REPO / "cassettes" / "live" / "approval.yaml"
T = 10.0  # the bound on any single wait here
END = 5.0  # a failing proxy must be gone within this long


def local_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def ssh_flags(srv: SSHTestServer, *, known_hosts: str | None = None, identity: str | None = None,
              port: int | None = None) -> list[str]:
    return ["--ssh", f"tester@127.0.0.1:{port or srv.port}", "--identity", identity or srv.client_key_path,
            "--known-hosts", known_hosts or srv.known_hosts_path, "--connect-timeout", "5"]


def fake_codex_remote(tmp_path: Path) -> list[str]:
    """Flags and command that make the fake server the remote codex."""
    remote_cwd = tmp_path / "remote"
    remote_cwd.mkdir(exist_ok=True)
    return ["--remote-cwd", str(remote_cwd), "--remote-env", f"PYTHONPATH={REPO}",
            "--", PY, "-m", "fake_server", "--cassette", str(TEXT_TURN)]


def record_argv(cassette: Path, *flags: str) -> list[str]:
    return [PY, "-m", "harness", "record", "-o", str(cassette), *flags]


async def launch(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> tuple[Any, Any, bytearray]:
    """The proxy launched by optio's own host layer, as conftest.launch_fake_subprocess does;
    its stderr collected."""
    from optio_host.host import LocalHost

    host = LocalHost(str(tmp_path / "optio-host"))
    os.makedirs(host.workdir, exist_ok=True)
    handle = await host.launch_subprocess(shlex.join(argv), env=env or local_env(), stdin=True, merge_stderr=False)
    err = bytearray()

    async def collect() -> None:
        async for chunk in handle.stderr:
            err.extend(chunk)

    handle._err_task = asyncio.ensure_future(collect())  # noqa: SLF001 - the test's own bookkeeping
    return host, handle, err


async def proxy_exit(handle: Any) -> int:
    code = await asyncio.wait_for(handle.pid_like.wait(), T)
    await asyncio.wait_for(handle._err_task, T)
    return code


async def text_turns(session: Any) -> list[str]:
    assert await session.turn("Say hello to the world") == "Hello, world."
    assert await session.turn("Say hello") == "Hello!"
    await session.until(lambda: sum(e.get("method") == "turn/completed" for e in session.events) == 2,
                        T, "the second turn/completed")
    return session.messages


def shape(session: Any) -> list[Any]:
    """What the driver's user saw, minus timing: each event's method (or response)."""
    return [e.get("method") or ("response" if "result" in e else e.get("type")) for e in session.events]


async def replay(cassette: Path, optio_start: Any, **conv: Any) -> tuple[Any, Any]:
    from fake_server import InProcessCodex

    fake = InProcessCodex(cassette)
    session = await optio_start(fake, **conv)
    return fake, session


async def end_replay(fake: Any, session: Any) -> None:
    session.handle.stdin.close()
    assert await fake.wait(T) == 0
    await session.close()
    report = fake.report
    assert report.status == "ok" and not report.failed(), report.summary()
    assert report.played == report.total


# -- a session recorded over SSH, then replayed -------------------------------------------


@pytest.mark.asyncio
async def test_optio_recorded_through_ssh_then_replayed(tmp_path: Path, optio_start: Any) -> None:
    cassette = tmp_path / "text_turn.jsonl"
    async with SSHTestServer(tmp_path) as srv:
        t0 = time.monotonic()
        host, handle, err = await launch(record_argv(cassette, *ssh_flags(srv), *fake_codex_remote(tmp_path)),
                                         tmp_path)
        session = await optio_start(handle, cwd="/work/x")
        recorded = await text_turns(session)
        seen = shape(session)
        session.handle.stdin.close()  # how optio hangs up: the remote fake sees EOF and exits 0
        assert await proxy_exit(handle) == 0, err.decode(errors="replace")
        await session.close()
        elapsed = time.monotonic() - t0

    c = load_cassette(cassette)
    assert c.complete and c.meta["end"] == "clean", c.meta
    assert c.meta["ssh"] == {"target": f"tester@127.0.0.1:{srv.port}", "host_key_checked": True,
                             "remote_env": ["PYTHONPATH"]}  # names, never values
    assert c.meta["recorder"] == "proxy" and c.meta["client"]["name"] == "optio_codex"
    assert c.meta["command"][-2:] == ["--cassette", str(TEXT_TURN)]
    header = cassette.read_text().splitlines()[0]
    assert srv.client_key_path not in header and "client_key" not in header  # the target, never keys
    assert c.events[-1].exit == 0 and ("client", "eof") in [(e.side, e.kind) for e in c.events]
    methods = [e.msg.get("method") for e in c.events if e.kind == "msg" and e.side == "client"]
    assert methods[:2] == ["initialize", "initialized"] and methods.count("turn/start") == 2

    fake, again = await replay(cassette, optio_start, cwd="/work/x")
    assert await text_turns(again) == recorded == ["Hello, world.", "Hello!"]
    assert shape(again) == seen
    await end_replay(fake, again)
    print(f"\nrecorded 2 optio turns through SSH + proxy + fake in {elapsed:.2f} s")


@pytest.mark.live
@pytest.mark.asyncio
async def test_real_codex_recorded_through_ssh_then_replayed(tmp_path: Path, optio_start: Any) -> None:
    from optio_agents.conversation import PermissionDecision

    from harness.live.session import LiveCodex, LiveScenario

    cassette = tmp_path / "approval.jsonl"
    async with LiveCodex(LiveScenario.load(APPROVAL)) as live, SSHTestServer(tmp_path) as srv:
        # Only what the offline setup changes travels: CODEX_HOME, HOME, XDG_*, NO_PROXY.
        changed = {k: v for k, v in live.env.items() if os.environ.get(k) != v}
        assert "CODEX_HOME" in changed
        flags = ssh_flags(srv) + ["--remote-cwd", str(live.workdir)]
        flags += [f"--remote-env={k}={v}" for k, v in changed.items()]
        t0 = time.monotonic()
        host, handle, err = await launch(record_argv(cassette, *flags, "--", *live.argv), tmp_path)
        session = await optio_start(handle, cwd=str(live.workdir), permission_gate=True)
        started = [e for e in session.events if isinstance(e.get("result"), dict) and "thread" in e["result"]]
        assert started and started[0]["result"]["modelProvider"] == "mock"  # offline, never the internet
        asked: list[str] = []

        async def allow(request: Any) -> Any:
            asked.append(request.tool_name)
            return PermissionDecision(behavior="allow")

        session.conv.on_permission_request(allow)
        assert await session.turn("Run echo hi", timeout=30) == "The command printed hi."
        assert asked and "echo hi" in asked[0]
        session.handle.stdin.close()
        assert await proxy_exit(handle) == 0, err.decode(errors="replace")
        await session.close()
        elapsed = time.monotonic() - t0
        assert len(live.mock.requests) == 2  # the mock model served both model calls
        codex_home = str(live.home.codex_home)

    c = load_cassette(cassette)
    assert c.complete and c.meta["codex_version"] == live.version
    assert c.meta["ssh"]["target"] == f"tester@127.0.0.1:{srv.port}"
    assert codex_home not in cassette.read_text()  # templatized as {{codex_home}}

    fake, again = await replay(cassette, optio_start, cwd="/work/replayed", permission_gate=True)
    again.conv.on_permission_request(allow)
    assert await again.turn("Run echo hi") == "The command printed hi."
    assert len(asked) == 2
    await end_replay(fake, again)
    assert fake.report.bindings["cwd"] == "/work/replayed"
    print(f"\nreal codex recorded through SSH in {elapsed:.2f} s")


@pytest.mark.asyncio
async def test_bytes_stderr_env_cwd_and_exit_code_cross_ssh(tmp_path: Path) -> None:
    cassette, remote_cwd = tmp_path / "bytes.jsonl", tmp_path / "remote dir"
    remote_cwd.mkdir()
    data = b'{"id":1,"method":"x","params":{"s":"\xc3\xa9"}}\n\xff\xfe not utf-8\n{"last":"no newline"}'
    script = 'printf "%s|%s\\n" "$MY_VAR" "$(pwd)" >&2; cat; exit 3'
    async with SSHTestServer(tmp_path) as srv:
        proc = await asyncio.create_subprocess_exec(
            *record_argv(cassette, *ssh_flags(srv), "--remote-cwd", str(remote_cwd),
                         "--remote-env", "MY_VAR=a 'quoted' $value", "--", "sh", "-c", script),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=local_env())
        out, err = await asyncio.wait_for(proc.communicate(data), T)
    assert out == data  # byte for byte, the invalid line and the missing last newline included
    assert err == f"a 'quoted' $value|{remote_cwd}\n".encode()  # remote stderr, passed through
    assert proc.returncode == 3
    c = load_cassette(cassette)
    assert not c.complete and c.meta["end"] == "the server exited with code 3"
    assert c.events[-1].exit == 3
    server = [e for e in c.events if e.side == "server" and e.kind in ("msg", "raw")]
    assert [e.kind for e in server] == ["msg", "raw", "msg"] and not server[-1].newline


# -- failures: clear error, bounded exit, a loadable partial cassette -----------------------


async def failing_record(argv: list[str]) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=local_env())
    out, err = await asyncio.wait_for(proc.communicate(), T)
    assert out == b""
    return proc.returncode, err.decode(), time.monotonic() - t0


def one_paragraph(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codex-cassette: "), err
    return lines[0]


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.asyncio
async def test_connection_failures_leave_an_explained_empty_cassette(tmp_path: Path) -> None:
    # The four refusals run side by side (each is a proxy process of its own) to keep the module quick.
    async with SSHTestServer(tmp_path) as srv:
        cases = {
            "wrong_host_key": (ssh_flags(srv, known_hosts=srv.wrong_known_hosts_path), ["cat"],
                               f"host key of tester@127.0.0.1:{srv.port} has CHANGED"),
            "bad_client_key": (ssh_flags(srv, identity=srv.unauthorized_key_path), ["cat"],
                               f"Authentication as 'tester' on tester@127.0.0.1:{srv.port} failed"),
            "refused": (ssh_flags(srv, port=closed_port()), ["cat"], "connection refused"),
            "missing_command": (ssh_flags(srv), ["codex-not-installed", "app-server"],
                                f"'codex-not-installed' was not found on tester@127.0.0.1:{srv.port}"),
        }
        results = await asyncio.gather(*(
            failing_record(record_argv(tmp_path / f"{case}.jsonl", *flags, "--", *command))
            for case, (flags, command, _) in cases.items()))
        assert srv.connection_count == 0
    for (case, (_, _, expected)), (code, err, elapsed) in zip(cases.items(), results):
        assert code == 2 and expected in one_paragraph(err), (case, err)
        assert elapsed < END, (case, elapsed)
        cassette = tmp_path / f"{case}.jsonl"
        c = load_cassette(cassette)
        assert not c.complete and c.events == [], case
        assert c.meta["end"].startswith("the server could not be started: ") and expected in c.meta["end"], case
        assert c.meta["ssh"]["target"].startswith("tester@127.0.0.1:"), case
        assert not cassette.with_name(cassette.name + ".partial").exists(), case


@pytest.mark.asyncio
async def test_connection_dropped_mid_session(tmp_path: Path, optio_start: Any) -> None:
    cassette = tmp_path / "dropped.jsonl"
    async with SSHTestServer(tmp_path) as srv:
        host, handle, err = await launch(record_argv(cassette, *ssh_flags(srv), *fake_codex_remote(tmp_path)),
                                         tmp_path)
        session = await optio_start(handle, cwd="/work/x")  # the handshake went through
        assert session.conv.thread_id
        assert srv.drop_connections() >= 1
        t0 = time.monotonic()
        code = await proxy_exit(handle)
        elapsed = time.monotonic() - t0
        await session.close()
    assert code == 255, err.decode(errors="replace")  # what ssh(1) exits with on a lost connection
    assert elapsed < END
    print(f"\nproxy gone {elapsed:.2f} s after the connection dropped")
    msg = one_paragraph(err.decode())
    assert f"The SSH connection to tester@127.0.0.1:{srv.port} was lost" in msg
    assert f"partial cassette is kept in {cassette}" in msg
    c = load_cassette(cassette)
    assert not c.complete and "was lost" in c.meta["end"]
    assert c.events[-1].kind == "exit" and c.events[-1].exit == "connection lost"
    sent = [e.msg.get("method") for e in c.events if e.kind == "msg" and e.side == "client"]
    assert sent[:2] == ["initialize", "initialized"] and "thread/start" in sent  # what happened before
    assert any(e.kind == "msg" and e.side == "server" and "thread" in (e.msg.get("result") or {})
               for e in c.events)


def test_ssh_flags_without_ssh_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["record", "-o", str(tmp_path / "x.jsonl"), "--remote-cwd", "/tmp", "--", "cat"]) == 2
    assert "--remote-cwd only make(s) sense with --ssh" in capsys.readouterr().err
    assert main(["record", "-o", str(tmp_path / "x.jsonl"), "--ssh", "a@b:99999", "--", "cat"]) == 2
    assert "outside 1-65535" in capsys.readouterr().err
    assert main(["record", "-o", str(tmp_path / "x.jsonl"), "--ssh", "a@b", "--remote-env", "1X=2", "--", "cat"]) == 2
    assert "--remote-env '1X' must be a shell variable name" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


# -- the pytest plugin: {"ssh": {...}} in codex_cassette_config -----------------------------


class ThreadedSSHServer:
    """SSHTestServer on its own event loop thread, for synchronous code (a pytester run)."""

    def __init__(self, tmp_path: Path) -> None:
        self.srv = SSHTestServer(tmp_path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> SSHTestServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.srv.__aenter__(), self.loop).result(T)
        return self.srv

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.srv.__aexit__(None, None, None), self.loop).result(T)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(T)
            self.loop.close()


PLUGIN_CONFTEST = """
    import os
    from pathlib import Path
    import pytest

    @pytest.fixture
    def codex_cassette_dir():
        return Path(__file__).parent / "cassettes"

    @pytest.fixture
    def codex_cassette_config():
        return {"ssh": {"target": os.environ["T_SSH_TARGET"], "identity": [os.environ["T_SSH_KEY"]],
                        "known_hosts": os.environ["T_SSH_KNOWN_HOSTS"], "codex_bin": os.environ["T_CODEX"],
                        "remote_cwd": os.environ["T_REMOTE_CWD"], "remote_env": {"PYTHONPATH": os.environ["T_PYPATH"]}}}
"""

PLUGIN_TESTS = """
    import asyncio, os, shlex
    import pytest
    from optio_codex.conversation import CodexConversation

    async def converse(handle):
        conv = CodexConversation(cwd="/work/x")
        said = []
        conv.on_message(said.append)
        conv.attach(handle)
        reader = asyncio.ensure_future(conv.run_reader())
        await asyncio.wait_for(conv.bootstrap(), 10)
        for text, n in (("Say hello to the world", 1), ("Say hello", 2)):
            await conv.send(text)
            for _ in range(500):
                if len(said) >= n:
                    break
                await asyncio.sleep(0.01)
        handle.stdin.close()
        await asyncio.wait_for(reader, 10)
        return said

    @pytest.mark.asyncio
    async def test_in_process(codex_app_server):
        handle = await codex_app_server.handle()
        assert await converse(handle) == ["Hello, world.", "Hello!"]
        print("MODE", codex_app_server.mode, codex_app_server.cwd)

    @pytest.mark.asyncio
    async def test_as_command(codex_app_server, tmp_path):
        from optio_host.host import LocalHost
        if codex_app_server.recording:
            recording_codex = (codex_app_server.bin_dir / "codex").read_text()  # what .argv launches
            assert "--ssh" in recording_codex and "--known-hosts" in recording_codex
        host = LocalHost(str(tmp_path))
        os.makedirs(host.workdir, exist_ok=True)
        handle = await host.launch_subprocess(shlex.join(codex_app_server.argv), env=codex_app_server.env,
                                              stdin=True, merge_stderr=False)
        assert await converse(handle) == ["Hello, world.", "Hello!"]
        assert await asyncio.wait_for(handle.pid_like.wait(), 10) == 0
"""


def test_plugin_records_through_ssh_then_replays(pytester: pytest.Pytester, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    fake = tmp_path / "codex"  # the remote "codex": the fake server on the scenario
    fake.write_text(f"#!/bin/sh\nexec {shlex.quote(PY)} -m fake_server --cassette {shlex.quote(str(TEXT_TURN))} \"$@\"\n")
    fake.chmod(0o755)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(textwrap.dedent(PLUGIN_CONFTEST))
    pytester.makepyfile(test_inner=textwrap.dedent(PLUGIN_TESTS))
    with ThreadedSSHServer(tmp_path) as srv:
        for name, value in {"T_SSH_TARGET": f"tester@127.0.0.1:{srv.port}", "T_SSH_KEY": srv.client_key_path,
                            "T_SSH_KNOWN_HOSTS": srv.known_hosts_path, "T_CODEX": str(fake),
                            "T_REMOTE_CWD": str(remote), "T_PYPATH": str(REPO)}.items():
            monkeypatch.setenv(name, value)
        t0 = time.monotonic()
        pytester.runpytest("-p", "no:cacheprovider", "-q", "-s", "--codex-record-mode=all").assert_outcomes(passed=2)
        recorded_in = time.monotonic() - t0
    cassettes = pytester.path / "cassettes"
    for name, recorder in (("test_in_process", "in-process"), ("test_as_command", "proxy")):
        c = load_cassette(cassettes / f"{name}.jsonl")
        assert c.complete, (name, c.meta)
        assert c.meta["recorder"] == recorder and c.meta["ssh"]["target"] == f"tester@127.0.0.1:{srv.port}"
        assert c.events[-1].exit == 0
    # The SSH server is gone: replaying needs none of it.
    t0 = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "-s", "--codex-record-mode=none")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*MODE replay*"])
    print(f"\nplugin: recorded 2 tests over SSH in {recorded_in:.2f} s, replayed in {time.monotonic() - t0:.2f} s")


def test_plugin_rejects_a_bad_ssh_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def codex_cassette_config():
            return {"ssh": {"target": "tester@127.0.0.1:2222", "identty": ["typo"]}}
        """)
    pytester.makepyfile(test_inner="def test_x(codex_app_server):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "--codex-record-mode=all")
    result.assert_outcomes(errors=1)  # a fixture's pytest.fail at setup
    result.stdout.fnmatch_lines(["*codex-cassette: unknown key(s) *identty* in the 'ssh' option*"])
