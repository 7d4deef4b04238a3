"""The append-only cassette writer with an atomic finish.

The writer appends to ``<path>.partial`` (a header saying ``complete: false``
first, then one flushed line per event), so a recording cut short by any kind of
death still loads; ``finish()`` sets the final header and renames onto the
target in one atomic step.

One writer per path: the writer holds an exclusive lock on its ``.partial``
(harness.format.locks), so a second recorder of the same cassette fails at once,
naming the first. Files are 0600 whatever the umask: a session may carry private
data the redactor could not recognise. A write that fails (a full disk, an I/O
error, a file size limit) stops the writing, never the caller: ``failure`` says
what happened and the ``.partial`` written so far is kept.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

from harness.errors import HarnessError
from harness.format.cassette import FORMAT_VERSION, Cassette, Event
from harness.format.locks import FileLock
from harness.format.minted import DEFAULT, MintedValues
from harness.format.safe_files import UnsafePath, open_private, refuse_link, replace_atomically, unlink_ours
from harness.format.wire import decode, encode


class CassettePathError(HarnessError):
    """A cassette path that cannot be written (said before anything starts)."""


def _path_problem(path: Path, exc: OSError) -> HarnessError:
    if isinstance(exc, UnsafePath):
        return exc  # names the link itself
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        reason = "a part of the path is a file, not a directory"
    return CassettePathError(f"cannot write the cassette {path}: {reason}. Pick a path in a "
                             "directory this user can write (the -o/--output option).")


class CassetteWriter:
    """Append-only, crash-safe cassette writer.

    Events go to ``<path>.partial`` as they happen, each line flushed, so a
    killed recorder leaves a loadable, ``complete: false`` cassette behind.
    Inside ``batch()`` (a burst the recorder already holds in memory) lines are
    flushed once at its end instead: a burst of small lines costs one write.
    """

    def __init__(self, path: str | Path, meta: dict[str, Any] | None = None, *,
                 clock: Any = time.monotonic, fresh: bool = False,
                 volatile: Sequence[str] = (), baseline: str | Path | None = None) -> None:
        self.path = Path(path)
        # Over an existing cassette (or the baseline given), finish keeps the old lines whose
        # meaning is unchanged (harness.format.stable) unless fresh: no old file is then read.
        self.fresh = fresh
        self.baseline = Path(baseline) if baseline is not None else self.path
        self.minted = MintedValues(tuple(volatile)) if volatile else DEFAULT
        if self.path.is_dir() or not self.path.name:
            raise CassettePathError(f"cannot write the cassette {self.path}: it is a directory. "
                                    "Give a file name such as session.jsonl (the -o/--output option).")
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self.meta = dict(meta or {})
        self.meta.setdefault("recorded_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.meta["complete"] = False
        self._clock = clock
        self._t0: float | None = None
        self._count = 0
        self._closed = False
        self._autoflush = True
        self.failure: OSError | None = None  # the write error that stopped the writing
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for ours in (self.path, self._tmp):  # said now, not after the session
                refuse_link(ours)
            self._lock = FileLock(self.partial).acquire(purpose=f"record {self.path.name}")
        except OSError as exc:
            raise _path_problem(self.path, exc) from None
        assert self._lock.fd is not None
        os.ftruncate(self._lock.fd, 0)  # a stale .partial of a killed recording: start afresh
        self._fh: BinaryIO = os.fdopen(os.dup(self._lock.fd), "wb")
        self._line(self._header())
        if self.failure is not None:
            self._abandon()
            raise _path_problem(self.path, self.failure)

    def _header(self) -> dict[str, Any]:
        return {"codex_cassette": FORMAT_VERSION, "meta": self.meta}

    def _line(self, obj: dict[str, Any]) -> None:
        self._append(encode(obj))

    def _append(self, data: bytes) -> None:
        if self.failure is not None:
            return
        try:
            self._fh.write(data)
            if self._autoflush:
                self._fh.flush()
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        # What reached the file stays there (a torn last line loads: complete is false).
        self.failure = exc
        try:
            self._fh.close()
        except OSError:
            pass  # the unwritten buffer is what could not be written

    def _abandon(self) -> None:
        self._closed = True
        self._lock.release(remove=True)  # nothing was recorded in it

    def discard(self) -> None:
        """Give up before anything was recorded: no file stays behind."""
        if not self._closed:
            if self.failure is None:
                self._fh.close()
            self._abandon()

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._autoflush = False
        try:
            yield
        finally:
            self._autoflush = True
            if not self._closed and self.failure is None:
                try:
                    self._fh.flush()
                except OSError as exc:
                    self._failed(exc)

    def now(self) -> float:
        t = self._clock()
        if self._t0 is None:
            self._t0 = t
        return t - self._t0

    def write(self, event: Event) -> Event:
        if self._closed:
            raise RuntimeError("cassette writer already finished")
        event.index = self._count + 1
        data = encode(event.to_json())  # first: a value too deep to encode leaves no trace
        self._count += 1
        self._append(data)
        return event

    def write_verbatim(self, side: str, t: float, msg_json: bytes, newline: bool = True) -> int:
        """Append a message event around the peer's own JSON bytes (already known to be a
        JSON object on one line): no re-encoding, and the cassette keeps what was said."""
        if self._closed:
            raise RuntimeError("cassette writer already finished")
        self._count += 1
        head = b'{"i":%d,"from":"%s","t":%s,"msg":' % (self._count, side.encode(), repr(round(t, 6)).encode())
        self._append(head + msg_json.strip() + (b"}\n" if newline else b',"nonl":true}\n'))
        return self._count

    def record(self, side: str, **payload: Any) -> Event:
        """Append an event stamped with the time since the writer's clock started (its first use)."""
        return self.write(Event(side=side, t=self.now(), **payload))

    @property
    def count(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def fds(self) -> set[int]:
        """The file descriptors this writer holds (the lock's and the file's)."""
        return {fd for fd in (self._lock.fd, None if self._fh.closed else self._fh.fileno()) if fd is not None}

    def hand_over(self) -> None:
        """Stop writing here: another process (a fork that shares the open file, and so
        the lock) writes from now on. Nothing buffered is lost: nothing is buffered."""
        self._closed = True
        self._fh.close()
        os.close(self._lock.fd)  # type: ignore[arg-type]
        self._lock.fd = None

    def failure_message(self) -> str:
        """One paragraph for a writing that failed: what, and which file was kept."""
        assert self.failure is not None
        return (f"could not write the cassette {self.path} ({self.failure.strerror or self.failure}); "
                f"recording stopped there while the session went on unchanged. What was recorded up to "
                f"then is kept in {self.partial} (complete: false).")

    def finish(self, *, complete: bool = True, **meta: Any) -> Path:
        """Close, set the final header, and move the cassette into place atomically.
        Returns the cassette's path; after a write error, the ``.partial`` kept instead."""
        if self._closed:
            return self.partial if self.failure is not None else self.path
        self._closed = True
        if self.failure is None:
            try:
                self._fh.close()
            except OSError as exc:
                self._failed(exc)
        self.meta.update(meta)
        self.meta["complete"] = complete
        if self.failure is None:
            self._move_into_place()
        self._lock.release(remove=self.failure is None)
        return self.partial if self.failure is not None else self.path

    def _move_into_place(self) -> None:
        tmp = self._tmp
        try:
            old = None if self.fresh else _old_cassette(self.baseline)
            with open(self.partial, "rb") as src, open_private(tmp) as dst:
                src.readline()  # the provisional header
                if old is not None:
                    from harness.format.stable import stable_bytes  # only when re-recording

                    new = encode(self._header()) + src.read()
                    try:
                        kept = stable_bytes(old, new, self.minted)
                    except (ValueError, TypeError, RecursionError):
                        kept = None  # an old file we cannot read as a cassette is replaced whole
                    dst.write(new if kept is None else kept.data)
                else:
                    dst.write(encode(self._header()))
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
                replace_atomically(tmp, dst, self.path)
        except OSError as exc:
            self.failure = exc
            unlink_ours(tmp)


def _old_cassette(path: Path) -> bytes | None:
    """The bytes of the cassette a recording is about to replace, if it is a regular file."""
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


EARLIER_END = "; the recording itself ended so: "  # joins mark_incomplete's reason to a cassette's own end


def mark_incomplete(path: str | Path, reason: str) -> bool:
    """Say in a finished cassette's header that it is not to be trusted (``complete:
    false``, ``end: reason``), so ``--codex-record-mode=new`` records it again. A cassette
    already cut short keeps its own end after the reason, which comes first
    (docs/recording.md: a failed test is the first reason). False when there is nothing
    to mark (no such file, or its end already begins with the reason)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    tmp = path.with_name(path.name + ".tmp")
    # The writer's own lock: a recording still being written is waited for, briefly.
    lock = FileLock(partial).acquire(wait=10.0, purpose=f"mark {path.name} incomplete")
    try:
        with open(path, "rb") as src:
            header = decode(src.readline())
            meta = header.get("meta") if isinstance(header, dict) else None
            if not isinstance(meta, dict) or str(meta.get("end", "")).startswith(reason):
                return False
            if not meta.get("complete") and meta.get("end"):
                reason = f"{reason}{EARLIER_END}{meta['end']}"
            meta["complete"] = False
            meta["end"] = reason
            with open_private(tmp) as dst:
                dst.write(encode(header))
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
                replace_atomically(tmp, dst, path)
        return True
    except (FileNotFoundError, ValueError):
        return False
    finally:
        unlink_ours(tmp)
        lock.release(remove=True)


def dump_cassette(cassette: Cassette, path: str | Path) -> Path:
    """Write a whole cassette atomically (compiled scenarios, rewrites): exactly these
    events, whatever the file held before (fresh)."""
    writer = CassetteWriter(path, cassette.meta, fresh=True)
    for event in cassette.events:
        writer.write(event)
    return writer.finish(complete=cassette.meta.get("complete", True))
