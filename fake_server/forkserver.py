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

In the parent: ``ensure_server()`` starts it once per process (stopped at exit);
``launcher_argv()`` is what to spawn, or None when no server runs. The
environment variable CODEX_CASSETTE_FORKSERVER=0 keeps everything cold.
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

LAUNCH = str(Path(__file__).resolve().parent / "_launch.py")
LAUNCH_MAIN = str(Path(__file__).resolve().parent / "_launch_main.py")  # what is spawned
SWITCH = "CODEX_CASSETTE_FORKSERVER"
MAX_REQUEST = 16 << 20  # argv + environment; anything larger is not a launcher talking
STOP_GRACE = 2.0        # seconds our children get to write their `stopped` report when we go
SOCKET_NAME = "s"
READY_SUFFIX = ".ready"  # beside the socket once the server has imported and warmed up
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


def start_server() -> ForkServer:
    """Start a fork server child of this process (its own, not the singleton's)."""
    from fake_server.launcher import SITE_DIRS, SOURCE_ROOT

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
        server_end, parent_end = os.pipe()
        code = ("import sys; sys.path[0:0] = [sys.argv[1], *sys.argv[2].split(sys.argv[6])]; "
                "from fake_server.forkserver import server_main; server_main()")
        # A session of its own: a Ctrl-C at the terminal reaches the launchers, which forward it.
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", code, SOURCE_ROOT, SITE_DIRS,
             str(listener.fileno()), str(server_end), path, os.pathsep],
            pass_fds=(listener.fileno(), server_end), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)
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
    from fake_server.launcher import SITE_DIRS

    server = server or running_server()
    if server is None:
        return None
    return [sys.executable, "-S", "-I", LAUNCH_MAIN, server.socket_path, SITE_DIRS, *args]


# -- the server's side ---------------------------------------------------------------------------

# What a played cassette imports on its way; importing them here is the whole point.
PRELOAD = ("fake_server.__main__", "fake_server.serve", "harness.cassette", "harness.scenario",
           "harness.placeholders", "harness.replay", "harness.report", "harness.matching",
           "harness.channel", "harness.wire", "json")
# Only a divergence's report needs these, and they cost as much again: imported at
# the first idle moment, so the first launcher does not wait for them.
PRELOAD_IDLE = ("deepdiff",)
IDLE = 0.01  # seconds without a request before a spare child is forked
SPARE_FAILURES = 3  # spares that died unused before we stop making them (no fork loop)


@dataclass
class _Conn:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    child: int = 0


@dataclass
class _Spare:
    """A child forked ahead of need and warmed up, waiting on its end of a socket pair
    for a launcher's fds and request: fork() and first-touch page copies are then off
    the launcher's critical path."""

    pid: int
    sock: socket.socket


