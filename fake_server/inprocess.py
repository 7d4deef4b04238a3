"""The fake codex inside the caller's event loop, behind a subprocess-shaped handle."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.format.cassette import Cassette

from harness.format.load import open_cassette
from harness.format.values import returncode
from harness.replay.aio_channels import memory_pair
from harness.replay.engine import DIVERGED_EXIT, ReplayEngine
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport


class InProcessCodex:
    """What `launch_subprocess` would hand a driver: ``stdin`` (write, drain,
    close), ``stdout`` (async iterator of lines), ``wait()`` and ``returncode``.

    Construct it inside a running event loop; the engine starts at once.
    """

    def __init__(self, cassette: Cassette | str | Path, options: ReplayOptions | None = None,
                 report_path: str | Path | None = None) -> None:
        if not isinstance(cassette, Cassette):
            cassette = open_cassette(cassette)
        self.options = options or ReplayOptions()
        channel, self.stdin, self.stdout = memory_pair()
        self.stderr = None
        self.pid = None
        self.engine = ReplayEngine(cassette, channel, self.options)
        self._report_path = Path(report_path) if report_path else None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> ReplayReport:
        try:
            report = await self.engine.run()
        finally:
            # An ended fake is a dead process: a client writing to it gets EPIPE (BrokenPipeError)
            # instead of a write that is taken and never answered.
            self.stdin.close()
        if self._report_path is not None:
            report.write(self._report_path)
        return report

    @property
    def report(self) -> ReplayReport:
        return self.engine.report

    @property
    def returncode(self) -> int | None:
        if not self._task.done():
            return None
        if self._task.cancelled():
            return -9  # killed, as a process by SIGKILL
        if self.report.failed(self.options.strict):  # as the fake subprocess exits
            return DIVERGED_EXIT
        return returncode(self.report.exit_code or 0)  # a recorded death by signal N: -N, as a process's

    async def wait(self, timeout: float | None = None) -> int:
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.CancelledError:
            if not self._task.cancelled():  # our caller was cancelled, not the fake
                raise
        return self.returncode or 0

    def done(self) -> bool:
        return self._task.done()

    def kill(self) -> None:
        """End the fake at once, as SIGKILL would a process."""
        if not self._task.done():
            self._task.cancel()
        self.stdout._pipe.close()

    terminate = kill

    def kill_if_running(self) -> None:
        """Called at fixture teardown: stop an engine still waiting for its peer."""
        if not self._task.done():
            try:
                self.kill()
            except RuntimeError:  # its event loop is already closed
                pass
