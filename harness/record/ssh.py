"""Reaching a codex on another host over SSH (asyncssh).

A recording over SSH runs the recording proxy locally and the real codex on
the remote host. The proxy does not care where codex runs: it talks to a
"process" with ``stdin.write/close``, ``stdout.read``, ``stderr.read``,
``wait``, ``send_signal`` (``harness.record.process.PeerProcess``) -- a local
subprocess (``harness.record.process.LocalProcess``) or the :class:`RemoteProcess`
made here. ``codex-cassette record --ssh USER@HOST`` (:class:`SSHRecording` below)
hands :func:`open_ssh_process` to the proxy as its ``open_process``; the pytest
plugin does the same from ``codex_cassette_config()["ssh"]``, and
``harness.record.process.DriverHandle`` gives an in-process driver the same process.

Every failure to get there (refused, unknown or changed host key, rejected
keys, missing remote command or directory, a connection that dies mid-session)
surfaces as an :class:`SSHError` naming the host, one paragraph long.

Security: host keys are always verified against a known_hosts file unless the
caller sets ``insecure_no_host_key_check`` (CLI: ``--insecure-skip-host-key-check``).
``~/.ssh/config`` is deliberately NOT read: what is used is what the flags say.
"""

import asyncio
import os
import signal as signal_mod
import shlex
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():
    # asyncssh loads DSA support at import, and cryptography 51 warns about that on every
    # import: our stderr is the user's (one paragraph per failure), so the notice stays out.
    warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning)
    import asyncssh

from harness.format.values import CONNECTION_LOST  # the cassette's word for a lost connection
from harness.record.ssh_target import (_CWD_MISSING, _NOT_FOUND, EnvMode, RemoteCommandNotFound, SSHAuthError,
                                       SSHConnectError, SSHConnectionLost, SSHError, SSHHostKeyError, SSHTarget,
                                       _preflight_command, build_remote_command)

# Keep this much of the remote stderr to explain a failure after the fact.
_STDERR_TAIL = 4096


# --------------------------------------------------------------------------- process


@dataclass(frozen=True)
class RemoteExit:
    """How the remote process ended: exactly one of code, signal, connection_lost."""

    code: int | None = None
    signal: str | None = None  # as SSH names signals: "TERM", not "SIGTERM"
    connection_lost: bool = False
    # Why, when it is a failure worth explaining (lost connection, command missing).
    error: SSHError | None = None

    @property
    def value(self) -> int | str:
        """The PeerProcess / cassette ``exit`` form: code, "SIGTERM", or "connection lost"."""
        if self.connection_lost:
            return CONNECTION_LOST
        if self.signal is not None:
            return "SIG" + self.signal
        assert self.code is not None
        return self.code

    @property
    def returncode(self) -> int:
        """A local-subprocess-style code: the exit code, -signum, or 255 like ssh(1)."""
        if self.code is not None:
            return self.code
        if self.signal is not None:
            sig = getattr(signal_mod, "SIG" + self.signal, None)
            return -int(sig) if sig is not None else 255
        return 255

    def __str__(self) -> str:
        return str(self.value)


class _Stdin:
    def __init__(self, owner: "RemoteProcess") -> None:
        self._owner = owner

    async def write(self, data: bytes) -> None:
        proc = self._owner._proc
        try:
            proc.stdin.write(data)
            await proc.stdin.drain()
        except (OSError, asyncssh.Error) as exc:
            raise self._owner._broken(exc) from exc

    async def close(self) -> None:
        """Send EOF; the remote process sees its stdin end."""
        try:
            if not self._owner._proc.stdin.is_closing():
                self._owner._proc.stdin.write_eof()
        except (OSError, asyncssh.Error):
            pass  # already gone; wait() reports how


class _Reader:
    def __init__(self, owner: "RemoteProcess", stream: asyncssh.SSHReader, keep_tail: bool) -> None:
        self._owner = owner
        self._stream = stream
        self._tail = bytearray() if keep_tail else None

    async def read(self, n: int = 65536) -> bytes:
        """Up to n raw bytes; b"" at EOF, including the EOF of a dropped connection."""
        try:
            data = await self._stream.read(n)
        except (OSError, asyncssh.Error) as exc:
            self._owner._note_lost(exc)
            return b""
        if self._tail is not None and data:
            self._tail += data
            del self._tail[:-_STDERR_TAIL]
        return data

    def tail(self) -> bytes:
        return bytes(self._tail or b"")


