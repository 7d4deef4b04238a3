"""A process a test's client connects to over a socket: the fake listening, or the
recorder in front of a listening codex. Both print codex's banner for ws (so the
port of ``ws://127.0.0.1:0`` is read from it); on unix the socket file appears.

Started by the fixtures' ``start()`` (never by a property), stopped at teardown
with SIGTERM, so the fake writes its final reports and the recorder its cassettes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import HarnessError
from harness.format.safe_files import open_private

TRANSPORTS = ("stdio", "ws", "unix")
READY_TIMEOUT = 30.0
STOP_GRACE = 15.0
_UNIX_PATH_MAX = 100  # sun_path holds 108 bytes; leave room


def check_transport(value: object) -> str:
    if value not in TRANSPORTS:
        raise HarnessError(f"transport {value!r} is not one of {', '.join(TRANSPORTS)}")
    return str(value)


def listen_url(transport: str, workdir: Path, name: str = "codex.sock") -> str:
    """Where a test's socket listens: a free loopback port, or a socket file of the test's
    own (in a short directory when the test's is too long for a socket path)."""
    if transport == "ws":
        return "ws://127.0.0.1:0"
    path = workdir / name
    if len(str(path)) > _UNIX_PATH_MAX:
        path = Path(tempfile.mkdtemp(prefix="cc-sock-")) / name
    return f"unix://{path}"


@dataclass
class ListeningProcess:
    """A started process and the URL its clients connect to."""

    proc: subprocess.Popen
    url: str
    stderr_path: Path
    scratch: Path | None = None  # a directory of its own (sockets, stderr), removed by stop()

    @classmethod
    def start(cls, argv: Sequence[str], env: Mapping[str, str], url: str, stderr_path: Path,
              cwd: str | None = None, timeout: float = READY_TIMEOUT,
              scratch: Path | None = None) -> "ListeningProcess":
        """Start ``argv`` (which listens at ``url``) and wait until it accepts, bounded."""
        with open_private(stderr_path) as err:  # never through a planted link
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    env=dict(env), cwd=cwd)
        started = cls(proc, url, stderr_path, scratch)
        try:
            started.url = started._wait_ready(timeout)
        except BaseException:
            started.stop()
            raise
        return started

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.proc.args[0]} exited with {self.proc.returncode} before it listened on "
                                   f"{self.url}: {self.stderr_tail()}")
            ready = self._ready()
            if ready is not None:
                return ready
            time.sleep(0.01)
        raise HarnessError(f"nothing listened on {self.url} within {timeout:g} s: {self.stderr_tail()}")

    def _ready(self) -> str | None:
        if self.url.startswith("ws://"):
            for line in self.stderr_path.read_text(errors="replace").splitlines():
                if "listening on: ws://" in line:
                    return line.split("listening on:", 1)[1].strip()
            return None
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(self.url[len("unix://"):])
            return self.url
        except OSError:
            return None
        finally:
            probe.close()

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "(no stderr)"
        return text[-limit:].strip() or "(nothing on stderr)"

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM, then wait (bounded); SIGKILL if it did not end. Its exit code, None if killed."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def remove_scratch(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def start_socket_recorder(record_argv: Sequence[str], transport: str, env: Mapping[str, str],
                          cwd: str | None) -> ListeningProcess:
    """The recorder (``record_argv``: `... record -o X -- codex app-server`) listening for the test's
    clients, in front of codex listening on a socket of its own; both in a scratch directory."""
    scratch = Path(tempfile.mkdtemp(prefix="cc-rec-"))
    url = listen_url(transport, scratch, "client.sock")
    cut = list(record_argv).index("--")
    argv = [*record_argv[:cut], "--listen", url, *record_argv[cut:], "--listen",
            listen_url(transport, scratch, "codex.sock")]
    try:
        return ListeningProcess.start(argv, env, url, scratch / "recorder.stderr", cwd=cwd, scratch=scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def stop_socket_recorder(recorder: ListeningProcess) -> list[str]:
    """Stop it (codex stops with it; the sessions still open are written as cut short) and say
    what went wrong, for the fixture to fail the test with (a test whose client never
    connected is told by the fixture, which knows its doors)."""
    code = recorder.stop()
    problems = []
    if code not in (0, -signal.SIGTERM):
        problems.append(f"the recorder in front of codex ended with {code}: {recorder.stderr_tail()}")
    recorder.remove_scratch()
    return problems
