"""Exclusive file locks that name their holder and leave no file behind.

A lock is ``flock(LOCK_EX)`` on a file opened for it. Releasing may remove the
file: the holder unlinks it while still holding the lock, and whoever acquires
afterwards checks that the file it locked is still the one at the path (else it
locked a removed file, and tries again). So a lock file exists only while
someone holds it, and two processes never both believe they hold the path.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.format.safe_files import open_fd, same_file

POLL = 0.05  # how often a waiting lock tries again


class LockBusy(HarnessError):
    """Someone else holds the lock (the message names them when the system can say)."""


@dataclass
class FileLock:
    """``FileLock(path).acquire(wait)``: the lock, held through ``fd`` (a file opened
    read-write, mode 0600) until ``release()``."""

    path: Path
    fd: int | None = None

    def acquire(self, wait: float = 0.0, purpose: str = "") -> "FileLock":
        """Take the lock, waiting up to ``wait`` seconds; LockBusy names the holder.
        ``purpose`` says what the lock guards, for that message."""
        deadline = time.monotonic() + wait
        while True:
            fd = open_fd(self.path, read=True, still_there=False)  # a planted link is refused, never followed
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = lock_holder(fd)
                os.close(fd)
                if time.monotonic() >= deadline:
                    waited = f" (waited {wait:g} s)" if wait else ""
                    raise LockBusy(f"{self.path}: {holder} holds the lock on it{waited}, "
                                   f"so this process cannot {purpose or 'take it'}. One writer per "
                                   "cassette: wait for the other recording to end, or record to "
                                   "another path.") from None
                time.sleep(POLL)
                continue
            if same_file(fd, self.path):
                self.fd = fd
                return self
            os.close(fd)  # the holder removed it as we locked it: lock the file now there

    def release(self, *, remove: bool) -> None:
        """Let go; with ``remove`` the file goes first (nobody waiting keeps a stale one)."""
        if self.fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None


def lock_holder(fd: int) -> str:
    """Who holds an flock on the file behind ``fd``: "pid N (its command)" from
    /proc/locks when the system has it, else "another process"."""
    st = os.fstat(fd)
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            entries = locks.read().splitlines()
    except OSError:
        return "another process"
    for entry in entries:
        fields = entry.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue  # "->" marks a waiter, not a holder
        try:
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key == want:
            return f"pid {fields[4]} ({_command_of(fields[4])})"
    return "another process"


def _command_of(pid: str) -> str:
    """The start of a process's command line, up to the first argument that could carry
    a value of the user's (a path, a flag's value): enough to tell who it is."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone since"
    words = [os.path.basename(argv[0].decode(errors="replace"))] if argv and argv[0] else []
    for arg in argv[1:4]:
        text = arg.decode(errors="replace")
        if not text or text.startswith("-") and text != "-m" or "/" in text or "=" in text:
            break
        words.append(text)
    return " ".join(words) or "unknown command"
