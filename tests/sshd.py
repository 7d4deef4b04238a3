"""A real SSH server on 127.0.0.1 for tests: asyncssh, key auth, commands run locally.

    async with SSHTestServer(tmp_path) as srv:
        target = SSHTarget(user="tester", host="127.0.0.1", port=srv.port,
                           identity=[srv.client_key_path], known_hosts=srv.known_hosts_path)

Each exec request runs ``/bin/sh -c COMMAND`` as a local subprocess whose
stdin/stdout/stderr are bridged byte for byte to the SSH channel; env requests
are applied, SSH signals are forwarded, EOF closes the child's stdin, and the
child's exit code or signal is sent back.

Clients reach the server through a small TCP relay on ``srv.port`` so that tests
can break the network under a live session: ``drop_connections()`` aborts every
TCP connection without an SSH goodbye (a crashed host or a reset), and
``freeze_connections()`` stops carrying bytes while keeping the sockets open (a
pulled cable, a paused VM), which only SSH keepalives can notice.

A session object (``session_factory``) rather than asyncssh's higher-level
process API is used because a signal can arrive after stdin's EOF, when the
stream API has no reader left to raise it into.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import asyncssh

CHUNK = 65536


class _Bridge(asyncssh.SSHServerSession):
    """One SSH session: the channel on one side, a local /bin/sh -c child on the other."""

    def __init__(self, server: "SSHTestServer") -> None:
        self._server = server
        self._chan: Any = None
        self._command: str | None = None
        self._child: asyncio.subprocess.Process | None = None
        self._early: list[bytes] = []  # stdin that came before the child was up
        self._eof = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, chan: Any) -> None:
        self._chan = chan

    def shell_requested(self) -> bool:
        return False  # exec only: the harness never asks for a shell

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def session_started(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._server._tasks.add(self._task)
        self._task.add_done_callback(self._server._tasks.discard)

    async def _run(self) -> None:
        env = dict(os.environ)
        env["HOME"] = str(self._server.home)
        env.update(self._chan.get_environment())
        try:
            child = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", self._command or "",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=str(self._server.home),
            )
        except OSError as exc:
            self._chan.write_stderr(f"sshd: cannot start shell: {exc}\n".encode())
            self._chan.exit(255)
            return
        self._child = child
        self._server._children.add(child)
        assert child.stdin is not None
        for data in self._early:
            child.stdin.write(data)
        self._early.clear()
        if self._eof:
            child.stdin.close()
        pumps = [
            asyncio.ensure_future(self._pump(child.stdout, None)),
            asyncio.ensure_future(self._pump(child.stderr, asyncssh.EXTENDED_DATA_STDERR)),
        ]
        try:
            rc = await child.wait()
            await asyncio.wait_for(asyncio.gather(*pumps), 10)
        finally:
            self._server._children.discard(child)
        if self._chan is None:
            return  # connection gone; nobody to tell
        try:
            if rc < 0:
                self._chan.exit_with_signal(signal.Signals(-rc).name[3:])
            else:
                self._chan.exit(rc)
        except OSError:
            pass

    async def _pump(self, stream: asyncio.StreamReader | None, datatype: int | None) -> None:
        assert stream is not None
        while True:
            data = await stream.read(CHUNK)
            if not data:
                return
            await asyncio.wait_for(self._writable.wait(), 30)
            if self._chan is None:
                return
            try:
                self._chan.write(data, datatype)
            except OSError:
                return

    def data_received(self, data: bytes, datatype: int | None) -> None:
        child = self._child
        if child is None:
            self._early.append(data)
            return
        assert child.stdin is not None
        if not child.stdin.is_closing():
            child.stdin.write(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self._child is not None and self._child.stdin is not None:
            self._child.stdin.close()
        return True  # half-open: output and the exit status still have to go back

    def signal_received(self, signame: str) -> None:
        sig = getattr(signal, "SIG" + signame, None)
        if sig is not None and self._child is not None and self._child.returncode is None:
            self._child.send_signal(sig)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._chan = None
        self._writable.set()
        child = self._child
        if child is not None and child.returncode is None:
            child.kill()  # as sshd does to a session whose client vanished (via SIGHUP)


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: "SSHTestServer") -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._conns.discard(self._conn)

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def session_requested(self) -> _Bridge:
        return _Bridge(self._owner)


class _Relay:
    """Loopback TCP relay in front of the sshd: lets a test cut or stall the wire."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self._host = host
        self._upstream_port = upstream_port
        self._server: asyncio.base_events.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._upstream_port), 5
            )
        except (OSError, asyncio.TimeoutError):
            c_writer.transport.abort()
            return
        self._writers |= {c_writer, u_writer}
        for src, dst in ((c_reader, u_writer), (u_reader, c_writer)):
            task = asyncio.ensure_future(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(CHUNK)
                # A frozen wire carries nothing, in either direction, until thawed.
                await self._flowing.wait()
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)

    def drop(self) -> int:
        writers = list(self._writers)
        for w in writers:
            w.transport.abort()
        return len(writers) // 2

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self.drop()
        self._flowing.set()
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


