"""Where an SSH recording goes: the target (USER@HOST[:PORT]), its errors (each names the host), the remote command line."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

from harness.errors import HarnessError

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
EnvMode = Literal["command", "ssh"]
# Exit status a POSIX shell uses for "command not found"; `env` uses it too.
_NOT_FOUND = 127
# Private code the preflight probe uses for "cannot cd to the working directory".
_CWD_MISSING = 90


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
