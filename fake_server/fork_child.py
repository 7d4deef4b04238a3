"""What a forked child of the fork server does: wait as a warm spare, then become a launcher's fake."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

from fake_server.fork_wire import LaunchRequest, fds_of

def wait_as_spare(sock: socket.socket, directory: str) -> None:
    code = 0
    try:
        warm_up(directory)
        sock.setblocking(True)
        message, fds = b"", []
        while len(message) < 4 or len(message) < 4 + int.from_bytes(message[:4], "big"):
            data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
            fds += fds_of(ancdata)
            if not data:
                break  # the server went (or gave the request to another)
            message += data
        else:
            sock.close()
            play(fds, LaunchRequest.parse(message[4:]))  # never returns
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def play(fds: list[int], request: "LaunchRequest") -> None:
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
        # As a fresh interpreter would: the launcher's PYTHONPATH (a matcher named as
        # module:function may live there).
        sys.path[0:0] = [p for p in request.env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
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





# -- warm-up ------------------------------------------------------------------------------------

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


def write_warm_cassettes(directory: str) -> list[str]:
    from harness.format.load import open_cassette
    from harness.format.writer import dump_cassette

    scenario = os.path.join(directory, "warm.yaml")
    with open(scenario, "w") as f:
        f.write(WARM_SCENARIO)
    return [scenario, str(dump_cassette(open_cassette(scenario), Path(directory) / "warm.jsonl"))]


def warm_up(directory: str) -> str | None:
    """Play two tiny sessions (the scenario, then its cassette) in this process, so what
    the engine builds on first use (argparse's formatter, re's caches, ...) exists before
    the fork, and so a spare child has touched (copied) the pages a session touches.
    On our own fds 0-2, borrowed for the time of it."""
    from fake_server.__main__ import main

    # A cold fake loads these only when a cassette is big or a report may hold a secret;
    # the server loads them once for every child (harness.format.wire uses a loaded orjson at once).
    import harness.format.redact  # noqa: F401
    try:
        import orjson  # noqa: F401
    except ImportError:
        pass  # the standard library's json serves
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
    except Exception as exc:  # noqa: BLE001 - any failure only makes children slower; it is told, not raised
        failure = f"{type(exc).__name__}: {exc}"
    else:
        failure = None
    finally:
        for fd, copy in zip((0, 1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)
        try:
            os.unlink(report)
        except OSError:
            pass
    return failure
