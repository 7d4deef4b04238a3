"""The proxy's recorder: a forked process that turns the spool into the cassette.

Why a process of its own: what the proxy forwards is in the spool (a shared
memory file, harness.record.spool) the moment it is forwarded, and this process
outlives the proxy. A proxy killed with SIGKILL in the middle of a burst loses
nothing it forwarded: the recorder reads to the end of the spool, records it and
finishes the cassette (``complete: false``, saying the proxy went away). And the
wire never waits for recording: the recorder works when the wire is quiet (it
waits while pokes keep coming, QUIET apart; once the oldest unrecorded frame is
MAX_LAG old it records anyway, in slices), at a lower CPU priority.

It ignores the signals the proxy forwards (those are for the server) and ends
at the proxy's ``end`` frame, or when the proxy's end of the spool closes
without one. It answers on a pipe: where the cassette went, complete or not,
why, and the write error that stopped it, if one did.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import HarnessError
from harness.format.redact import Redactor
from harness.format.wire import LineSplitter
from harness.format.safe_files import UnsafePath, open_private
from harness.format.writer import CassetteWriter
from harness.record.quiet import MAX_LAG, QUIET, QUIET_MAX
from harness.record.spool import Frame, Spool, SpoolReader, SpoolWriter
from harness.record.tee import Tee

# The pacing rule is harness.record.quiet's, run here without an event loop; a recorder
# process of its own may take longer slices of a stale backlog than one sharing the GIL.
SLICE = 0.005      # a stale backlog is recorded this long at a time, then QUIET's pause
IDLE = 0.05        # with nothing to do, look this often
NICENESS = 10      # the wire's processes (client, server, proxy) come first
PROXY_GONE = ("the proxy ended before the session did (killed?); everything it had forwarded "
              "is recorded")


@dataclass
class RecorderResult:
    cassette: str
    complete: bool
    end: str
    write_error: str | None = None

    @classmethod
    def lost(cls, writer: CassetteWriter, why: str) -> "RecorderResult":
        return cls(str(writer.partial), False, why,
                   f"the recorder process ended without an answer ({why}); what it recorded is kept "
                   f"in {writer.partial} (complete: false).")


@dataclass
class StderrCopy:
    """``--stderr-file``: the server's stderr, redacted line by line; a write error stops the copy."""

    out: BinaryIO
    redactor: Redactor
    path: str = ""
    failure: OSError | None = None

    def __post_init__(self) -> None:
        self._split = LineSplitter()
        self._scrub = self.redactor.line_scrubber()  # a key block spans stderr lines

    def feed(self, data: bytes | None) -> None:
        """A chunk, or None at the end (the last line may lack its newline)."""
        if self.failure is not None:
            return
        lines = self._split.feed(data) if data is not None else []
        out = b"".join(self._scrub.scrub_bytes(line) + b"\n" for line in lines)
        if data is None:
            out += self._scrub.scrub_bytes(self._split.rest())
        try:
            self.out.write(out)
            self.out.flush()
        except OSError as exc:
            self.failure = exc

    def close(self) -> None:
        try:
            self.out.close()
        except OSError as exc:
            self.failure = self.failure or exc

    def failure_message(self) -> str:
        assert self.failure is not None
        return (f"could not write the stderr copy {self.path} ({self.failure.strerror or self.failure}); "
                "the copy stopped there, the server's stderr still went through.")


@dataclass
class RecorderProcess:
    """The proxy's handle on its recorder: the spool to put into, the answer to wait for."""

    pid: int
    spool: SpoolWriter
    answer_fd: int
    copies_stderr: bool = False  # without a stderr copy, the server's stderr is not spooled at all

    def put(self, side: str, kind: str, t: float, payload: bytes = b"") -> None:
        self.spool.put(side, kind, t, payload)

    @property
    def failure(self) -> OSError | None:
        """The spool could not take a frame (a file size limit, no memory): nothing after it
        reached the recorder."""
        return self.spool.failure

    def end(self, complete: bool, end: str, framed: tuple[bool, str] | None = None) -> None:
        """The proxy's verdict, and the one that holds if the client ended its session with a
        WebSocket close frame (which only the recorder sees); the recorder finishes the cassette."""
        word: dict[str, Any] = {"complete": complete, "end": end}
        if framed is not None:
            word["framed"] = list(framed)
        self.spool.close(json.dumps(word).encode())

    async def answer(self, writer: CassetteWriter, timeout: float) -> RecorderResult:
        """The recorder's answer once it has finished the cassette; a huge backlog takes a
        while, so the wait is long, but bounded: then it finishes on its own."""
        loop = asyncio.get_running_loop()
        data = bytearray()
        done: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            chunk = os.read(self.answer_fd, 1 << 16)
            data.extend(chunk)
            if not chunk and not done.done():
                done.set_result(None)

        loop.add_reader(self.answer_fd, readable)
        try:
            await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            return RecorderResult(str(writer.partial), False, "the recorder did not finish in time",
                                  f"the recorder (pid {self.pid}) is still writing {writer.path} after "
                                  f"{timeout:g} s; it finishes on its own.")
        finally:
            loop.remove_reader(self.answer_fd)
        os.close(self.answer_fd)
        try:
            os.waitpid(self.pid, 0)  # it exits right after answering
        except ChildProcessError:
            pass
        try:
            return RecorderResult(**json.loads(bytes(data)))
        except (ValueError, TypeError):
            return RecorderResult.lost(writer, "it died")


