"""Serving a cassette on this process's stdio, as `codex app-server` would.

No event loop: the engine runs on the blocking StdioChannel (harness.replay.channel),
so a fake codex is answering before an asyncio import would have finished.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from harness.format.load import open_cassette
from harness.replay.channel import StdioChannel, Stopped, run_sync
from harness.replay.engine import DIVERGED_EXIT, ReplayEngine
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport

# The pid a client knows this fake by, in reports and in a report path's {pid}: our
# own, or, in a fork server's child (fake_server.forkserver), its launcher's.
CLIENT_PID: int | None = None


def client_pid() -> int:
    return CLIENT_PID or os.getpid()


def _serve(cassette_path: Path, options: ReplayOptions, report_path: Path | None) -> ReplayReport:
    cassette = open_cassette(cassette_path)
    channel = StdioChannel()
    engine = ReplayEngine(cassette, channel, options)
    engine.report.pid = client_pid()
    # SIGTERM/SIGINT (a test's teardown, a client's close()) end the play at its next wait;
    # in place before the "running" report, since whoever reads that may signal us at once.
    previous = {sig: signal.signal(sig, lambda *_: channel.request_stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if report_path is not None:
            # A "running" report at once: whoever launched us can find (and stop) us by it.
            engine.report.write(report_path)
        try:
            report = run_sync(engine.run())
        except Stopped:
            report = engine.report  # still leave a report: what was played, what was not
            report.status = "stopped"
        if report_path is not None:
            report.write(report_path)  # a stop arriving now only sets a flag: the report gets written
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return report


def serve_stdio(cassette_path: str | Path, options: ReplayOptions | None = None,
                report_path: str | Path | None = None) -> int:
    """Play the server role on stdin/stdout; the exit code is the recorded one,
    or DIVERGED_EXIT when the replay failed (the report says what happened)."""
    options = options or ReplayOptions()
    if report_path is not None:
        # One report per process, so several launches in one test keep theirs.
        report_path = Path(str(report_path).replace("{pid}", str(client_pid())))
    report = _serve(Path(cassette_path), options, report_path)
    if report.failed(options.strict):
        print(report.summary(), file=sys.stderr, flush=True)
        return DIVERGED_EXIT
    return report.exit_code or 0