class SSHTestServer:
    """``async with SSHTestServer(tmp_path) as srv``: a live sshd on 127.0.0.1:srv.port."""

    def __init__(self, tmp_path: Path | str, *, key_type: str = "ssh-ed25519") -> None:
        self.dir = Path(tmp_path) / "sshd"
        self.home = self.dir / "home"
        self.host = "127.0.0.1"
        self.port = 0
        self._key_type = key_type
        self._listener: asyncssh.SSHAcceptor | None = None
        self._relay: _Relay | None = None
        self.sshd_port = 0  # the asyncssh listener itself, behind the relay
        self._conns: set[asyncssh.SSHServerConnection] = set()
        self._children: set[asyncio.subprocess.Process] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.client_key_path = str(self.dir / "client_key")
        self.unauthorized_key_path = str(self.dir / "stranger_key")
        self.known_hosts_path = str(self.dir / "known_hosts")
        self.wrong_known_hosts_path = str(self.dir / "known_hosts_wrong")
        self.empty_known_hosts_path = str(self.dir / "known_hosts_empty")

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def _write_key(self, key: asyncssh.SSHKey, path: str) -> None:
        key.write_private_key(path)
        os.chmod(path, 0o600)
        key.write_public_key(path + ".pub")

    async def __aenter__(self) -> "SSHTestServer":
        self.home.mkdir(parents=True, exist_ok=True)
        host_key = asyncssh.generate_private_key(self._key_type)
        client_key = asyncssh.generate_private_key(self._key_type)
        self._write_key(client_key, self.client_key_path)
        self._write_key(asyncssh.generate_private_key(self._key_type), self.unauthorized_key_path)
        authorized = asyncssh.import_authorized_keys(
            client_key.export_public_key().decode()
        )
        self._listener = await asyncssh.create_server(
            lambda: _Server(self),
            self.host,
            0,
            server_host_keys=[host_key],
            authorized_client_keys=authorized,
            encoding=None,
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            keepalive_interval=0,
            login_timeout=10,
        )
        self.sshd_port = self._listener.sockets[0].getsockname()[1]
        self._relay = _Relay(self.host, self.sshd_port)
        await self._relay.start()
        self.port = self._relay.port
        name = f"[{self.host}]:{self.port}"

        def entry(key: asyncssh.SSHKey) -> str:
            return f"{name} {key.export_public_key().decode().strip()}\n"

        Path(self.known_hosts_path).write_text(entry(host_key))
        Path(self.wrong_known_hosts_path).write_text(
            entry(asyncssh.generate_private_key(self._key_type))
        )
        Path(self.empty_known_hosts_path).write_text("# no hosts here\n")
        return self

    def drop_connections(self) -> int:
        """Abort every connection at the TCP level, no SSH disconnect message. Returns how many.

        Both the client-facing sockets and the sshd's side go, so the sshd also
        kills the commands those sessions were running.
        """
        assert self._relay is not None
        dropped = self._relay.drop()
        for conn in list(self._conns):
            conn.abort()
        return dropped

    def freeze_connections(self) -> None:
        """Stop carrying bytes on every connection, sockets left open (until thaw)."""
        assert self._relay is not None
        self._relay.freeze()

    def thaw_connections(self) -> None:
        assert self._relay is not None
        self._relay.thaw()

    async def __aexit__(self, *exc: object) -> None:
        for conn in list(self._conns):
            conn.abort()
        for child in list(self._children):
            if child.returncode is None:
                child.kill()
        if self._relay is not None:
            await self._relay.close()
        if self._listener is not None:
            self._listener.close()
            await asyncio.wait_for(self._listener.wait_closed(), 5)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for child in list(self._children):
            try:
                await asyncio.wait_for(child.wait(), 5)
            except asyncio.TimeoutError:
                pass