def start_recorder(writer: CassetteWriter, tee: Tee, stderr_copy: StderrCopy | None) -> RecorderProcess:
    """Fork the recorder. Call it before any thread starts: the child takes the writer, the
    tee and the stderr copy over, and this process stops touching them."""
    spool = Spool()
    answer_r, answer_w = os.pipe()
    writer.now()  # the clock starts here, for both processes
    pid = os.fork()
    if pid == 0:  # the recorder
        code = 1
        try:
            os.close(answer_r)
            reader = spool.for_reader()
            _detach(keep={reader.memfd, reader.poke, reader.ack, answer_w, *writer.fds(),
                          *([stderr_copy.out.fileno()] if stderr_copy else [])})
            code = _record(reader, writer, tee, stderr_copy, answer_w)
        finally:
            os._exit(code)
    os.close(answer_w)
    writer.hand_over()
    if stderr_copy is not None:
        stderr_copy.out.close()
    return RecorderProcess(pid, spool.for_writer(), answer_r, stderr_copy is not None)


def _detach(keep: set[int]) -> None:
    """Leave the proxy's signals and files alone: the client must see our stdio close when
    the proxy's does, and the server's pipes must end with the proxy."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
    try:
        os.nice(NICENESS)
    except OSError:
        pass  # not allowed here: record at the same priority


def _record(spool: SpoolReader, writer: CassetteWriter, tee: Tee, stderr_copy: StderrCopy | None,
            answer_fd: int) -> int:
    verdict: dict[str, Any] | None = None
    problem: str | None = None
    try:
        verdict = _drain(spool, writer, tee, stderr_copy)
    except Exception as exc:  # a bug must still leave a cassette and an answer
        problem = f"the recorder failed: {type(exc).__name__}: {exc}"
    if stderr_copy is not None:
        stderr_copy.close()
    if verdict and tee.closed_by_frame and verdict.get("framed"):
        verdict["complete"], verdict["end"] = verdict["framed"]
    complete = bool(verdict and verdict["complete"])
    end = problem or (verdict["end"] if verdict else PROXY_GONE)
    path = tee.finish(complete and problem is None, end)
    errors = [m for m in (writer.failure_message() if writer.failure else None,
                          stderr_copy.failure_message() if stderr_copy and stderr_copy.failure else None,
                          problem) if m]
    result = RecorderResult(str(path), complete and problem is None and writer.failure is None, end,
                            " ".join(errors) or None)
    os.write(answer_fd, json.dumps(asdict(result)).encode())
    os.close(answer_fd)
    return 0


def _drain(spool: SpoolReader, writer: CassetteWriter, tee: Tee,
           stderr_copy: StderrCopy | None) -> dict[str, Any] | None:
    """Record frames until the proxy closed its end of the spool and every frame is
    recorded; then its last word (its verdict), or None if it died without one."""
    last_poke = -1.0
    pause = QUIET
    while True:
        if not spool.pending() and spool.wait(IDLE):  # idle: the first poke wakes us
            last_poke = time.monotonic()
        if spool.drained():
            return json.loads(spool.last_word) if spool.last_word else None
        oldest = spool.oldest()
        if oldest is None:
            continue
        stale = writer.now() - oldest >= MAX_LAG
        if not spool.closed and time.monotonic() - last_poke < QUIET and not stale:
            # A burst: let it pass, looking less and less often (sleeping, not woken by each poke).
            time.sleep(pause)
            pause = min(pause * 2, QUIET_MAX)
            if spool.take_pokes():
                last_poke = time.monotonic()
            continue
        pause = QUIET
        budget = time.monotonic() + SLICE if stale and not spool.closed else None
        with writer.batch():
            for frame in spool.frames():
                _apply(frame, tee, stderr_copy)
                if budget is not None and time.monotonic() > budget:
                    break
        if spool.take_pokes():
            last_poke = time.monotonic()


def _apply(frame: Frame, tee: Tee, stderr_copy: StderrCopy | None) -> None:
    if frame.side == "stderr":
        if stderr_copy is not None:
            stderr_copy.feed(frame.payload if frame.kind == "data" else None)
    elif frame.kind == "data":
        tee.chunk(frame.side, frame.payload, frame.t)
    elif frame.kind == "eof":
        tee.eof(frame.side, frame.t)
    elif frame.kind == "exit":
        tee.exit(json.loads(frame.payload), frame.t)


def open_stderr_copy(path: str | Path, redactor: Redactor) -> StderrCopy:
    """``--stderr-file``, opened (0600) before the server starts, so a bad path is said first."""
    try:
        return StderrCopy(open_private(path), redactor, str(path))
    except UnsafePath:
        raise
    except OSError as exc:
        raise HarnessError(f"cannot write the stderr copy {path}: {exc.strerror or exc}. Pick a "
                           "path in a directory this user can write (--stderr-file).") from None
