"""A local server process that the recorder starts, signals and reaps itself.

asyncio's subprocess support reaps children from a watcher; anything else that
waits for the same child (``Popen.poll()`` inside ``send_signal``, a teardown
after the loop closed) races it, and the loser reports a status it made up (255,
or 0). A recording must say how its server ended, so here one owner does it all:
the child is signalled by pid (through a pidfd where the system has them, so a
reused pid is never hit), and reaped with ``waitpid`` by this class alone, from
the event loop or from blocking code alike. A status this class did not see is
``None``, never a guess.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import IO, Any, Mapping, Sequence

from harness.errors import HarnessError
from harness.record.ending import ExitStatus

POLL = 0.01  # how often a wait without a pidfd looks again


class TransportError(HarnessError):
    """A peer process could not be started or reached."""


def exit_status(returncode: int) -> ExitStatus:
    """A returncode (negative: killed by that signal) as a cassette ``exit`` value."""
    if returncode >= 0:
        return returncode
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"SIG{-returncode}"


def signal_number(name: str) -> int:
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise TransportError(f"unknown signal {name!r}; use a name such as SIGTERM or SIGINT") from None


@dataclass
class ChildProcess:
    """A started child; ``returncode`` once reaped (negative for a signal)."""

    popen: subprocess.Popen[bytes]
    pidfd: int | None = None
    returncode: int | None = None

    @classmethod
    def start(cls, argv: Sequence[str], *, stdin: Any, stdout: Any, stderr: Any,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> "ChildProcess":
        """Start ``argv`` (no shell); the stdio arguments are Popen's."""
        if not argv:
            raise TransportError("no command given to start")
        try:
            popen = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr,
                                     env=dict(env) if env is not None else None, cwd=cwd)
        except OSError as exc:
            raise TransportError(f"cannot start {argv[0]!r}: {exc.strerror or exc}. Check that the "
                                 "command exists and is executable (the part after `--`).") from None
        try:
            pidfd: int | None = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            pidfd = None  # no pidfds here: signal by pid, poll for the exit
        return cls(popen, pidfd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def status(self) -> ExitStatus | None:
        return None if self.returncode is None else exit_status(self.returncode)

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.popen.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        return self.popen.stderr

    def poll(self) -> ExitStatus | None:
        """Reap the child if it has exited; its status, or None while it runs."""
        if self.returncode is None:
            try:
                pid, raw = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return None  # someone else reaped it: the status is not known, and stays so
            if pid:
                self._reaped(os.waitstatus_to_exitcode(raw))
        return self.status

    def _reaped(self, returncode: int) -> None:
        self.returncode = returncode
        self.popen.returncode = returncode  # so Popen never waits for it again
        self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def wait(self, timeout: float) -> ExitStatus | None:
        """Blocking: the status, or None if the child still runs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.poll() is None and self._may_still_exit():
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL)
        return self.status

    @property
    def lost(self) -> bool:
        """Reaped by someone else: its status will never be known here."""
        return self.returncode is None and not self._may_still_exit()

    def _may_still_exit(self) -> bool:
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False  # not ours to wait for any more
        return True

    async def wait_async(self, timeout: float | None = None) -> ExitStatus:
        """In an event loop: the status; asyncio.TimeoutError if still running after timeout."""
        return await asyncio.wait_for(self._exited(), timeout)

    async def _exited(self) -> ExitStatus:
        loop = asyncio.get_running_loop()
        while True:
            status = self.poll()
            if status is not None:
                return status
            if not self._may_still_exit():
                raise TransportError(f"process {self.pid} was reaped by someone else: its exit status is lost")
            if self.pidfd is None:
                await asyncio.sleep(POLL)
                continue
            readable = loop.create_future()
            fd = self.pidfd
            loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(fd)

    def send_signal(self, sig: str | int) -> None:
        """Signal the child by its pid, unless it is known to have exited."""
        number = signal_number(sig) if isinstance(sig, str) else sig
        if self.returncode is not None:
            return
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, number)
            else:
                os.kill(self.pid, number)
        except ProcessLookupError:
            pass  # it exited (a zombie cannot be signalled): poll() will reap it

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Let go of the pidfd (the child's pipes belong to whoever read them)."""
        self._close_pidfd()
