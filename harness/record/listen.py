"""Where an app-server listens: codex's `--listen` URLs, and the banner it prints for ws.

codex 0.163.0 takes `stdio://` (the default, also `--stdio`), `ws://IP:PORT` (port 0
picks one), `unix://PATH` and `unix://` (the daemon's control socket under
CODEX_HOME). For ws it prints the banner below on stderr once it listens; for unix
it prints nothing. The recorder reads codex's banner to learn the real port and
prints its own; the fake prints the same lines, so a client that parses codex's
banner parses ours.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import HarnessError, UsageError

SCHEMES = ("stdio", "ws", "unix")
SUN_PATH = 108  # bytes of a unix socket's path on Linux, its terminating NUL included
BANNER_TITLE = "codex app-server (WebSockets)"
LOOPBACK_NOTE = "  note: binds localhost only (use SSH port-forwarding for remote access)"
_LISTENING = re.compile(r"^\s*listening on:\s*(ws://\S+)\s*$")
# What codex answers an upgrade on its unix socket with (not on ws); the fake says it too.
UNIX_UPGRADE_HEADERS = {"x-codex-websocket-max-unfragmented-message-bytes": "16777216"}
CONTROL_SOCKET = ("app-server-control", "app-server-control.sock")


@dataclass(frozen=True)
class ListenAddress:
    """A parsed `--listen` URL. ``path`` is None for `unix://` (the control socket)."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str | None = None

    @classmethod
    def parse(cls, url: str) -> "ListenAddress":
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            raise UsageError(f"--listen {url!r}: expected stdio://, ws://IP:PORT, unix:// or unix://PATH")
        if scheme == "stdio":
            if rest:
                raise UsageError(f"--listen {url!r}: stdio:// takes nothing after the scheme")
            return cls("stdio")
        if scheme == "unix":
            return cls("unix", path=_short_enough(rest) if rest else None)
        host, colon, port = rest.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        import ipaddress

        try:
            ipaddress.ip_address(host)
            number = int(port)
        except ValueError:
            number = -1
        if not colon or not 0 <= number <= 65535:
            raise UsageError(f"--listen {url!r}: ws:// takes an IP address and a port, e.g. ws://127.0.0.1:0 "
                             "(port 0 picks a free one)")
        return cls("ws", host=host, port=number)

    @property
    def is_socket(self) -> bool:
        return self.scheme != "stdio"

    def socket_path(self, env: Mapping[str, str] | None = None) -> Path:
        """The unix socket's file; `unix://` is codex's control socket under CODEX_HOME."""
        assert self.scheme == "unix"
        if self.path is not None:
            return Path(self.path)
        env = os.environ if env is None else env
        home = env.get("CODEX_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".codex")
        return Path(_short_enough(os.path.join(home, *CONTROL_SOCKET)))

    def with_port(self, port: int) -> "ListenAddress":
        return ListenAddress(self.scheme, self.host, port, self.path)

    @property
    def url(self) -> str:
        if self.scheme == "ws":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"ws://{host}:{self.port}"
        if self.scheme == "unix":
            return f"unix://{self.path or ''}"
        return "stdio://"

    def banner(self) -> list[str]:
        """codex's stderr lines once it listens on this ws address (none for unix or stdio)."""
        if self.scheme != "ws":
            return []
        http = "http" + self.url[2:]
        lines = [BANNER_TITLE, f"  listening on: {self.url}", f"  readyz: {http}/readyz",
                 f"  healthz: {http}/healthz"]
        import ipaddress

        if ipaddress.ip_address(self.host).is_loopback:
            lines.append(LOOPBACK_NOTE)
        return lines


def listening_url(line: str) -> str | None:
    """The ws URL a banner line announces (`  listening on: ws://...`), else None."""
    found = _LISTENING.match(line)
    return found.group(1) if found else None


def is_banner_line(line: str) -> bool:
    """One of the lines of codex's ws banner (they name codex's own address, which a
    recorder in front of it must not pass on)."""
    stripped = line.rstrip("\r\n")
    return stripped == BANNER_TITLE or stripped == LOOPBACK_NOTE or stripped.lstrip().startswith(
        ("listening on: ws://", "readyz: http://", "healthz: http://"))


def listen_arg(argv: Sequence[str]) -> ListenAddress:
    """The address an app-server command line listens on (`--listen URL`, `--listen=URL`,
    `--stdio`; stdio when none)."""
    found = "stdio://"
    args = list(argv)
    for n, arg in enumerate(args):
        if arg == "--listen" and n + 1 < len(args):
            found = args[n + 1]
        elif arg.startswith("--listen="):
            found = arg.split("=", 1)[1]
        elif arg == "--stdio":
            found = "stdio://"
    return ListenAddress.parse(found)


def _short_enough(path: str) -> str:
    """A unix socket path the kernel can bind and connect to: its bytes, with the NUL that
    ends them, fit in sockaddr_un's sun_path (else bind says only "AF_UNIX path too long")."""
    size = len(os.fsencode(path))
    if size >= SUN_PATH:
        raise UsageError(f"--listen unix://{path}: a unix socket path may be at most {SUN_PATH - 1} bytes "
                         f"({SUN_PATH} with the NUL that ends it, the limit of sockaddr_un on Linux), and this "
                         f"one is {size}. Use a shorter path: a relative one from a nearby working "
                         "directory, or one under /tmp.")
    return path


def claim_socket_path(path: Path) -> None:
    """Make ``path`` free to listen on, as codex does: refuse one a server answers on (or
    that is no socket); remove a stale one nobody listens on."""
    if not path.exists() and not path.is_symlink():
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not path.is_socket():
        raise HarnessError(f"cannot listen on unix://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        remove_socket_path(path)  # stale: nobody listens there
        return
    finally:
        probe.close()
    raise HarnessError(f"app-server control socket is already in use at {path}")


def remove_socket_path(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
