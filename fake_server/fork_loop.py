"""The fork server's loop: accept launchers, hand each to a warm spare child, supervise, stop."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

from fake_server.fork_child import play, wait_as_spare, warm_up, write_warm_cassettes
from fake_server.fork_wire import LaunchRequest, fds_of, pack_fds
from fake_server.paths import READY_SUFFIX

MAX_REQUEST = 16 << 20  # argv + environment; anything larger is not a launcher talking
STOP_GRACE = 2.0        # seconds our children get to write their `stopped` report when we go

# What a played cassette imports on its way; importing them here is the whole point.
PRELOAD = ("fake_server.__main__", "fake_server.serve", "harness.format.cassette", "harness.format.scenario",
           "harness.format.placeholders", "harness.format.load", "harness.replay.options", "harness.replay.engine", "harness.replay.report", "harness.replay.matching",
           "harness.replay.channel", "harness.format.wire", "json")
# Only a divergence's report needs these, and they cost as much again: imported at
# the first idle moment, so the first launcher does not wait for them.
PRELOAD_IDLE = ("deepdiff",)
# What a fake listening on a socket needs on top (websockets' threading server): imported at
# an idle moment after the first such launch, so the later ones start warm and a session
# of stdio fakes never imports it.
PRELOAD_SOCKETS = ("fake_server.listen", "websockets.sync.server")
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
    def __init__(self, listener: socket.socket, parent_fd: int, path: str, idle_exit: float | None = None) -> None:
        self.listener = listener
        self.parent_fd = parent_fd  # -1: detached (`codex-cassette warm start`), no parent to watch
        self.idle_exit = idle_exit  # seconds with no launcher and no child before we go by ourselves
        self.last_busy = time.monotonic()
        self.stopping = False
        self.path = path
        self.directory = os.path.dirname(path)
        self.conns: dict[int, _Conn] = {}   # by socket fd
        self.children: dict[int, _Conn] = {}  # by child pid
        self.spare: _Spare | None = None
        self.spare_failures = 0
        self.idle_imports = list(PRELOAD_IDLE)
        self.sockets_seen = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    # The loop ------------------------------------------------------------------------------

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of it
        signal.signal(signal.SIGTERM, self._stop)  # `warm stop`: the children get their grace
        self._reap()
        while True:
            watched = [self.listener.fileno(), self.wake_r, *self.conns]
            if self.parent_fd >= 0:
                watched.append(self.parent_fd)
            # Bounded anyway: a SIGCHLD lost between reaping and select is found within a second.
            chores = self.idle_imports or (self.spare is None and self.spare_failures < SPARE_FAILURES)
            ready = select.select(watched, [], [], IDLE if chores else 1.0)[0]
            if self.parent_fd in ready or self.stopping or self._idle_too_long():
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

    def _idle_too_long(self) -> bool:
        now = time.monotonic()
        if self.conns or self.children:
            self.last_busy = now
            return False
        return self.idle_exit is not None and now - self.last_busy > self.idle_exit

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
        conn.fds += fds_of(ancdata)
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
            request = LaunchRequest.parse(message[4:])
        except ValueError:
            self._drop(conn)
            return
        if not self.sockets_seen and _listens_on_a_socket(request.argv):
            self.sockets_seen = True
            self.idle_imports += PRELOAD_SOCKETS
        pid = self._hand_to_spare(conn, message)
        if not pid:
            try:
                pid = os.fork()
            except OSError:
                self._drop(conn)  # the launcher sees no pid and runs cold
                return
            if pid == 0:
                _close_all(self, keep=tuple(conn.fds))
                play(conn.fds, request)  # never returns
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
            sent = spare.sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, pack_fds(conn.fds))])
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
            wait_as_spare(theirs, self.directory)  # never returns
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
        if fd >= 0:  # no parent_fd when detached
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


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass





def _listens_on_a_socket(argv: Sequence[str]) -> bool:
    return any(a.startswith(("ws://", "unix://", "--listen=ws://", "--listen=unix://")) for a in argv)


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
    """``python -S -c ... SOURCE_ROOT SITE_DIRS LISTEN_FD PARENT_FD SOCKET_PATH PATHSEP [IDLE_EXIT]``
    (see start_server); PARENT_FD -1: detached, gone after IDLE_EXIT seconds without a launch."""
    listen_fd, parent_fd, path = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    idle_exit = float(sys.argv[7]) if len(sys.argv) > 7 else None
    sys.path[:] = [p for p in sys.path if p]  # nothing relative to whatever cwd a child gets
    for name in (signal.SIGINT, signal.SIGHUP):
        signal.signal(name, signal.SIG_IGN)  # only our parent's going ends us
    _preload(PRELOAD)
    directory = os.path.dirname(path)
    try:
        write_warm_cassettes(directory)
        failure = warm_up(directory)
    except Exception as exc:  # noqa: BLE001 - told below; the server still serves, only slower
        failure = f"{type(exc).__name__}: {exc}"
    if failure is not None:
        print(f"codex-cassette fork server: the warm-up failed, so each fake starts slower ({failure})",
              file=sys.stderr, flush=True)
    with open(path + READY_SUFFIX, "w"):
        pass
    listener = socket.socket(fileno=listen_fd)
    listener.setblocking(False)
    server = _Server(listener, parent_fd, path, idle_exit)
    try:
        server.run()
    finally:
        server.shutdown()