class RemoteProcess:
    """A command running on a remote host: a ``harness.record.process.PeerProcess``.

    ``stdin.write(bytes)`` / ``stdin.close()``; ``stdout.read(n)`` and
    ``stderr.read(n)`` return raw bytes (b"" at EOF, also when the connection
    drops); ``wait(timeout)`` returns the exit code, a signal name such as
    "SIGTERM", or ``CONNECTION_LOST``; ``exit`` then holds the details
    (:class:`RemoteExit`, with an explanatory ``error``). Owns its SSH
    connection: ``close()`` ends both.
    """

    def __init__(self, target: SSHTarget, argv: list[str], conn: asyncssh.SSHClientConnection,
                 proc: asyncssh.SSHClientProcess) -> None:
        self.target = target
        self.argv = list(argv)
        self._conn = conn
        self._proc = proc
        self._lost: BaseException | None = None
        self.exit: RemoteExit | None = None  # set once wait() has returned
        self.stdin = _Stdin(self)
        self.stdout = _Reader(self, proc.stdout, keep_tail=False)
        self.stderr = _Reader(self, proc.stderr, keep_tail=True)

    # How the proxy learns the channel died under it.
    def _note_lost(self, exc: BaseException | None) -> None:
        if self._lost is None:
            self._lost = exc or ConnectionResetError("closed without an exit status")

    def _lost_error(self) -> SSHConnectionLost:
        why = str(self._lost) if self._lost else "the channel closed without an exit status"
        return SSHConnectionLost(
            f"The SSH connection to {self.target.display} was lost while "
            f"{shlex.join(self.argv)!s} was running ({why}). The remote process may "
            "still be running or may have been killed; the session cannot be resumed. "
            "Check the network and the remote host, then record again."
        )

    def _broken(self, exc: BaseException) -> OSError:
        if self._proc.exit_status is not None or self._proc.exit_signal is not None:
            return BrokenPipeError(f"remote process on {self.target.display} has exited")
        self._note_lost(exc)
        return self._lost_error()

    @property
    def pid(self) -> None:
        """No local pid: the process lives on another host."""
        return None

    @property
    def returncode(self) -> int | None:
        """None while running (or not yet waited for), then as a local subprocess's."""
        return self.exit.returncode if self.exit is not None else None

    async def wait(self, timeout: float | None = None) -> int | str:
        """Wait for the remote process to end; raises asyncio.TimeoutError after timeout.

        Returns the code, "SIG<NAME>", or CONNECTION_LOST; ``self.exit`` has the details.
        """
        await asyncio.wait_for(self._proc.wait_closed(), timeout)
        if self.exit is None:
            self.exit = self._classify()
        return self.exit.value

    def _classify(self) -> RemoteExit:
        code, sig = self._proc.exit_status, self._proc.exit_signal
        if sig is not None:
            return RemoteExit(signal=sig[0])
        if code is not None and code >= 0 and self._lost is None:
            error = self._not_found_error() if code == _NOT_FOUND else None
            return RemoteExit(code=code, error=error)
        # Channel closed with no exit-status/exit-signal: the connection died
        # (or the server broke protocol); either way the outcome is unknown.
        self._note_lost(None)
        return RemoteExit(connection_lost=True, error=self._lost_error())

    def _not_found_error(self) -> RemoteCommandNotFound:
        tail = self.stderr.tail().decode("utf-8", "replace").strip().splitlines()
        said = f' The remote shell said: "{tail[-1]}".' if tail else ""
        return _command_not_found(self.target, self.argv, said)

    def send_signal(self, signame: str | int) -> None:
        """Forward a signal (``"SIGINT"``, ``"TERM"``, ``signal.SIGINT``) to the remote process.

        A no-op once the process has ended. A server that does not implement
        SSH signal requests (OpenSSH before 7.9) silently ignores it; closing
        stdin is the portable way to ask codex to stop.
        """
        if isinstance(signame, int):
            name = signal_mod.Signals(signame).name
        else:
            name = signame.upper()
        name = name[3:] if name.startswith("SIG") else name
        if self._proc.is_closing() or self._proc.exit_status is not None:
            return
        try:
            self._proc.send_signal(name)
        except (OSError, asyncssh.Error):
            pass  # closed between the check and the send: wait() tells how it ended

    async def close(self, timeout: float = 5.0) -> None:
        """Close the channel and the connection; bounded by timeout."""
        try:
            self._proc.close()
            self._conn.close()
            await asyncio.wait_for(self._conn.wait_closed(), timeout)
        except (OSError, asyncssh.Error, asyncio.TimeoutError):
            self._conn.abort()


