"""Replay throughput: one turn of N streamed deltas into optio's CodexConversation.

Three ways of feeding the same driver the same server lines, measured side by
side (interleaved, median of several runs):

  (a) inprocess   fake_server.InProcessCodex: the replay engine in the test's event loop,
                  the cassette parsed before the turn (what the engine itself costs)
  (a') indexed    the same with the cassette indexed, as a test loads one of 4 MiB or
                  more (harness.format.event_log): every line is decoded during the
                  turn, so the turn carries the load (information: bench/scale.py
                  judges loading)
  (b) subprocess  `python -m fake_server` as a real child process, over pipes
  (c) raw         the floor: the same in-memory channel the in-process fake uses
                  (harness.replay.aio_channels.memory_pair), fed the pre-encoded
                  server lines block by block as the driver's lines arrive, with
                  the engine's drain cadence: no parsing, no matching, no engine

Timed from `send()` to `on_message` (the turn's answer); bootstrap is not timed.
Goal: (a) >= 0.8 x (c), (b) >= 0.5 x (c).

Both wall-clock and this process's CPU time are measured. (a) and (c) run on
one thread, so their CPU time is their whole cost and does not move when other
processes share the machine: the verdict for (a) uses CPU time. (b) runs in two
processes in parallel, so its verdict uses wall-clock time.

    python bench/replay_throughput.py [--quick] [--sizes 1000,10000,100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (CWD, PROMPT, ROOT, fmt, machine, median, server_blocks, table,  # noqa: E402
                     turn_cassette, verdict)

from fake_server import FakeCodexCommand, InProcessCodex  # noqa: E402
from harness.replay.aio_channels import memory_pair  # noqa: E402
from harness.replay.engine import DRAIN_EVERY  # noqa: E402
from harness.replay.options import ReplayOptions  # noqa: E402
from harness.format.cassette import load_cassette  # noqa: E402
from harness.format.writer import dump_cassette  # noqa: E402

WAIT = 60.0          # the longest one turn may take before the run counts as failed
GOALS = {"inprocess": 0.8, "subprocess": 0.5}


class RawFeeder:
    """The baseline: what a driver holds of an in-process fake (``stdin``, ``stdout``),
    with a task on the channel's other end that reads one client line per block and
    writes the block's pre-encoded lines. Nothing is parsed or matched."""

    def __init__(self, blocks: list[list[bytes]]) -> None:
        channel, self.stdin, self.stdout = memory_pair()
        self._task = asyncio.get_running_loop().create_task(self._feed(channel, blocks))

    @staticmethod
    async def _feed(channel: Any, blocks: list[list[bytes]]) -> None:
        for k, block in enumerate(blocks):
            if k and await channel.read_line(WAIT) is None:
                break
            for pos, data in enumerate(block, 1):
                channel.write(data)
                if pos % DRAIN_EVERY == 0:
                    await channel.drain()
            await channel.drain()
        while await channel.read_line(WAIT) is not None:  # until the driver hangs up
            pass
        await channel.close()

    async def wait(self) -> None:
        await asyncio.wait_for(self._task, WAIT)


async def _one_turn(handle: Any) -> tuple[float, float]:
    """Bootstrap optio's driver on `handle`, then time one turn: (wall, cpu) seconds."""
    from optio_codex.conversation import CodexConversation

    conv = CodexConversation(cwd=CWD)
    done = asyncio.get_running_loop().create_future()
    conv.on_message(lambda text: done.done() or done.set_result(text))
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    try:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
        gc.collect()  # each mode starts its turn with the same heap: no collection owed by the last run
        t0, c0 = time.perf_counter(), time.process_time()
        await conv.send(PROMPT)
        await asyncio.wait_for(done, WAIT)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        handle.stdin.close()
        try:
            await asyncio.wait_for(reader, WAIT)
        except (asyncio.TimeoutError, Exception):
            reader.cancel()


async def run_inprocess(cassette: Any, path: Path, lazy_from: int = 1 << 62) -> tuple[float, float]:
    # From the file, as a test would: loading keeps each message's bytes to send as they are.
    fake = InProcessCodex(load_cassette(path, lazy_from=lazy_from), ReplayOptions(timeout=WAIT, linger=WAIT))
    try:
        return await _one_turn(fake)
    finally:
        try:
            await fake.wait(WAIT)
        except asyncio.TimeoutError:
            fake.kill()
        if fake.report.failed():
            raise RuntimeError("in-process replay failed:\n" + fake.report.summary())


