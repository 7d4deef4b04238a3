"""Serving a cassette on this process's stdio, as `codex app-server` would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from harness.cassette import open_cassette
from harness.channel import StdioChannel
from harness.replay import DIVERGED_EXIT, ReplayEngine, ReplayOptions, ReplayReport


async def _serve(cassette_path: Path, options: ReplayOptions, report_path: Path | None) -> ReplayReport:
    cassette = open_cassette(cassette_path)
    channel = await StdioChannel().open()
    engine = ReplayEngine(cassette, channel, options)
    engine.report.pid = os.getpid()
    if report_path is not None:
        # A "running" report at once: whoever launched us can find (and stop) us by it.
        engine.report.write(report_path)
    task = asyncio.ensure_future(engine.run())
    loop = asyncio.get_running_loop()
    # Killed politely (a test's teardown, a client's close): still leave a report.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        report = await task
    except asyncio.CancelledError:
        report = engine.report
    if report_path is not None:
        report.write(report_path)
    return report


def serve_stdio(cassette_path: str | Path, options: ReplayOptions | None = None,
                report_path: str | Path | None = None) -> int:
    """Play the server role on stdin/stdout; the exit code is the recorded one,
    or DIVERGED_EXIT after a divergence (the report says what happened)."""
    options = options or ReplayOptions()
    if report_path is not None:
        # One report per process, so several launches in one test keep theirs.
        report_path = Path(str(report_path).replace("{pid}", str(os.getpid())))
    report = asyncio.run(_serve(Path(cassette_path), options, report_path))
    if report.failed(options.strict):
        print(report.summary(), file=sys.stderr, flush=True)
        return DIVERGED_EXIT
    return report.exit_code or 0
