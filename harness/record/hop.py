"""The wire between a client and a local server: one thread per direction.

Each thread moves bytes with blocking ``os.read``/``os.write`` on raw fds, so
a chunk crosses the proxy in two system calls with the GIL released, and the
event loop (and the recorder running in it) is off the path entirely. Every
chunk is handed to ``on_chunk`` before it is written on: a reply the chunk
provokes can only be read after that, so the order chunks are handed over is
the order the two sides saw them.
"""

from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass, field
from typing import Callable

CHUNK = 1 << 18
POLL = 0.05  # how long a read waits before looking at the stop flag again
STOP_READS = 16  # once stopped, at most this many reads of what is already there


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass
class Hop:
    """Forwards ``src`` to ``dst`` until end of file, or until stopped.

    ``check(chunk)`` may hold back the end of a chunk (the provider guard):
    it returns how many bytes may pass; fewer than all ends the hop after
    those. ``on_end(side, eof)`` runs in the thread when it stops, with eof
    True for a real end of file (or a check that cut the stream).
    """

    side: str
    src: int
    dst: int
    on_chunk: Callable[[str, bytes], None]
    on_end: Callable[[str, bool], None]
    check: Callable[[bytes], int] | None = None
    broken: bool = False  # dst's reader went away; reading (and recording) goes on
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Hop":
        threading.Thread(target=self._run, name=f"codex-cassette hop ({self.side})", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop reading at the next poll; a write blocked on a reader that never reads stays blocked
        (the thread is a daemon: it does not hold the process's exit)."""
        self._stop.set()

    def _run(self) -> None:
        eof = False
        last_looks = STOP_READS
        try:
            while last_looks:
                stopping = self._stop.is_set()
                if stopping:
                    # What the source said before we were stopped (its end of file above
                    # all: a client that hung up before the server exited) still counts.
                    last_looks -= 1
                try:
                    if not select.select([self.src], [], [], 0 if stopping else POLL)[0]:
                        if stopping:
                            return
                        continue
                    data = os.read(self.src, CHUNK)
                except OSError:  # a closed fd, EIO from a vanished terminal, a reset socket: the end
                    data = b""
                if not data:
                    eof = True
                    return
                if self.check is not None:
                    allowed = self.check(data)
                    if allowed < len(data):
                        self._forward(data[:allowed])
                        eof = True
                        return
                self._forward(data)
        finally:
            self.on_end(self.side, eof)

    def _forward(self, data: bytes) -> None:
        if not data:
            return
        self.on_chunk(self.side, data)
        if not self.broken:
            try:
                write_all(self.dst, data)
            except OSError:  # EPIPE: nobody reads dst any more
                self.broken = True
