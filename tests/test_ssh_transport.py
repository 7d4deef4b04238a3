"""harness.record.ssh against a real asyncssh server on 127.0.0.1 (tests/sshd.py).

Every remote command really runs, as a local /bin/sh -c child of the test sshd.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from sshd import SSHTestServer  # noqa: E402

from harness.errors import HarnessError  # noqa: E402
from harness.record.ssh import CONNECTION_LOST, RemoteExit, RemoteProcess, open_ssh_process  # noqa: E402
from harness.record.ssh_target import (  # noqa: E402
    RemoteCommandNotFound,
    SSHAuthError,
    SSHConnectError,
    SSHConnectionLost,
    SSHError,
    SSHHostKeyError,
    SSHTarget,
    build_remote_command,
)

T = 10  # seconds: the bound on every single wait in this file


def target_for(srv: SSHTestServer, **changes: object) -> SSHTarget:
    t = SSHTarget.parse(
        f"tester@127.0.0.1:{srv.port}",
        identity=[srv.client_key_path],
        known_hosts=srv.known_hosts_path,
        connect_timeout=5,
    )
    return replace(t, **changes)


async def read_all(reader, limit: int = 8 << 20) -> bytes:
    chunks = []
    total = 0
    while True:
        data = await asyncio.wait_for(reader.read(65536), T)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        total += len(data)
        assert total <= limit, "more output than expected"


async def run(srv: SSHTestServer, argv: list[str], stdin: bytes = b"", **kw) -> tuple[bytes, bytes, RemoteExit]:
    proc = await asyncio.wait_for(open_ssh_process(target_for(srv), argv, **kw), T)
    try:
        async def feed() -> None:
            if stdin:
                await proc.stdin.write(stdin)
            await proc.stdin.close()

        _, out, err = await asyncio.gather(feed(), read_all(proc.stdout), read_all(proc.stderr))
        value = await proc.wait(T)
        assert proc.exit is not None and proc.exit.value == value
        return out, err, proc.exit
    finally:
        await proc.close()


# ------------------------------------------------------------------ parsing


def test_parse_specs() -> None:
    t = SSHTarget.parse("alice@example.org")
    assert (t.user, t.host, t.port) == ("alice", "example.org", 22)
    t = SSHTarget.parse("alice@example.org:2222", identity="~/.ssh/k", known_hosts="kh")
    assert (t.user, t.host, t.port, t.identity, t.known_hosts) == ("alice", "example.org", 2222, ["~/.ssh/k"], "kh")
    t = SSHTarget.parse("bob@[::1]:2200")
    assert (t.user, t.host, t.port) == ("bob", "::1", 2200)
    assert t.display == "bob@[::1]:2200" and t.known_hosts_name == "[::1]:2200"
    t = SSHTarget.parse("[fe80::1]")
    assert (t.user, t.host, t.port) == (None, "fe80::1", 22)
    t = SSHTarget.parse("me@host")
    assert t.known_hosts_name == "host" and not t.insecure_no_host_key_check
    for bad in ["", "u@", "@h", "u@h:99999", "u@h:x", "u@::1", "u@[::1", "u@h:22:3"]:
        with pytest.raises(SSHError):
            SSHTarget.parse(bad)


def test_remote_command_quoting() -> None:
    assert build_remote_command(["codex", "app-server"]) == "exec codex app-server"
    cmd = build_remote_command(["echo", "a b", "$HOME"], {"K": "v w", "Q": "'"}, "/tmp/x y")
    assert cmd == "cd '/tmp/x y' && exec env K='v w' Q=''\"'\"'' echo 'a b' '$HOME'"
    assert build_remote_command(["cat"], {"K": "v"}, None, env_mode="ssh") == "exec cat"
    with pytest.raises(SSHError):
        build_remote_command(["cat"], {"BAD NAME": "v"})
    with pytest.raises(SSHError):
        build_remote_command([])


# ------------------------------------------------------------------ bytes through


@pytest.mark.asyncio
async def test_cat_echoes_bytes_exactly(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        payload = (
            b'{"id":1,"method":"initialize"}\n'
            + b"x" * (1 << 20) + b"\n"  # a 1 MiB line: no line-length limit anywhere
            + b"\xff\xfe\x80 not utf-8 \xc3\x28\n"
            + b"no trailing newline \x00\x01"
        )
        out, err, status = await run(srv, ["cat"], payload)
        assert out == payload
        assert err == b""
        assert status == RemoteExit(code=0) and status.returncode == 0 and status.value == 0


@pytest.mark.asyncio
async def test_interleaved_request_response(tmp_path: Path) -> None:
    # The proxy writes a line and waits for the answer before the next: no buffering may stall it.
    async with SSHTestServer(tmp_path) as srv:
        proc = await open_ssh_process(target_for(srv), ["cat"])
        try:
            for i in range(20):
                line = f'{{"id":{i}}}\n'.encode()
                await proc.stdin.write(line)
                got = b""
                while len(got) < len(line):
                    got += await asyncio.wait_for(proc.stdout.read(65536), T)
                assert got == line
            await proc.stdin.close()
            assert await asyncio.wait_for(proc.stdout.read(10), T) == b""
            assert await proc.wait(T) == 0
        finally:
            await proc.close()


@pytest.mark.asyncio
async def test_stderr_and_exit_status(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        out, err, status = await run(srv, ["sh", "-c", "echo out; echo 'warn: \xe9' >&2; exit 3"])
        assert out == b"out\n"
        assert err == "warn: \xe9\n".encode()
        assert status.code == 3 and status.signal is None and not status.connection_lost
        assert status.error is None and status.returncode == 3


@pytest.mark.asyncio
async def test_env_and_cwd(tmp_path: Path) -> None:
    workdir = tmp_path / "dir with space"
    workdir.mkdir()
    script = 'printf "%s|%s|%s" "$CODEX_HOME" "$ODD" "$(pwd)"'
    async with SSHTestServer(tmp_path) as srv:
        env = {"CODEX_HOME": "/tmp/ch", "ODD": "a 'b' $c \"d\""}
        for mode in ("command", "ssh"):
            out, _, status = await run(srv, ["sh", "-c", script], env=env, cwd=str(workdir), env_mode=mode)
            assert status.code == 0
            assert out.decode() == f"/tmp/ch|a 'b' $c \"d\"|{workdir}", mode
        # Without cwd the command starts where sshd puts it: the login's home.
        out, _, _ = await run(srv, ["pwd"])
        assert out.decode().strip() == str(srv.home)


@pytest.mark.asyncio
async def test_signal_forwarded(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        proc = await open_ssh_process(target_for(srv), ["sh", "-c", "echo ready; exec sleep 30"])
        try:
            assert await asyncio.wait_for(proc.stdout.read(100), T) == b"ready\n"
            proc.send_signal("SIGTERM")
            assert await proc.wait(T) == "SIGTERM"
            assert proc.exit is not None and proc.exit.signal == "TERM"
            assert proc.returncode == -15
            proc.send_signal("SIGINT")  # after the end: a no-op, as for a local process
        finally:
            await proc.close()


@pytest.mark.asyncio
async def test_wait_timeout_is_bounded(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        proc = await open_ssh_process(target_for(srv), ["sleep", "30"])
        try:
            t0 = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await proc.wait(0.3)
            assert time.monotonic() - t0 < 3
        finally:
            await proc.close()


# ------------------------------------------------------------------ refusals


@pytest.mark.asyncio
async def test_wrong_host_key_refused(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        with pytest.raises(SSHHostKeyError) as info:
            await asyncio.wait_for(
                open_ssh_process(target_for(srv, known_hosts=srv.wrong_known_hosts_path), ["cat"]), T
            )
        msg = str(info.value)
        assert "CHANGED" in msg and f"127.0.0.1:{srv.port}" in msg
        assert f"ssh-keygen -R '[127.0.0.1]:{srv.port}'" in msg
        assert "--insecure-skip-host-key-check" in msg
        assert isinstance(info.value, HarnessError) and "\n" not in msg


@pytest.mark.asyncio
async def test_unknown_host_refused(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        with pytest.raises(SSHHostKeyError) as info:
            await asyncio.wait_for(
                open_ssh_process(target_for(srv, known_hosts=srv.empty_known_hosts_path), ["cat"]), T
            )
        msg = str(info.value)
        assert "unknown" in msg and f"ssh-keyscan -p {srv.port} 127.0.0.1 >>" in msg
        assert "--insecure-skip-host-key-check" in msg
        # A known_hosts path that does not exist is named, not silently treated as empty.
        with pytest.raises(SSHHostKeyError, match="does not exist"):
            await open_ssh_process(target_for(srv, known_hosts=str(tmp_path / "nope")), ["cat"])


@pytest.mark.asyncio
async def test_insecure_option_connects(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        t = target_for(srv, known_hosts=srv.wrong_known_hosts_path, insecure_no_host_key_check=True)
        proc = await asyncio.wait_for(open_ssh_process(t, ["echo", "hi"]), T)
        try:
            assert await read_all(proc.stdout) == b"hi\n"
            assert await proc.wait(T) == 0
        finally:
            await proc.close()


@pytest.mark.asyncio
async def test_bad_client_key_refused(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        with pytest.raises(SSHAuthError) as info:
            await asyncio.wait_for(
                open_ssh_process(target_for(srv, identity=[srv.unauthorized_key_path]), ["cat"]), T
            )
        msg = str(info.value)
        assert srv.unauthorized_key_path in msg and "tester" in msg and f":{srv.port}" in msg
        with pytest.raises(SSHAuthError, match="does not exist"):
            await open_ssh_process(target_for(srv, identity=[str(tmp_path / "missing")]), ["cat"])
        garbage = tmp_path / "garbage_key"
        garbage.write_text("not a key\n")
        with pytest.raises(SSHAuthError, match="cannot be used as a private key"):
            await open_ssh_process(target_for(srv, identity=[str(garbage)]), ["cat"])


@pytest.mark.asyncio
async def test_connection_refused_on_closed_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    t = SSHTarget.parse(f"tester@127.0.0.1:{port}", connect_timeout=5)
    with pytest.raises(SSHConnectError) as info:
        await asyncio.wait_for(open_ssh_process(t, ["cat"]), T)
    assert "connection refused" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)


@pytest.mark.asyncio
async def test_silent_server_times_out() -> None:
    # A TCP listener that never says the SSH banner: bounded by connect_timeout.
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.read(), T)  # until the client gives up
        finally:
            writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        t = SSHTarget.parse(f"tester@127.0.0.1:{port}", connect_timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(SSHConnectError, match="no SSH answer within 0.5 s"):
            await asyncio.wait_for(open_ssh_process(t, ["cat"]), T)
        assert time.monotonic() - t0 < 3
    finally:
        server.close()


@pytest.mark.asyncio
async def test_missing_remote_command(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        # Caught by the preflight probe, before any byte of a session is exchanged.
        with pytest.raises(RemoteCommandNotFound) as info:
            await asyncio.wait_for(open_ssh_process(target_for(srv), ["codex-not-installed", "app-server"]), T)
        msg = str(info.value)
        assert "'codex-not-installed' was not found" in msg and f":{srv.port}" in msg
        with pytest.raises(RemoteCommandNotFound, match="working directory"):
            await open_ssh_process(target_for(srv), ["cat"], cwd=str(tmp_path / "no-such-dir"))
        # The probe honours a PATH passed in env.
        bindir = tmp_path / "bin"
        bindir.mkdir()
        tool = bindir / "my-codex"
        tool.write_text("#!/bin/sh\necho fake codex\n")
        tool.chmod(0o755)
        out, _, status = await run(srv, ["my-codex"], env={"PATH": f"{bindir}:/usr/bin:/bin"})
        assert out == b"fake codex\n" and status.code == 0
        # Without the probe, exit 127 is still recognised and explained from stderr.
        out, err, status = await run(srv, ["codex-not-installed"], preflight=False)
        assert status.code == 127 and b"not found" in err
        assert isinstance(status.error, RemoteCommandNotFound)
        assert "not found" in str(status.error) and "The remote shell said" in str(status.error)


@pytest.mark.asyncio
async def test_connection_dropped_mid_session(tmp_path: Path) -> None:
    async with SSHTestServer(tmp_path) as srv:
        proc = await open_ssh_process(target_for(srv), ["cat"])
        try:
            await proc.stdin.write(b"before\n")
            assert await asyncio.wait_for(proc.stdout.read(100), T) == b"before\n"
            assert srv.drop_connections() >= 1
            t0 = time.monotonic()
            assert await asyncio.wait_for(proc.stdout.read(100), T) == b""
            assert await proc.wait(T) == CONNECTION_LOST
            assert time.monotonic() - t0 < 2
            status = proc.exit
            assert status is not None and status.connection_lost and status.code is None and status.returncode == 255
            assert isinstance(status.error, SSHConnectionLost)
            assert f"127.0.0.1:{srv.port}" in str(status.error) and "lost" in str(status.error)
            # Writing to a dead session raises what a broken local pipe would (and names the host).
            with pytest.raises(ConnectionResetError) as info:
                await asyncio.wait_for(proc.stdin.write(b"after\n"), T)
            assert isinstance(info.value, SSHConnectionLost)
        finally:
            await proc.close()


@pytest.mark.asyncio
async def test_silent_network_detected_by_keepalive(tmp_path: Path) -> None:
    # The peer stops answering but TCP stays up: only keepalives can tell.
    async with SSHTestServer(tmp_path) as srv:
        t = target_for(srv, keepalive_interval=0.3, keepalive_count_max=2)
        proc = await open_ssh_process(t, ["cat"])
        try:
            await proc.stdin.write(b"x\n")
            assert await asyncio.wait_for(proc.stdout.read(10), T) == b"x\n"
            srv.freeze_connections()
            t0 = time.monotonic()
            assert await asyncio.wait_for(proc.stdout.read(10), T) == b""
            assert await proc.wait(T) == CONNECTION_LOST
            elapsed = time.monotonic() - t0
            assert proc.exit is not None and isinstance(proc.exit.error, SSHConnectionLost)
            assert 0.3 <= elapsed < 5
        finally:
            srv.thaw_connections()
            await proc.close()


@pytest.mark.asyncio
async def test_remote_process_shape(tmp_path: Path) -> None:
    # The interface the recording proxy relies on, checked on a live object.
    async with SSHTestServer(tmp_path) as srv:
        proc = await open_ssh_process(target_for(srv), ["true"])
        try:
            assert isinstance(proc, RemoteProcess) and proc.pid is None and proc.returncode is None
            for name in ("write", "close"):
                assert asyncio.iscoroutinefunction(getattr(proc.stdin, name))
            assert asyncio.iscoroutinefunction(proc.stdout.read)
            assert asyncio.iscoroutinefunction(proc.stderr.read)
            assert await proc.wait(T) == 0 and proc.returncode == 0
        finally:
            await proc.close()
        assert srv.connection_count == 0 or await _eventually(lambda: srv.connection_count == 0)


async def _eventually(cond, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()