class _Server:
    def __init__(self, listener: socket.socket, parent_fd: int, path: str) -> None:
        self.listener = listener
        self.parent_fd = parent_fd
        self.path = path
        self.directory = os.path.dirname(path)
        self.conns: dict[int, _Conn] = {}   # by socket fd
        self.children: dict[int, _Conn] = {}  # by child pid
        self.spare: _Spare | None = None
        self.spare_failures = 0
        self.idle_imports = list(PRELOAD_IDLE)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    # The loop ------------------------------------------------------------------------------

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of it
        self._reap()
        while True:
            watched = [self.listener.fileno(), self.parent_fd, self.wake_r, *self.conns]
            # Bounded anyway: a SIGCHLD lost between reaping and select is found within a second.
            chores = self.idle_imports or (self.spare is None and self.spare_failures < SPARE_FAILURES)
            ready = select.select(watched, [], [], IDLE if chores else 1.0)[0]
            if self.parent_fd in ready:
                return
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            self._reap()
            if self.listener.fileno() in ready:
                self._accept()
            for fd in ready:
                conn = self.conns.get(fd)
                if conn is not None:
                    self._readable(conn)
            if not ready and self.idle_imports:
                _preload([self.idle_imports.pop(0)])
            elif not ready and self.spare is None and self.spare_failures < SPARE_FAILURES:
                self._fork_spare()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        self.conns[sock.fileno()] = _Conn(sock)

    def _readable(self, conn: _Conn) -> None:
        try:
            data, ancdata, _, _ = conn.sock.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
        except BlockingIOError:
            return
        except OSError:
            data, ancdata = b"", []
        conn.fds += _fds_of(ancdata)
        if not data:
            if conn.child:
                # The launcher is gone (SIGKILLed): its child must not outlive it. The loop
                # reaps it; nobody is left to tell.
                _kill(conn.child, signal.SIGKILL)
            self._drop(conn)
            return
        if conn.child:
            return  # a launcher says nothing after its request
        conn.buf += data
        if len(conn.buf) >= 4:
            size = int.from_bytes(conn.buf[:4], "big")
            if size > MAX_REQUEST or (len(conn.buf) >= 4 + size and len(conn.fds) != 3):
                self._drop(conn)
            elif len(conn.buf) >= 4 + size:
                self._start(conn, bytes(conn.buf[:4 + size]))

    def _start(self, conn: _Conn, message: bytes) -> None:
        """Hand the request to the spare child, or fork one for it."""
        try:
            request = _Request.parse(message[4:])
        except ValueError:
            self._drop(conn)
            return
        pid = self._hand_to_spare(conn, message)
        if not pid:
            try:
                pid = os.fork()
            except OSError:
                self._drop(conn)  # the launcher sees no pid and runs cold
                return
            if pid == 0:
                _close_all(self, keep=tuple(conn.fds))
                _play(conn.fds, request)  # never returns
        for fd in conn.fds:
            os.close(fd)  # only the child may hold the client's pipes, or stdout never ends
        conn.fds = []
        conn.child = pid
        self.children[pid] = conn
        try:
            conn.sock.sendall(b"P%d\n" % pid)
        except OSError:
            pass  # its end of file is seen by the loop, which kills the child

    def _hand_to_spare(self, conn: _Conn, message: bytes) -> int:
        spare, self.spare = self.spare, None
        if spare is None:
            return 0
        try:
            spare.sock.settimeout(5.0)  # it reads as soon as its warm-up is done
            sent = spare.sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _pack(conn.fds))])
            if sent < len(message):
                # Never a send of nothing: once the spare has it all it closes its end, and
                # an empty send would then fail, and the request be played a second time.
                spare.sock.sendall(message[sent:])
        except OSError:
            _kill(spare.pid, signal.SIGKILL)
            return 0
        finally:
            spare.sock.close()
        return spare.pid

    def _fork_spare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:
            _close_all(self, keep=(theirs.fileno(),))
            ours.close()
            _wait_as_spare(theirs, self.directory)  # never returns
        theirs.close()
        self.spare = _Spare(pid, ours)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare.pid:
                self.spare.sock.close()
                self.spare = None
                self.spare_failures += 1
            conn = self.children.pop(pid, None)
            if conn is None or conn.sock.fileno() < 0:
                continue
            if os.WIFSIGNALED(status):
                message = b"S%d\n" % os.WTERMSIG(status)
            else:
                message = b"X%d\n" % os.waitstatus_to_exitcode(status)
            try:
                conn.sock.setblocking(True)
                conn.sock.settimeout(5.0)
                conn.sock.sendall(message)
            except OSError:
                pass
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        for fd in conn.fds:
            os.close(fd)
        conn.fds = []
        if conn.sock.fileno() >= 0:
            self.conns.pop(conn.sock.fileno(), None)
            conn.sock.close()

    def shutdown(self) -> None:
        """Our parent went: stop the children (they write their `stopped` report), then go."""
        if self.spare is not None:
            _kill(self.spare.pid, signal.SIGKILL)
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid in list(self.children):
            _kill(pid, signal.SIGKILL)
        self._reap()
        shutil.rmtree(self.directory, ignore_errors=True)


# -- a child -------------------------------------------------------------------------------------


def _close_all(server: _Server, keep: tuple[int, ...]) -> None:
    """In a new child: let go of everything of the server's but what is kept."""
    signal.set_wakeup_fd(-1)
    # What a freshly started Python has: the cold fake starts from these.
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd in (server.wake_r, server.wake_w, server.parent_fd):
        os.close(fd)
    for conn in server.conns.values():
        conn.sock.close()
        # Another launcher's pipes, received while its request is still coming in: a child
        # holding them would keep that client's stdout from ever ending.
        for fd in conn.fds:
            if fd not in keep:
                os.close(fd)
    if server.spare is not None:
        server.spare.sock.close()
    server.listener.close()