def _command_not_found(target: SSHTarget, argv: list[str], said: str = "") -> RemoteCommandNotFound:
    return RemoteCommandNotFound(
        f"The command {argv[0]!r} was not found on {target.display} (exit status 127).{said} "
        "A non-interactive SSH session does not read ~/.bashrc or ~/.profile, so PATH is "
        "often shorter than in a login terminal: give the absolute path of the binary "
        "(e.g. `which codex` in a terminal on that host), or pass PATH in the environment."
    )


# --------------------------------------------------------------------------- connecting


async def open_ssh_process(
    target: SSHTarget,
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    *,
    env_mode: EnvMode = "command",
    preflight: bool = True,
) -> RemoteProcess:
    """Connect to target and start argv there, bytes in and out.

    env_mode "command" (the default) prefixes ``env K=V ...`` to the command
    line, which works with any sshd; "ssh" sends SSH env requests, which OpenSSH
    silently drops unless the variable is listed in the server's AcceptEnv (see
    docs/ssh.md for why the default is the prefix). With ``preflight`` a quick
    probe on the same connection checks that cwd exists and argv[0] is on the
    remote PATH, so a typo fails here with :class:`RemoteCommandNotFound`
    instead of as exit 127 half-way into a recording.
    """
    command = build_remote_command(argv, env, cwd, env_mode)
    ssh_env = dict(env or {}) if env_mode == "ssh" else {}
    conn = await connect(target)
    try:
        if preflight:
            await _preflight(conn, target, argv, env, cwd, env_mode, ssh_env)
        proc = await asyncio.wait_for(
            conn.create_process(command, env=ssh_env or (), encoding=None),
            target.connect_timeout,
        )
    except asyncio.TimeoutError:
        conn.abort()
        raise SSHConnectError(
            f"{target.display} accepted the SSH login but did not start {argv[0]!r} within "
            f"{target.connect_timeout:g} s; the server may be overloaded or refusing sessions."
        ) from None
    except (OSError, asyncssh.Error) as exc:
        conn.abort()
        if isinstance(exc, SSHError):
            raise
        raise SSHConnectError(
            f"{target.display} accepted the SSH login but refused to run a command "
            f"({exc}). The account may be restricted (forced command, no shell)."
        ) from exc
    except BaseException:
        conn.abort()
        raise
    return RemoteProcess(target, argv, conn, proc)


async def _preflight(conn: asyncssh.SSHClientConnection, target: SSHTarget, argv: list[str],
                     env: dict[str, str] | None, cwd: str | None, env_mode: EnvMode,
                     ssh_env: dict[str, str]) -> None:
    probe = _preflight_command(argv, env, cwd, env_mode)
    result = await asyncio.wait_for(
        conn.run(probe, env=ssh_env or (), encoding=None, check=False), target.connect_timeout
    )
    if result.exit_status == _NOT_FOUND:
        raise _command_not_found(target, argv)
    if result.exit_status == _CWD_MISSING:
        raise RemoteCommandNotFound(
            f"The working directory {cwd!r} does not exist (or is not accessible) on "
            f"{target.display}, so {argv[0]!r} cannot be started there. Create it or pass "
            "another directory."
        )


