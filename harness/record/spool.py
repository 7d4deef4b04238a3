"""The spool between the proxy and its recorder process: forwarded bytes, safe the moment they cross.

The proxy appends every chunk it forwards (and every end of stream, exit and
stderr chunk) as a frame to an anonymous in-memory file (``memfd``) that the
recorder process shares, and pokes a pipe. Appending costs the wire one memory
copy; the kernel keeps what was appended even if the proxy is killed with
SIGKILL the next instant, so the recorder, which outlives it, still records it.
The memory file never reaches a disk: what it holds is not redacted yet.

The spool is bounded: the recorder gives recorded bytes back to the kernel
(RELEASE_EVERY) and says how far in the file's first page; a frame that would
hold more than CAP unrecorded-or-unreleased bytes waits (the forwarding thread,
so the wire, slows to the recorder's pace) until the recorder has given some
back. Nothing is dropped: a burst of any size costs time, never memory. The
recorder's end of the ``ack`` pipe wakes the waiting writer, and closes when
the recorder dies, so a wait never outlives it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import select
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

FRAME = struct.Struct("<BBdQ")  # side, kind, t, payload length
SIDES = ("client", "server", "stderr")
KINDS = ("data", "eof", "exit")
POKE = b"\0"
LAST_WORD = b"\1"  # on the poke pipe: what follows, to its end, is the proxy's closing message
INLINE = 1 << 12  # a payload up to this size goes out in the header's write
RELEASE_EVERY = 4 << 20  # give recorded memory back in steps of this much
CAP = 40 << 20  # the most the spool holds (frames not yet given back); then the wire waits
START = 4096  # frames start here; the first page says how far the recorder gave memory back
RELEASED = struct.Struct("<Q")
WAIT_LOOK = 0.05  # a waiting writer looks again this often (the ack pipe wakes it sooner)
_FALLOC_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


@dataclass(frozen=True)
class Frame:
    side: str
    kind: str
    t: float
    payload: bytes


def _memory_file() -> int:
    try:
        return os.memfd_create("codex-cassette spool", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        # No memfd on this system: an unlinked temporary file (it may reach the disk).
        handle = tempfile.TemporaryFile()
        fd = os.dup(handle.fileno())
        handle.close()
        return fd


@dataclass
class Spool:
    """Both ends, made before the fork; ``for_writer()``/``for_reader()`` keep one side each."""

    memfd: int = field(default_factory=_memory_file)
    poke_r: int = -1
    poke_w: int = -1
    ack_r: int = -1
    ack_w: int = -1

    def __post_init__(self) -> None:
        self.poke_r, self.poke_w = os.pipe()
        self.ack_r, self.ack_w = os.pipe()
        for fd in (self.poke_r, self.poke_w, self.ack_r, self.ack_w):
            os.set_blocking(fd, False)
        _pwrite_all(self.memfd, RELEASED.pack(START).ljust(START, b"\0"), 0)

    def for_writer(self) -> "SpoolWriter":
        os.close(self.poke_r)
        os.close(self.ack_w)
        return SpoolWriter(self.memfd, self.poke_w, self.ack_r)

    def for_reader(self) -> "SpoolReader":
        os.close(self.poke_w)
        os.close(self.ack_r)
        return SpoolReader(self.memfd, self.poke_r, self.ack_w)


@dataclass
class SpoolWriter:
    """The proxy's end; ``put`` is safe from any thread."""

    memfd: int
    poke: int
    ack: int
    offset: int = START
    failure: OSError | None = None  # the spool could not take a frame: recording stopped there
    closed: bool = False
    recorder_gone: bool = False  # its end of the ack pipe closed: nobody gives memory back
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, side: str, kind: str, t: float, payload: bytes = b"") -> None:
        head = FRAME.pack(SIDES.index(side), KINDS.index(kind), t, len(payload))
        with self._lock:
            if self.failure is not None or self.closed:
                return  # a forwarding thread left behind (a client that never reads) puts nothing more
            self._room_for(len(head) + len(payload))
            try:
                if len(payload) <= INLINE:
                    _pwrite_all(self.memfd, head + payload, self.offset)
                else:
                    _pwrite_all(self.memfd, head, self.offset)
                    _pwrite_all(self.memfd, payload, self.offset + len(head))
            except OSError as exc:  # out of memory for the spool
                self.failure = exc
                return
            self.offset += len(head) + len(payload)
        try:
            os.write(self.poke, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of pokes: the recorder will look anyway
        except BrokenPipeError:
            pass  # the recorder is gone: the proxy learns it when it asks for the result

    def _room_for(self, size: int) -> None:
        """Wait (holding the lock: frames keep their order) until the spool can take ``size``
        more bytes within CAP; a frame bigger than CAP alone goes into an empty spool."""
        while not self.recorder_gone:
            released = RELEASED.unpack(os.pread(self.memfd, RELEASED.size, 0))[0]
            if self.offset + size - released <= CAP or self.offset == released:
                return
            if select.select([self.ack], [], [], WAIT_LOOK)[0]:
                try:
                    if not os.read(self.ack, 1 << 12):
                        self.recorder_gone = True  # it died: no wait for it, the answer says so
                except BlockingIOError:
                    pass

    def close(self, last_word: bytes) -> None:
        """The end of input: every frame is in the spool; ``last_word`` (the proxy's verdict)
        goes on the poke pipe, which the recorder drains, so it is never dropped."""
        with self._lock:
            self.closed = True
        os.set_blocking(self.poke, True)
        try:
            os.write(self.poke, LAST_WORD + last_word)
        except BrokenPipeError:
            pass  # the recorder is gone
        os.close(self.poke)
        os.close(self.ack)
        os.close(self.memfd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


@dataclass
class SpoolReader:
    """The recorder's end: frames in the order the proxy put them."""

    memfd: int
    poke: int
    ack: int
    offset: int = START
    closed: bool = False  # the proxy closed its end (it is done, or dead)
    last_word: bytes | None = None  # what the proxy said at the end (None: it died first)
    _pokes: bytes = b""
    _released: int = START

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` for a poke (an idle recorder waking on the first one);
        True when the proxy put something meanwhile."""
        if self.closed or not select.select([self.poke], [], [], timeout)[0]:
            return False
        return self.take_pokes()

    def take_pokes(self) -> bool:
        """Without waiting: whether the proxy put something since the last look."""
        if self.closed:
            return False
        try:
            data = os.read(self.poke, 1 << 16)
        except BlockingIOError:
            return False
        if not data:
            self.closed = True
            if LAST_WORD in self._pokes:
                self.last_word = self._pokes[self._pokes.index(LAST_WORD) + 1:]
            return False
        # Keep only what may be the last word: pokes are worth nothing once counted.
        self._pokes = (self._pokes + data).lstrip(POKE)
        return True

    def pending(self) -> bool:
        return os.fstat(self.memfd).st_size - self.offset >= FRAME.size

    def oldest(self) -> float | None:
        """The time of the next frame not read yet."""
        if not self.pending():
            return None
        return FRAME.unpack(os.pread(self.memfd, FRAME.size, self.offset))[2]

    def drained(self) -> bool:
        """The proxy closed its end and every whole frame is read (a torn last frame, cut
        by the proxy's death or a failed write, is never completed)."""
        if not self.closed:
            return False
        size = os.fstat(self.memfd).st_size
        if size - self.offset < FRAME.size:
            return True
        length = FRAME.unpack(os.pread(self.memfd, FRAME.size, self.offset))[3]
        return size - self.offset - FRAME.size < length

    def frames(self, limit: int = 1 << 22) -> Iterator[Frame]:
        """The whole frames there now, about ``limit`` bytes of them at most; a frame still
        being written (or torn by the proxy's death) waits."""
        size = os.fstat(self.memfd).st_size
        taken = 0
        try:
            while size - self.offset >= FRAME.size and taken < limit:
                side, kind, t, length = FRAME.unpack(os.pread(self.memfd, FRAME.size, self.offset))
                if size - self.offset - FRAME.size < length:
                    return
                payload = os.pread(self.memfd, length, self.offset + FRAME.size) if length else b""
                if len(payload) < length:
                    return
                self.offset += FRAME.size + length
                taken += FRAME.size + length
                yield Frame(SIDES[side], KINDS[kind], t, payload)
        finally:  # a slice cut short gives back what it recorded too: the wire may be waiting
            self._release()

    def _release(self) -> None:
        # Recorded bytes are not needed again: let the kernel have their memory back.
        if self.offset - self._released < RELEASE_EVERY:
            return
        upto = self.offset - self.offset % 4096
        _punch_hole(self.memfd, self._released, upto - self._released)
        # Said even where no hole could be punched (a temporary file): the writer's wait
        # is on how far recording got, which is what bounds the spool's memory anyway.
        self._released = upto
        _pwrite_all(self.memfd, RELEASED.pack(upto), 0)
        try:
            os.write(self.ack, b"\0")
        except (BlockingIOError, BrokenPipeError):
            pass  # a wake-up is already waiting, or the proxy is gone


@functools.cache
def _fallocate() -> Any:
    """libc's fallocate, from the symbols this process already has (None where there is none)."""
    fallocate = getattr(ctypes.CDLL(None, use_errno=True), "fallocate", None)
    if fallocate is not None:
        fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    return fallocate


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    fallocate = _fallocate()
    return fallocate is not None and fallocate(fd, _FALLOC_PUNCH, offset, length) == 0
