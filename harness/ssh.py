"""Reaching a codex on another host over SSH (asyncssh).

A recording over SSH runs the recording proxy locally and the real codex on
the remote host. The proxy does not care where codex runs: it talks to a
"process" with ``stdin.write/close``, ``stdout.read``, ``stderr.read``,
``wait``, ``send_signal`` (``harness.transport.PeerProcess``) -- a local
subprocess (``harness.transport.LocalProcess``) or the :class:`RemoteProcess`
made here. ``codex-cassette record --ssh USER@HOST`` (:class:`SSHRecording` below)
hands :func:`open_ssh_process` to the proxy as its ``open_process``; the pytest
plugin does the same from ``codex_cassette_config()["ssh"]``, and
``harness.transport.DriverHandle`` gives an in-process driver the same process.

Every failure to get there (refused, unknown or changed host key, rejected
keys, missing remote command or directory, a connection that dies mid-session)
surfaces as an :class:`SSHError` naming the host, one paragraph long.

Security: host keys are always verified against a known_hosts file unless the
caller sets ``insecure_no_host_key_check`` (CLI: ``--insecure-skip-host-key-check``).
``~/.ssh/config`` is deliberately NOT read: what is used is what the flags say.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import argparse
import signal as signal_mod
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import asyncssh

from harness.errors import HarnessError, UsageError
from harness.transport import PeerProcess

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
EnvMode = Literal["command", "ssh"]

# Exit status a POSIX shell uses for "command not found"; `env` uses it too.
_NOT_FOUND = 127
# Private code the preflight probe uses for "cannot cd to the working directory".
_CWD_MISSING = 90
# Keep this much of the remote stderr to explain a failure after the fact.
_STDERR_TAIL = 4096


# --------------------------------------------------------------------------- errors


class SSHError(HarnessError):
    """Something went wrong reaching or talking to a remote host over SSH."""


class SSHConnectError(SSHError):
    """The TCP connection or the SSH handshake could not be made."""


class SSHHostKeyError(SSHError):
    """The host key is not in known_hosts, or differs from the one recorded there."""


class SSHAuthError(SSHError):
    """The server accepted none of our keys, or a key file could not be used."""


class RemoteCommandNotFound(SSHError):
    """The remote shell could not find the command (or the working directory)."""


class SSHConnectionLost(SSHError, ConnectionResetError):
    """The connection dropped mid-session.

    Also a ``ConnectionResetError`` so a proxy that handles a local pipe breaking
    (``except (BrokenPipeError, ConnectionResetError)``) handles this the same way.
    """


# --------------------------------------------------------------------------- target

# HOST[:PORT] or [IPV6][:PORT]; USER@ is split off first (at the last "@").
_SPEC = re.compile(
    r"""^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))
        (?::(?P<port>\d+))?$""",
    re.X,
)


@dataclass
class SSHTarget:
    """Where and how to connect. Build it with :meth:`parse` from ``USER@HOST[:PORT]``."""

    user: str | None
    host: str
    port: int = 22
    # Private key files. Empty means asyncssh's defaults (~/.ssh/id_* and the ssh
    # agent); non-empty means ONLY these files, like OpenSSH's IdentitiesOnly.
    identity: list[str] = field(default_factory=list)
    known_hosts: str | None = None  # None means ~/.ssh/known_hosts
    insecure_no_host_key_check: bool = False
    connect_timeout: float = 10.0
    # A host that vanishes without closing TCP (cable pulled, VM paused) is
    # noticed after keepalive_interval * keepalive_count_max seconds of silence.
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3

    @classmethod
    def parse(
        cls,
        spec: str,
        *,
        identity: list[str] | str | None = None,
        known_hosts: str | None = None,
        insecure_no_host_key_check: bool = False,
        connect_timeout: float = 10.0,
    ) -> "SSHTarget":
        """Parse ``USER@HOST``, ``USER@HOST:PORT``, ``HOST``, ``USER@[::1]:PORT``."""
        user: str | None = None
        rest = spec.strip()
        if "@" in rest:
            user, _, rest = rest.rpartition("@")
            if not user:
                raise SSHError(f"SSH target {spec!r} has an empty user name before '@'.")
        m = _SPEC.match(rest)
        if m is None or (rest.count(":") > 1 and not rest.startswith("[")):
            raise SSHError(
                f"SSH target {spec!r} is not USER@HOST[:PORT]; write an IPv6 address "
                "in brackets, e.g. user@[::1]:2222."
            )
        host = m.group("v6") or m.group("host")
        port = int(m.group("port")) if m.group("port") else 22
        if not 0 < port < 65536:
            raise SSHError(f"SSH target {spec!r} has port {port}, outside 1-65535.")
        if isinstance(identity, str):
            identity = [identity]
        return cls(
            user=user,
            host=host,
            port=port,
            identity=list(identity or []),
            known_hosts=known_hosts,
            insecure_no_host_key_check=insecure_no_host_key_check,
            connect_timeout=connect_timeout,
        )

    @property
    def effective_user(self) -> str:
        if self.user:
            return self.user
        import getpass

        return getpass.getuser()

    @property
    def display(self) -> str:
        """``user@host:port`` as a person would type it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.effective_user}@{host}:{self.port}"

    @property
    def known_hosts_path(self) -> str:
        return os.path.expanduser(self.known_hosts or DEFAULT_KNOWN_HOSTS)

    @property
    def known_hosts_name(self) -> str:
        """How the host appears in a known_hosts file (``[host]:port`` off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


# --------------------------------------------------------------------------- command line


def build_remote_command(
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    env_mode: EnvMode = "command",
) -> str:
    """The one string sshd hands to the user's login shell.

    ``cd DIR && exec env K=V ... ARGV``. ``exec`` makes the remote process the
    one the SSH channel's signals and exit status belong to, not a shell around it.
    """
    if not argv:
        raise SSHError("No remote command given: argv is empty.")
    parts: list[str] = []
    if cwd is not None:
        parts.append(f"cd {shlex.quote(cwd)} && ")
    parts.append("exec ")
    if env and env_mode == "command":
        parts.append("env " + " ".join(_assignments(env)) + " ")
    parts.append(shlex.join(argv))
    return "".join(parts)


def _assignments(env: dict[str, str]) -> list[str]:
    out = []
    for key, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SSHError(f"Environment variable name {key!r} cannot be passed to a remote shell.")
        out.append(f"{key}={shlex.quote(value)}")
    return out


def _preflight_command(argv: list[str], env: dict[str, str] | None, cwd: str | None,
                       env_mode: EnvMode) -> str:
    """A probe run before the real command: is the directory there, is the command on PATH?

    Run through ``env`` so a PATH given in ``env`` is honoured, and through
    /bin/sh so it behaves the same whatever the user's login shell is.
    """
    script = f'command -v "$1" >/dev/null 2>&1 || exit {_NOT_FOUND}'
    probe = ["/bin/sh", "-c", script, "sh", argv[0]]
    cd = f"cd {shlex.quote(cwd)} >/dev/null 2>&1 || exit {_CWD_MISSING}; " if cwd else ""
    prefix = "env " + " ".join(_assignments(env)) + " " if env and env_mode == "command" else ""
    return f"{cd}exec {prefix}{shlex.join(probe)}"


# --------------------------------------------------------------------------- process


CONNECTION_LOST = "connection lost"


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
    """A command running on a remote host: a ``harness.transport.PeerProcess``.

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


