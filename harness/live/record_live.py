"""`codex-cassette record-live SCENARIO.yaml -o PATH`: record the real codex, offline.

The real binary runs against the loopback mock model, behind the in-process
recorder, driven by the built-in scripted client. The scenario is written into
the cassette header so `drift rerecord` can play it again on another codex.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.format.minted import add_rerecord_flags
from harness.live.binary import CODEX_BIN_HELP
from harness.live.client import ScriptedClient
from harness.live.session import LiveCodex, LiveScenario
from harness.record.guard import ProviderGuard
from harness.record.handle import RecordingHandle

EXIT_WAIT = 10.0


@dataclass
class LiveRecording:
    path: Path
    codex_version: str
    events: int
    seconds: float


async def record_live(scenario: LiveScenario | str | Path, output: str | Path, *,
                      codex_bin: str | None = None, timeout: float = 30.0, fresh: bool = False,
                      volatile: Sequence[str] = ()) -> LiveRecording:
    if not isinstance(scenario, LiveScenario):
        scenario = LiveScenario.load(scenario)
    started = time.monotonic()
    async with LiveCodex(scenario, codex_bin) as live:
        proc = await live.spawn()
        recorder = RecordingHandle(proc, output, placeholders=live.placeholders(),
                                   command=["codex", "app-server"], env=live.env, guard=ProviderGuard("mock"),
                                   fresh=fresh, volatile=volatile)
        recorder.writer.meta.update(live.meta())
        client = ScriptedClient(recorder, timeout=timeout, source=scenario.source)
        complete = False
        try:
            await client.start(scenario.codex, str(live.workdir))
            await client.run(scenario.client)
            await client.close()
            await asyncio.wait_for(proc.wait(), EXIT_WAIT)
            complete = True
        finally:
            if proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), EXIT_WAIT)
            path = recorder.finish(complete=complete)
    return LiveRecording(path=path, codex_version=live.version, events=recorder.writer.count,
                         seconds=round(time.monotonic() - started, 3))


def cli_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record-live", help="record the real codex offline against the built-in mock model",
                       description="Run the real codex app-server against a loopback mock of the model API "
                                   "(no account, no internet), drive it with the built-in client as the "
                                   "scenario says, and write the session as a cassette.")
    p.add_argument("scenario", metavar="SCENARIO.yaml")
    p.add_argument("-o", "--output", required=True, metavar="PATH")
    p.add_argument("--codex-bin", default=None, metavar="B", help=CODEX_BIN_HELP)
    p.add_argument("--timeout", type=float, default=30.0, help="longest wait for any one answer (default 30)")
    add_rerecord_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    rec = asyncio.run(record_live(args.scenario, args.output, codex_bin=args.codex_bin, timeout=args.timeout,
                                  fresh=args.fresh, volatile=args.volatile))
    print(f"recorded {rec.events} events from codex {rec.codex_version} in {rec.seconds:.2f} s -> {rec.path}",
          file=sys.stderr)
    return 0
