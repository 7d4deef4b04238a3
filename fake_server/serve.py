"""Serving a cassette on this process's stdio, as `codex app-server` would.

No event loop: the engine runs on the blocking StdioChannel (harness.replay.channel),
so a fake codex is answering before an asyncio import would have finished.

SIGTERM, SIGINT and SIGHUP end the fake within a second whatever it is doing
(loading, reading, a write the client does not take, working out a diff): the
handler raises Stopped on the spot, and the report says `stopped`. Only while a
report is being written does a signal wait for it to be done.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from harness.format.load import open_cassette
from harness.format.values import returncode
from harness.replay.channel import StdioChannel, Stopped, run_sync, write_mode, write_within
from harness.replay.engine import DIVERGED_EXIT, ReplayEngine
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STDERR_DEADLINE = 1.0  # a client that never reads our stderr does not keep us for longer
STOP_TELL_DEADLINE = 0.2  # ... nor, once we were told to stop, for more than this

# The pid a client knows this fake by, in reports and in a report path's {pid}: our
# own, or, in a fork server's child (fake_server.forkserver), its launcher's.
CLIENT_PID: int | None = None


def client_pid() -> int:
    return CLIENT_PID or os.getpid()


class StopSignals:
    """The stop signals while serving: raise Stopped at once when armed, else note it."""

    def __init__(self) -> None:
        self.armed = False
        self.received: int | None = None
        self.pending = False  # a stop came while disarmed: the next stretch stops at once
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        if self.armed:
            self.armed = False  # one Stopped is enough; the way out must not be cut short
            raise Stopped()
        self.pending = True

    def install(self) -> None:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @contextmanager
    def stopping(self) -> Iterator[None]:
        """A stretch a signal may cut short (a stop that came before it cuts it at once)."""
        if self.pending:
            self.pending = False
            raise Stopped()
        self.armed = True
        try:
            yield
        finally:
            self.armed = False


def write_report(report: ReplayReport, path: str | os.PathLike[str] | None) -> None:
    if path is None:
        return
    try:
        report.write(path)
    except OSError as exc:  # a full disk or a vanished directory: say so, do not die of it
        tell(f"fake codex: cannot write the report {path}: {exc.strerror or exc}")


def _serve(cassette_path: str | os.PathLike[str], options: ReplayOptions, report_path: str | None,
           signals: StopSignals) -> ReplayReport:
    try:
        with signals.stopping():
            cassette = open_cassette(cassette_path)
            channel = StdioChannel(write_timeout=options.timeout)
            engine = ReplayEngine(cassette, channel, options)
    except Stopped:
        _die_of(signals.received)  # nothing started, nothing to report: end as the signal says
    report = engine.report
    report.pid = client_pid()
    # A "running" report at once: whoever launched us can find (and stop) us by it.
    write_report(report, report_path)
    try:
        with signals.stopping():
            report = run_sync(engine.run())
    except Stopped:
        if report.status == "running":  # a verdict reached before the signal stands
            report.status = "stopped"  # still leave a report: what was played, what was not
        if not report.bindings:  # the signal cut the engine's own last words short
            report.bindings = engine.report_bindings()
        # A client that hung up and at once signalled us (the openai-codex SDK's close())
        # left nothing but the closing events: that is waiting for the hang-up, not a failure.
        events = engine.cassette.events
        report.awaiting_close = report.awaiting_close or all(
            events[p].eof or events[p].exit is not None for p in range(report.played, len(events)))
    write_report(report, report_path)
    return report


def _die_of(signum: int | None) -> None:
    signum = signum or signal.SIGTERM
    if signum in (signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
                  signal.SIGSEGV, signal.SIGSYS, signal.SIGXCPU, signal.SIGXFSZ):
        import resource  # a replayed crash leaves no core file behind

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL keeps its default anyway
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # a signal whose default is not to end us


def serve_stdio(cassette_path: str | os.PathLike[str], options: ReplayOptions | None = None,
                report_path: str | os.PathLike[str] | None = None) -> int:
    """Play the server role on stdin/stdout; the exit code is the recorded one (a recorded
    death by a signal is died of), or DIVERGED_EXIT when the replay failed (the report says
    what happened)."""
    options = options or ReplayOptions()
    if report_path is not None:
        # One report per process, so several launches in one test keep theirs.
        report_path = os.fspath(report_path).replace("{pid}", str(client_pid()))
    signals = StopSignals()
    signals.install()  # before anything else: whoever started us may signal us at any moment
    try:
        report = _serve(cassette_path, options, report_path, signals)
        if report.failed(options.strict):
            # The summary is what a person reads in a CI log: a stop that came meanwhile (a client
            # cleaning up after the error it was sent) shortens its deadline, never skips it.
            tell(report.summary(), STOP_TELL_DEADLINE if signals.pending or signals.received else STDERR_DEADLINE)
            return DIVERGED_EXIT
        status = report.exit_code or 0
    finally:
        signals.restore()
    code = returncode(status)
    if code < 0:  # the recorded server died of this signal: so does the fake
        _die_of(-code)
    return code


def tell(text: str, deadline: float = STDERR_DEADLINE) -> None:
    """A line for a person on stderr, given up after ``deadline`` if nobody reads it."""
    try:
        sys.stderr.flush()
        fd = sys.stderr.fileno()
        write_within(fd, (text + "\n").encode("utf-8", "replace"), deadline, write_mode(fd))
    except (OSError, ValueError):
        pass  # no stderr (closed, or not a file): the report has it all
