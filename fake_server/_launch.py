"""The warm launcher: what a client spawns when a fork server is running.

``python -S -I _launch_main.py SOCKET SITE_DIRS fake-server-args...``
(fake_server.forkserver.launcher_argv). _launch_main imports this module rather
than being it, so its compiled form comes from __pycache__: a script is compiled
anew on every start, which would cost more than all the launcher does.

It must start faster than anything else in the fake, so it imports only modules
built into the interpreter (``_socket``, ``_signal``, ``posix``; not ``socket``,
which pulls in enum, nor ``os``). It hands its stdin/stdout/stderr, argv,
environment and cwd to the fork server (fake_server.forkserver), whose forked
child plays the cassette on those very pipes; the launcher then holds none of the
client's pipes, forwards SIGTERM/SIGINT/SIGHUP to the child and ends the way the
child ended (same exit code, or killed by the same signal). When the server
cannot be reached, or is not ready yet, it becomes the cold fake (exec of
``_boot.py``), so it always works.

A bin dir's ``codex`` (fake_server.commands.write_bin_dir) imports it the same way,
with the arguments fixed; it is imported as a top-level module, hence no imports of
this package here.
"""

import _signal
import _socket
import posix
import sys

_FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)
_child = 0
_pending = []


def _forward(signum, frame):
    # Before the child's pid is known a signal waits; the child gets it as soon as it exists.
    if _child:
        try:
            posix.kill(_child, signum)
        except OSError:
            pass
    else:
        _pending.append(signum)


def _cold(boot, site_dirs, args):
    """Become the cold fake: same pid, same fds, so nothing downstream can tell."""
    posix.execv(sys.executable, [sys.executable, "-S", boot, site_dirs, *args])


def _request(args):
    """argv, cwd, environment and pid as NUL-separated fields behind a 4-byte length:
    no json import, and NUL is the one byte none of them can contain."""
    fields = [b"1", str(posix.getpid()).encode(), posix.getcwdb(), str(len(args)).encode()]
    fields += [a.encode("utf-8", "surrogateescape") for a in args]
    fields += [k + b"=" + v for k, v in posix.environ.items()]
    body = b"\0".join(fields)
    return len(body).to_bytes(4, "big") + body


def _read_line(sock, buf):
    while b"\n" not in buf[0]:
        chunk = sock.recv(256)
        if not chunk:
            return None
        buf[0] += chunk
    line, _, buf[0] = buf[0].partition(b"\n")
    return line


def _end(status):
    """Exit as the child did: its code, or death by its signal (what a client sees as -N)."""
    kind, value = status[:1], int(status[1:])
    if kind == b"S":
        try:
            _signal.signal(value, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP keep their default anyway
        posix.kill(posix.getpid(), value)
        value = 128 + value  # a signal whose default is not to die: still say which
    posix._exit(value)


def main(argv, boot):
    global _child
    sock_path, site_dirs, args = argv[0], argv[1], argv[2:]
    for sig in _FORWARDED:
        _signal.signal(sig, _forward)
    sock = None
    try:
        # Until the server has imported the engine, the cold fake answers sooner than waiting.
        posix.stat(sock_path + ".ready")
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.connect(sock_path)
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        data = _request(args)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        if sent < len(data):
            sock.sendall(data[sent:])
        buf = [b""]
        line = _read_line(sock, buf)
    except OSError:
        line = None
    if not line or line[:1] != b"P":
        # No server (or not ready yet), or it went away before forking: nothing has
        # touched the client's pipes yet.
        if sock is not None:
            sock.close()
        for sig in _FORWARDED:
            _signal.signal(sig, _signal.SIG_DFL if sig != _signal.SIGINT else _signal.default_int_handler)
        if _pending:  # asked to stop before any fake started: stop as the cold one would have
            _end(b"S%d" % _pending[0])
        _cold(boot, site_dirs, args)
    _child = int(line[1:])
    # Only the child may hold the client's pipes: stdout's end of stream must be the child's alone.
    null = posix.open("/dev/null", posix.O_RDWR)
    for fd in (0, 1, 2):
        posix.dup2(null, fd)
    posix.close(null)
    for signum in _pending:
        _forward(signum, None)
    try:
        status = _read_line(sock, buf)
    except OSError:
        status = None
    # The server went away without a word (it was killed): the child went with it.
    _end(status if status and status[:1] in (b"X", b"S") else b"S9")


BOOT = __file__.rpartition("/")[0] + "/_boot.py"


def run():
    main(sys.argv[1:], BOOT)


if __name__ == "__main__":
    run()