async def run_subprocess(cassette: Any, path: Path) -> tuple[float, float]:
    command = FakeCodexCommand(path, timeout=WAIT)
    err = open(path.with_suffix(".stderr"), "wb")
    proc = await asyncio.create_subprocess_exec(
        *command.argv(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=err, env=command.env(), limit=1 << 24)
    try:
        return await _one_turn(proc)
    finally:
        try:
            code = await asyncio.wait_for(proc.wait(), WAIT)
        except asyncio.TimeoutError:
            proc.kill()
            code = await proc.wait()
        err.close()
        if code != 0:
            raise RuntimeError(f"fake server exited with {code}: {path.with_suffix('.stderr').read_text()[-2000:]}")


async def run_raw(cassette: Any, path: Path) -> tuple[float, float]:
    feeder = RawFeeder(server_blocks(cassette))
    try:
        return await _one_turn(feeder)
    finally:
        await feeder.wait()


async def run_indexed(cassette: Any, path: Path) -> tuple[float, float]:
    return await run_inprocess(cassette, path, lazy_from=0)


MODES: dict[str, Callable[[Any, Path], Any]] = {
    "raw": run_raw, "inprocess": run_inprocess, "indexed": run_indexed, "subprocess": run_subprocess}


async def measure(sizes: list[int], runs: int, workdir: Path) -> list[dict[str, Any]]:
    results = []
    for n in sizes:
        cassette = turn_cassette(n)
        path = dump_cassette(cassette, workdir / f"turn-{n}.jsonl")
        messages = len(server_blocks(cassette)[-1])  # the turn's server messages
        walls: dict[str, list[float]] = {m: [] for m in MODES}
        cpus: dict[str, list[float]] = {m: [] for m in MODES}
        # A short turn takes milliseconds: repeat it more so the median settles.
        for _ in range(max(runs, min(15, 30_000 // n)) if runs > 1 else 1):
            for mode, fn in MODES.items():   # interleaved: drift hits every mode alike
                wall, cpu = await fn(cassette, path)
                walls[mode].append(wall)
                cpus[mode].append(cpu)
        rates = {m: messages / median(ts) for m, ts in walls.items()}
        cpu_rates = {m: messages / median(ts) for m, ts in cpus.items()}
        results.append({"n": n, "messages": messages, "rates": rates, "cpu_rates": cpu_rates})
        print(f"  N={n}: " + ", ".join(f"{m} {fmt(r)} msg/s (cpu {fmt(cpu_rates[m])})"
                                      for m, r in rates.items()), flush=True)
    return results


# Which clock judges each mode (see the module docstring).
JUDGED_BY = {"inprocess": "cpu_rates", "indexed": "cpu_rates", "subprocess": "rates"}


def ratio(r: dict[str, Any], mode: str, clock: str | None = None) -> float:
    clock = clock or JUDGED_BY[mode]
    return r[clock][mode] / r[clock]["raw"]


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for mode in ("inprocess", "indexed", "subprocess"):
            judged = ratio(r, mode)
            goal = f">= {GOALS[mode]}" if mode in GOALS else "(information)"
            rows.append([f"{r['n']:,}", mode, fmt(r["rates"][mode]), fmt(r["rates"]["raw"]),
                         f"{ratio(r, mode, 'rates'):.2f}", f"{ratio(r, mode, 'cpu_rates'):.2f}",
                         f"{judged:.2f} ({'cpu' if JUDGED_BY[mode] == 'cpu_rates' else 'wall'})",
                         goal, verdict(judged >= GOALS[mode]) if mode in GOALS else ""])
    return table(["N deltas", "mode", "wall msg/s", "raw wall msg/s", "wall ratio", "cpu ratio",
                  "judged ratio", "goal", "verdict"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--runs", type=int, default=3, help="runs per cell, at least (short turns get more)")
    args = p.parse_args(argv)
    sizes = [1000, 5000] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = 1 if args.quick else args.runs
    logging.getLogger("optio_codex").setLevel(logging.ERROR)  # "no account" warning per bootstrap
    os.chdir(ROOT)
    print(f"replay throughput, {machine()}, >= {runs} run(s) per cell (median)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        results = asyncio.run(measure(sizes, runs, Path(tmp)))
    print(render(results))
    ok = all(ratio(r, m) >= GOALS[m] for r in results for m in GOALS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
