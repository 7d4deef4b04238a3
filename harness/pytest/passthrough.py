"""``--codex-disable-recording``: the codex fixtures hand out the real codex, with no fake in
between and nothing written (pytest-recording's ``--disable-recording``). With a live scenario
(``live=``) that codex runs offline against the loopback mock model, as when recording."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOP_GRACE = 5.0  # seconds a codex the test left running has to exit after SIGTERM


@dataclass
class RealCodex:
    """The real ``codex app-server`` in a codex fixture's place: ``.argv``, ``.env``, ``.bin_dir``,
    ``.cwd`` and ``await .handle()`` as the fixtures have them; no report, no cassette."""

    binary: Path
    live: Any = None                   # harness.live.session.LiveCodex, started, or None
    timeout: float = 10.0              # the replay timeout in force, for a test that sizes its waits by it
    recording: bool = False
    cassette_path: Path | None = None  # none: nothing is replayed or written
    url: str | None = None             # a socket transport is not offered: codex's own --listen is the client's
    _procs: list[Any] = field(default_factory=list)

    mode = "real"

    @property
    def argv(self) -> list[str]:
        return self.live.argv if self.live is not None else [str(self.binary), "app-server"]

    @property
    def bin_dir(self) -> Path:
        """The real codex's directory; first on PATH in .env."""
        return self.binary.parent

    @property
    def env(self) -> dict[str, str]:
        env = self.live.env if self.live is not None else dict(os.environ)
        env["PATH"] = os.pathsep.join(p for p in (str(self.bin_dir), env.get("PATH")) if p)
        return env

    @property
    def cwd(self) -> str:
        return str(self.live.workdir) if self.live is not None else os.getcwd()

    @property
    def reports(self) -> list[Any]:
        return []

    @property
    def report(self) -> None:
        return None

    async def handle(self) -> Any:
        """A real codex process in the driver's handle shape, stopped at teardown if still running."""
        from harness.record.process import spawn_owned

        proc = await spawn_owned(self.argv, self.env, self.cwd, stderr=subprocess.DEVNULL)
        self._procs.append(proc)
        return proc

    def finish(self, grace: float = STOP_GRACE, failed: str | None = None) -> list[str]:
        """Stop what the test left running; nothing to judge."""
        for proc in self._procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self._procs:
            if proc.child.wait(grace) is None:
                proc.kill()
                proc.child.wait(grace)
        if self.live is not None:
            self.live.stop()
            self.live = None
        return []


def real_codex(codex_bin: str | None, live_scenario: Any, timeout: float) -> RealCodex:
    from harness.live.binary import find_codex_binary

    live = None
    if live_scenario is not None:
        from harness.live.session import LiveCodex

        live = LiveCodex(live_scenario, codex_bin).start()
    binary = Path(live.binary) if live is not None else find_codex_binary(codex_bin)
    return RealCodex(binary=binary, live=live, timeout=timeout)
