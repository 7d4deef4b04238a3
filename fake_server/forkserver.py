"""A warm fork server, so a fake codex answers `initialize` sooner than a real one.

A cold fake pays for the interpreter and for importing the engine on every
spawn, which is most of its start-up. The fork server pays once: it imports
the engine and waits on an AF_UNIX socket. A client spawns the tiny launcher
(fake_server/_launch.py), which passes its stdin/stdout/stderr (SCM_RIGHTS),
argv, environment, cwd and pid; the server forks a child that takes them over
and runs ``fake_server.__main__.main(argv)`` exactly as the cold fake does.
The server tells the launcher the child's pid, then how it ended.

One single-threaded select loop supervises: new connections, their requests,
launchers that vanished (their child is killed), children that ended (SIGCHLD
through a wakeup fd) and the parent, whose death closes a pipe we watch (we
then stop our children and exit).

This module is the parent's side; fake_server.fork_loop is the server's loop and
fake_server.fork_child what a forked child does.

In the parent: ``ensure_server()`` starts it once per process (stopped at exit);
``launcher_argv()`` is what to spawn, or None when no server runs. The
environment variable CODEX_CASSETTE_FORKSERVER=0 keeps everything cold.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from fake_server.paths import LAUNCH, LAUNCH_MAIN, READY_SUFFIX, SITE_DIRS, SOCKET_NAME, SOURCE_ROOT, SWITCH

_UNIX_PATH_MAX = 107    # sun_path is 108 bytes with its NUL


def enabled() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


# -- the parent's side ---------------------------------------------------------------------------


@dataclass
class ForkServer:
    """A running fork server, as its parent holds it."""

    process: subprocess.Popen
    directory: str
    socket_path: str
    _parent_end: int  # closing it (or dying) tells the server to go

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        """Whether it serves yet (before, launchers run the cold fake rather than wait)."""
        return os.path.exists(self.socket_path + READY_SUFFIX)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        if self._parent_end >= 0:
            os.close(self._parent_end)
            self._parent_end = -1
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
        shutil.rmtree(self.directory, ignore_errors=True)


_server: ForkServer | None = None
_registered = False
_lock = threading.Lock()


def _private_dir() -> str:
    """A directory only we can enter, short enough for a socket path inside it."""
    for base in (None, "/tmp"):
        directory = tempfile.mkdtemp(prefix="cc-fork-", dir=base)
        if len(os.path.join(directory, SOCKET_NAME).encode()) <= _UNIX_PATH_MAX:
            return directory
        os.rmdir(directory)
    raise OSError("no temporary directory short enough for a unix socket path")


def _compile_launcher() -> None:
    """Leave the launcher's compiled form in __pycache__ before the first launch needs it
    (the launcher would write it too, as -I ignores PYTHONDONTWRITEBYTECODE, but only after
    paying for the compile once)."""
    import importlib.util
    import py_compile

    try:
        cached = importlib.util.cache_from_source(LAUNCH)
        if not os.path.exists(cached) or os.path.getmtime(cached) < os.path.getmtime(LAUNCH):
            py_compile.compile(LAUNCH, doraise=True)
    except (OSError, py_compile.PyCompileError, NotImplementedError):
        pass  # a read-only install: the launcher compiles itself on each start, a little slower


def start_server(idle_exit: float | None = None, stderr: Any = None) -> ForkServer:
    """Start a fork server child of this process (its own, not the singleton's). With
    ``idle_exit`` it is detached: nothing of ours tells it to go, it goes by itself after
    that many seconds without a launch (or on SIGTERM). ``stderr``: where its complaints go
    (default ours; a detached one must not hold its starter's stderr open)."""
    _compile_launcher()
    directory = _private_dir()
    path = os.path.join(directory, SOCKET_NAME)
    # We bind and listen here, so the server's socket exists at once; launchers run
    # the cold fake until the server says it is ready (READY_SUFFIX), rather than wait
    # for its imports.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server_end = parent_end = -1
    try:
        listener.bind(path)
        listener.listen(128)
        if idle_exit is None:
            server_end, parent_end = os.pipe()
        code = ("import sys; sys.path[0:0] = [sys.argv[1], *sys.argv[2].split(sys.argv[6])]; "
                "from fake_server.fork_loop import server_main; server_main()")
        # A session of its own: a Ctrl-C at the terminal reaches the launchers, which forward it.
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", code, SOURCE_ROOT, SITE_DIRS,
             str(listener.fileno()), str(server_end), path, os.pathsep,
             *([] if idle_exit is None else [repr(float(idle_exit))])],
            pass_fds=tuple(fd for fd in (listener.fileno(), server_end) if fd >= 0), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=stderr, start_new_session=True, close_fds=True)
    except BaseException:
        if parent_end >= 0:
            os.close(parent_end)
        shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        if server_end >= 0:
            os.close(server_end)
        listener.close()  # the server's copy is the only one: if it dies, launchers are refused
    return ForkServer(process, directory, path, parent_end)


def ensure_server() -> ForkServer | None:
    """This process's fork server, started on first call; None when switched off or it cannot start."""
    global _server, _registered
    if not enabled():
        return None
    with _lock:
        if _server is not None and not _server.alive():
            _server.stop()
            _server = None
        if _server is None:
            try:
                _server = start_server()
            except OSError:
                return None
            if not _registered:
                atexit.register(stop_server)
                _registered = True
        return _server


def running_server() -> ForkServer | None:
    """The fork server this process started, if it is up (and not switched off)."""
    server = _server
    return server if server is not None and enabled() and server.alive() else None


def stop_server() -> None:
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()


def launcher_argv(args: list[str], server: ForkServer | None = None) -> list[str] | None:
    """The command that runs the fake with these arguments through the fork server,
    or None when none is running (the caller then uses the cold command)."""
    server = server or running_server()
    if server is None:
        return None
    return [sys.executable, "-S", "-I", LAUNCH_MAIN, server.socket_path, SITE_DIRS, *args]