async def connect(target: SSHTarget) -> asyncssh.SSHClientConnection:
    """Open an authenticated SSH connection, translating every failure into an SSHError."""
    keys = _load_identities(target)
    known_hosts = _known_hosts_option(target)
    try:
        return await asyncio.wait_for(
            asyncssh.connect(
                target.host,
                target.port,
                username=target.effective_user,
                known_hosts=known_hosts,
                client_keys=keys,
                # Explicit identities mean only those keys; otherwise the agent too.
                agent_path=None if target.identity else (),
                preferred_auth="publickey",
                config=None,
                connect_timeout=target.connect_timeout,
                keepalive_interval=target.keepalive_interval,
                keepalive_count_max=target.keepalive_count_max,
                encoding=None,
            ),
            # Belt and braces: asyncssh's own timeout covers TCP + handshake, this
            # also covers authentication stalls.
            target.connect_timeout * 2,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise _host_key_error(target, exc) from None
    except asyncssh.PermissionDenied as exc:
        raise _auth_error(target, exc) from None
    except ConnectionRefusedError:
        raise SSHConnectError(
            f"Could not connect to {target.display}: connection refused. Nothing is "
            f"listening on port {target.port} there; check that sshd runs and the port is right."
        ) from None
    except asyncio.TimeoutError:
        raise SSHConnectError(
            f"Could not connect to {target.display}: no SSH answer within "
            f"{target.connect_timeout:g} s. The host may be down, firewalled, or not an SSH server."
        ) from None
    except OSError as exc:
        raise SSHConnectError(f"Could not connect to {target.display}: {exc.strerror or exc}.") from None
    except asyncssh.Error as exc:
        raise SSHConnectError(
            f"The SSH handshake with {target.display} failed: {exc.reason or exc}."
        ) from None


def _load_identities(target: SSHTarget) -> list[asyncssh.SSHKey] | tuple[()]:
    """Load the key files up front so a bad file is named in the error."""
    if not target.identity:
        return ()  # asyncssh defaults: ~/.ssh/id_* and the agent
    keys = []
    for path in target.identity:
        try:
            keys.append(asyncssh.read_private_key(os.path.expanduser(path)))
        except FileNotFoundError:
            raise SSHAuthError(f"Identity file {path!r} for {target.display} does not exist.") from None
        except asyncssh.KeyEncryptionError:
            raise SSHAuthError(
                f"Identity file {path!r} for {target.display} is protected by a passphrase, "
                "which this tool does not prompt for: load it into ssh-agent (ssh-add) and "
                "leave out --identity so the agent is used."
            ) from None
        except (OSError, asyncssh.KeyImportError, ValueError) as exc:
            raise SSHAuthError(
                f"Identity file {path!r} for {target.display} cannot be used as a private key: {exc}."
            ) from None
    return keys


def _known_hosts_option(target: SSHTarget) -> object:
    if target.insecure_no_host_key_check:
        return None  # asyncssh: accept any host key
    path = target.known_hosts_path
    if os.path.exists(path):
        return path
    if target.known_hosts is not None:
        raise SSHHostKeyError(
            f"The known_hosts file {path!r} given for {target.display} does not exist."
        )
    # No ~/.ssh/known_hosts at all: every host is unknown; let the handshake say so.
    return asyncssh.import_known_hosts("")


def _host_key_error(target: SSHTarget, exc: Exception) -> SSHHostKeyError:
    path = target.known_hosts_path
    name = target.known_hosts_name
    port_opt = f" -p {target.port}" if target.port != 22 else ""
    recorded = False
    try:
        if os.path.exists(path):
            trusted = asyncssh.read_known_hosts(path).match(target.host, "", target.port)
            recorded = bool(trusted[0] or trusted[1])
    except (OSError, ValueError, asyncssh.Error):
        pass
    insecure = (
        "For a throwaway test host only, --insecure-skip-host-key-check skips this "
        "check (it lets anyone on the network impersonate the host)."
    )
    if recorded:
        return SSHHostKeyError(
            f"The host key of {target.display} has CHANGED: it does not match the key "
            f"recorded for {name} in {path}. Either the host was reinstalled or someone "
            "is intercepting the connection. If you know why it changed, remove the old "
            f"entry with `ssh-keygen -R '{name}' -f {path}` and add the new one. {insecure}"
        )
    return SSHHostKeyError(
        f"The host key of {target.display} is unknown: {path} has no entry for {name}. "
        f"Add it after checking its fingerprint with the host's owner, e.g. "
        f"`ssh-keyscan{port_opt} {target.host} >> {path}`, or connect once with "
        f"`ssh{port_opt} {target.effective_user}@{target.host}` and accept it. {insecure}"
    )


def _auth_error(target: SSHTarget, exc: Exception) -> SSHAuthError:
    if target.identity:
        tried = "the identity files " + ", ".join(repr(p) for p in target.identity)
    else:
        tried = "the default keys (~/.ssh/id_*) and the ssh agent, if any"
    return SSHAuthError(
        f"Authentication as {target.effective_user!r} on {target.display} failed: the "
        f"server accepted none of {tried}. Only public-key authentication is used. Check "
        "that the matching public key is in the remote ~/.ssh/authorized_keys, or pass "
        "the right key with --identity."
    )