def _wait_as_spare(sock: socket.socket, directory: str) -> None:
    code = 0
    try:
        _warm_up(directory)
        sock.setblocking(True)
        message, fds = b"", []
        while len(message) < 4 or len(message) < 4 + int.from_bytes(message[:4], "big"):
            data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
            fds += _fds_of(ancdata)
            if not data:
                break  # the server went (or gave the request to another)
            message += data
        else:
            sock.close()
            _play(fds, _Request.parse(message[4:]))  # never returns
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _play(fds: list[int], request: "_Request") -> None:
    """Become the launcher's fake: its fds, cwd, environment and pid; then run it as the cold fake would."""
    code = 1
    try:
        for fd, target in zip(fds, (0, 1, 2)):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request.cwd)
        _set_environ(request.env)
        # The launcher is the process its client knows: reports carry its pid (`{pid}`
        # in the report path; the `running` report says whom to stop).
        import fake_server.serve

        fake_server.serve.CLIENT_PID = request.pid
        sys.argv = ["fake_server", *request.argv]
        from fake_server.__main__ import main

        code = main(request.argv)
    except SystemExit as done:  # argparse's usage errors and --help
        if done.code is None or isinstance(done.code, int):
            code = done.code or 0
        else:
            print(done.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # as python does: die of the signal
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        _flush()
        os._exit(code if isinstance(code, int) else 1)


def _set_environ(env: dict[str, str]) -> None:
    """os.environ becomes env; only what differs is touched (each change is a putenv)."""
    current = os.environ
    for key in [k for k in current if k not in env]:
        del current[key]
    for key, value in env.items():
        if current.get(key) != value:
            current[key] = value


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _pack(fds: list[int]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
    return fds


@dataclass
class _Request:
    pid: int
    cwd: str
    argv: list[str]
    env: dict[str, str]

    @classmethod
    def parse(cls, body: bytes) -> "_Request":
        """The launcher's NUL-separated fields: version, pid, cwd, argc, argv..., KEY=VALUE..."""
        fields = body.split(b"\0")
        if len(fields) < 4 or fields[0] != b"1":
            raise ValueError("not a launcher request")
        argc = int(fields[3])
        argv = [os.fsdecode(a) for a in fields[4:4 + argc]]
        env = {}
        for item in fields[4 + argc:]:
            key, sep, value = item.partition(b"=")
            if sep:
                env[os.fsdecode(key)] = os.fsdecode(value)
        return cls(int(fields[1]), os.fsdecode(fields[2]), argv, env)


# -- start-up ------------------------------------------------------------------------------------

WARM_SCENARIO = """\
steps:
  - expect: initialize
    params: {cwd: "{{cwd}}"}
    reply: {userAgent: warm, codexHome: "{{codex_home}}"}
  - expect: initialized
  - exit: 0
"""
WARM_INPUT = (b'{"id":1,"method":"initialize","params":{"cwd":"/w","clientInfo":{"name":"warm"}}}\n'
              b'{"method":"initialized"}\n')


def _write_warm_cassettes(directory: str) -> list[str]:
    from harness.cassette import open_cassette

    scenario = os.path.join(directory, "warm.yaml")
    with open(scenario, "w") as f:
        f.write(WARM_SCENARIO)
    return [scenario, str(open_cassette(scenario).dump(Path(directory) / "warm.jsonl"))]


def _warm_up(directory: str) -> None:
    """Play two tiny sessions (the scenario, then its cassette) in this process, so what
    the engine builds on first use (argparse's formatter, re's caches, ...) exists before
    the fork, and so a spare child has touched (copied) the pages a session touches.
    On our own fds 0-2, borrowed for the time of it."""
    from fake_server.__main__ import main

    saved = [os.dup(fd) for fd in (0, 1, 2)]
    null = os.open(os.devnull, os.O_RDWR)
    report = os.path.join(directory, f"warm-report-{os.getpid()}.json")
    try:
        for path in (os.path.join(directory, "warm.yaml"), os.path.join(directory, "warm.jsonl")):
            r, w = os.pipe()
            os.write(w, WARM_INPUT)
            os.close(w)
            os.dup2(r, 0)
            os.close(r)
            os.dup2(null, 1)
            os.dup2(null, 2)
            main(["--cassette", path, "--report", report, "--timeout", "5", "--linger", "0", "app-server"])
    except Exception:
        pass  # only slower children: each then builds what it needs itself
    finally:
        for fd, copy in zip((0, 1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)
        try:
            os.unlink(report)
        except OSError:
            pass


def _preload(modules: Sequence[str]) -> None:
    import gc
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # a child that needs it imports it, or says why it cannot
    # Everything imported so far is for good: the collector need not walk it in every
    # child (each walk would copy the pages it touches).
    gc.freeze()


def server_main() -> None:
    """``python -S -c ... SOURCE_ROOT SITE_DIRS LISTEN_FD PARENT_FD SOCKET_PATH PATHSEP`` (see start_server)."""
    listen_fd, parent_fd, path = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    sys.path[:] = [p for p in sys.path if p]  # nothing relative to whatever cwd a child gets
    for name in (signal.SIGINT, signal.SIGHUP):
        signal.signal(name, signal.SIG_IGN)  # only our parent's going ends us
    _preload(PRELOAD)
    directory = os.path.dirname(path)
    try:
        _write_warm_cassettes(directory)
    except Exception:
        pass
    _warm_up(directory)
    with open(path + READY_SUFFIX, "w"):
        pass
    listener = socket.socket(fileno=listen_fd)
    listener.setblocking(False)
    server = _Server(listener, parent_fd, path)
    try:
        server.run()
    finally:
        server.shutdown()
