"""`codex-cassette warm start|stop --dir DIR`: a warm fork server for any client, not only pytest's.

``warm start`` starts the fork server (fake_server.forkserver) detached: a session of its
own, no parent to watch, gone by itself after ``--idle-exit`` seconds in which no launcher
came and no fake ran. DIR holds its pidfile (``warm.pid``), its stderr (``warm.log``) and
``codex``: the warm launcher with no cassette built in, so a client names the cassette,
and any other option of the fake, in the environment (``CODEX_CASSETTE_FILE=X DIR/codex
app-server``; the names come from fake_server.argv's table). A second start on the same DIR
reuses the server that runs; a pidfile whose pid is dead, or is not our fork server, is
dropped (never signalled) and a new server started. Every file in DIR is written through
harness.format.safe_files, so a link planted there is refused, not written through.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.format.safe_files import open_fd, open_private, unlink_ours, write_atomically

from fake_server.paths import READY_SUFFIX, SITE_DIRS

PIDFILE = "warm.pid"
LOCKFILE = "warm.lock"
LOGFILE = "warm.log"
LAUNCHER = "codex"
IDLE_EXIT = 300.0   # seconds: long enough for a test suite's gaps, short enough that nothing lingers
READY_WAIT = 60.0   # the server imports the engine and plays two warm-up sessions first
STOP_WAIT = 10.0    # its children get their grace (fork_loop.STOP_GRACE) before it goes


@dataclass
class WarmServer:
    """A detached fork server as its pidfile names it."""

    pid: int
    socket: str

    def ours(self) -> bool:
        """Whether the pid runs our fork server on that socket (not a process that reused the number)."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"fake_server.fork_loop" in cmdline and os.fsencode(self.socket) in cmdline.split(b"\0")

    def ready(self) -> bool:
        return self.ours() and os.path.exists(self.socket + READY_SUFFIX)


def read_pidfile(directory: Path) -> WarmServer | None:
    """The server the pidfile names; None when there is none or it cannot be read (stale)."""
    try:
        data = json.loads((directory / PIDFILE).read_text())
        return WarmServer(int(data["pid"]), str(data["socket"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _locked(directory: Path) -> int:
    """An exclusive lock on DIR (two starts at once start one server)."""
    fd = open_fd(directory / LOCKFILE, append=True)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def start(directory: Path, idle_exit: float = IDLE_EXIT) -> WarmServer:
    """The warm server of DIR, started unless one runs; DIR/codex written either way."""
    from fake_server.forkserver import start_server

    directory.mkdir(parents=True, exist_ok=True)
    lock = _locked(directory)
    try:
        server = read_pidfile(directory)
        if server is None or not server.ready():
            unlink_ours(directory / PIDFILE)  # stale: a dead pid, or not ours (left alone)
            with open_private(directory / LOGFILE, "ab") as log:
                started = start_server(idle_exit=idle_exit, stderr=log)
            if not started.wait_ready(READY_WAIT):
                started.process.kill()
                started.process.wait()
                raise HarnessError(f"the warm fork server did not get ready within {READY_WAIT:g} s "
                                   f"(its stderr is in {directory / LOGFILE})")
            started.process.returncode = 0  # detached: not ours to wait for (no warning at exit)
            server = WarmServer(started.process.pid, started.socket_path)
            write_atomically(directory / PIDFILE, json.dumps({"pid": server.pid, "socket": server.socket}).encode())
        _write_launcher(directory, server)
        return server
    finally:
        os.close(lock)


def _write_launcher(directory: Path, server: WarmServer) -> None:
    from fake_server.commands import write_launcher

    write_launcher(directory / LAUNCHER, [server.socket, SITE_DIRS],
                   "served by a warm fork server (CODEX_CASSETTE_FILE names the cassette)")


def stop(directory: Path) -> str:
    """Stop DIR's server; what happened, in words."""
    lock = _locked(directory) if directory.is_dir() else -1
    try:
        server = read_pidfile(directory)
        if server is None:
            return "no warm fork server was running"
        if not server.ours():
            unlink_ours(directory / PIDFILE)
            return f"no warm fork server was running (a stale pidfile naming pid {server.pid} was removed)"
        os.kill(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while server.ours() and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.ours():
            os.kill(server.pid, signal.SIGKILL)
        unlink_ours(directory / PIDFILE)
        return f"stopped the warm fork server (pid {server.pid})"
    finally:
        if lock >= 0:
            os.close(lock)


# -- the command line ----------------------------------------------------------------------------


def cli_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("warm", help="a warm fork server any client can spawn fake codexes from (DIR/codex)",
                       description="Start (or stop) a fork server that makes a fake codex answer sooner than "
                                   "the cold one: `start` writes DIR/codex; run it with CODEX_CASSETTE_FILE=X "
                                   "(and any other option of the fake as CODEX_CASSETTE_* variables). "
                                   "See docs/warm.md.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    s = actions.add_parser("start", help="start it (or reuse the one running), write DIR/codex, print DIR")
    s.add_argument("--dir", required=True, type=Path, metavar="DIR",
                   help="the folder for the launcher (DIR/codex) and the pidfile; created if missing")
    s.add_argument("--idle-exit", type=float, default=IDLE_EXIT, metavar="SECONDS",
                   help=f"go by itself after this long with no launch (default {IDLE_EXIT:g})")
    s.set_defaults(func=_start)
    t = actions.add_parser("stop", help="stop it (a stale pidfile is removed)")
    t.add_argument("--dir", required=True, type=Path, metavar="DIR",
                   help="the folder a warm start was given")
    t.set_defaults(func=_stop)


def _start(args: argparse.Namespace) -> int:
    if args.idle_exit <= 0:
        raise UsageError("--idle-exit must be positive")
    start(args.dir.absolute(), args.idle_exit)
    print(args.dir.absolute())
    return 0


def _stop(args: argparse.Namespace) -> int:
    print(stop(args.dir.absolute()), file=sys.stderr)
    return 0