# -- what a recording over SSH needs (record --ssh, the plugin's ssh option) ------

def env_assignment(arg: str) -> tuple[str, str]:
    name, sep, value = arg.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"--remote-env {arg!r} must look like NAME=VALUE with NAME a shell "
                         "variable name (letters, digits, _)")
    return name, value


SSH_CONFIG_KEYS = {"target", "identity", "known_hosts", "insecure_skip_host_key_check", "remote_cwd",
                   "remote_env", "codex_bin", "connect_timeout"}


@dataclass
class SSHRecording:
    """What `record --ssh` adds: where the command runs and how to reach it. Built from
    the flags, or from the pytest plugin's ``{"ssh": {...}}`` configuration."""

    spec: str                        # USER@HOST[:PORT]
    identity: list[str] = field(default_factory=list)
    known_hosts: str | None = None
    insecure: bool = False
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    connect_timeout: float = 10.0
    codex_bin: str | None = None     # the plugin's remote command; the CLI takes it after `--`

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SSHRecording":
        remote = cls(args.ssh, list(args.identity), args.known_hosts, args.insecure_skip_host_key_check,
                     dict(env_assignment(a) for a in args.remote_env), args.remote_cwd, args.connect_timeout)
        _ = remote.target  # a malformed USER@HOST fails here, before anything starts
        return remote

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SSHRecording":
        """``{"target": "user@host:port", "identity": [...], "known_hosts": ..., ...}``."""
        if not isinstance(config, Mapping) or not isinstance(config.get("target"), str):
            raise UsageError("the 'ssh' option must be a mapping with at least 'target': "
                             "\"USER@HOST[:PORT]\" (see docs/ssh.md)")
        unknown = set(config) - SSH_CONFIG_KEYS
        if unknown:
            raise UsageError(f"unknown key(s) {sorted(unknown)} in the 'ssh' option; known: {sorted(SSH_CONFIG_KEYS)}")
        identity = config.get("identity") or []
        env = config.get("remote_env") or {}
        if not isinstance(env, Mapping):
            raise UsageError("the 'ssh' option's 'remote_env' must be a mapping of NAME: VALUE")
        remote = cls(config["target"], [identity] if isinstance(identity, str) else [str(i) for i in identity],
                     config.get("known_hosts"), bool(config.get("insecure_skip_host_key_check")),
                     {str(k): str(v) for k, v in env.items()}, config.get("remote_cwd"),
                     float(config.get("connect_timeout", 10.0)), config.get("codex_bin"))
        for name in remote.env:
            env_assignment(f"{name}=")
        _ = remote.target  # a malformed USER@HOST fails here
        return remote

    @property
    def target(self) -> "SSHTarget":
        return SSHTarget.parse(self.spec, identity=list(self.identity), known_hosts=self.known_hosts,
                               insecure_no_host_key_check=self.insecure, connect_timeout=self.connect_timeout)

    def flags(self) -> list[str]:
        """The `record` flags that say the same."""
        out = ["--ssh", self.spec]
        for key in self.identity:
            out += ["--identity", str(key)]
        if self.known_hosts:
            out += ["--known-hosts", str(self.known_hosts)]
        if self.insecure:
            out.append("--insecure-skip-host-key-check")
        if self.cwd:
            out += ["--remote-cwd", self.cwd]
        for name, value in self.env.items():
            out += ["--remote-env", f"{name}={value}"]
        return out + ["--connect-timeout", f"{self.connect_timeout:g}"]

    def placeholders(self) -> dict[str, str]:
        """The remote side's cwd, home and codex_home, which are what the server's messages
        carry; the local ones are kept for what the client sends."""
        values = {"cwd": self.cwd, "home": self.env.get("HOME"), "codex_home": self.env.get("CODEX_HOME")}
        return {k: v.rstrip("/") for k, v in values.items() if v and len(v.rstrip("/")) > 1}

    def meta(self) -> dict[str, Any]:
        # The target only: never key paths or environment values.
        return {"ssh": {"target": self.target.display, "host_key_checked": not self.insecure}}

    async def open(self, argv: list[str], env: Mapping[str, str] | None = None,
                   cwd: str | None = None) -> PeerProcess:
        """``open_process`` for record_command. The local environment and cwd stay
        here: the remote command gets only ``self.env`` and ``self.cwd``."""
        return await open_ssh_process(self.target, list(argv), env=self.env, cwd=self.cwd)
