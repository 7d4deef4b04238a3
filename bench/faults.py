"""Fault sweep cost: variants per second, derived and run, on a shipped cassette.

Four measures, side by side in one run:
(a) derive: the catalogue and every variant cassette of each shipped cassette, built and
    written (what a sweep does before any client runs), variants per second;
(b) run: optio-codex's CodexConversation (tests/fault_clients/optio_session.py) once per
    variant of cassettes/optio/text_turn.jsonl it survives quickly (garbage, unknown
    notification, duplicate), at -j 1 and -j 2, variants per second;
(c) baseline: the same client against the clean cassette, as many times, one at a time,
    launched by plain subprocess.run with one fixed `codex` shim: what a run costs without
    the sweep (no variant to build, no shim to write, no process tree to watch), so
    (b) at -j 1 against (c) is the sweep's own cost per run;
(d) hang cost: stall variants a client does not survive, at a 2 s deadline, four at a time:
    a hung variant should cost its deadline and a little more, never the stall's length.

    python bench/faults.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, table  # noqa: E402

from harness.faults.catalogue import catalogue, sample  # noqa: E402
from harness.faults.runner import Sweep  # noqa: E402
from harness.faults.variants import FaultTiming, write_variant  # noqa: E402
from harness.format.load import open_cassette  # noqa: E402

CLIENT = [sys.executable, str(ROOT / "tests" / "fault_clients" / "optio_session.py"), "text_turn"]
TEXT_TURN = ROOT / "cassettes" / "optio" / "text_turn.jsonl"
QUICK_KINDS = ["garbage", "unknown-notification", "duplicate"]


def derive() -> list[list[str]]:
    rows = []
    for path in sorted((ROOT / "cassettes").glob("*/*.jsonl")):
        cassette = open_cassette(path)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            faults = catalogue(cassette)
            for fault in faults:
                write_variant(cassette, fault, out)
            seconds = time.perf_counter() - t0
        rows.append([f"{path.parent.name}/{path.name}", str(len(cassette.events)), str(len(faults)),
                     f"{seconds * 1000:.0f}", f"{len(faults) / seconds:,.0f}"])
    return rows


def sweep_rate(n: int, jobs: int, kinds: list[str], deadline: float = 10.0) -> tuple[float, int, list[str]]:
    cassette = open_cassette(TEXT_TURN)
    faults = sample(catalogue(cassette, kinds), n, seed=0, salt="bench")
    with tempfile.TemporaryDirectory() as work:
        sweep = Sweep(cassette, CLIENT, Path(work), FaultTiming(deadline))
        sweep.clean_run()  # warms the fork server and the page cache
        t0 = time.perf_counter()
        verdicts = sweep.run(faults, jobs)
        seconds = time.perf_counter() - t0
    return seconds, len(verdicts), sorted({v.outcome for v in verdicts})


def baseline(n: int) -> float:
    from fake_server.commands import FakeCodexCommand, write_bin_dir
    from fake_server.forkserver import ensure_server
    from harness.replay.options import ReplayOptions

    ensure_server()
    with tempfile.TemporaryDirectory() as work:
        command = FakeCodexCommand.from_options(TEXT_TURN, ReplayOptions(), Path(work) / "report-{pid}.json")
        bin_dir = write_bin_dir(Path(work) / "bin", command)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CODEX_BIN": str(bin_dir / "codex")}
        subprocess.run(CLIENT, env=env, check=True, capture_output=True, timeout=60)  # warm-up
        t0 = time.perf_counter()
        for _ in range(n):
            subprocess.run(CLIENT, env=env, check=True, capture_output=True, timeout=60)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the script)")
    args = parser.parse_args()
    n = 6 if args.quick else 24
    print(f"# bench/faults.py on {machine()}\n")
    print("(a) deriving variants (catalogue + build + write every variant)\n")
    print(table(["cassette", "events", "variants", "ms", "variants/s"], derive()))
    rows = []
    base = baseline(n)
    rows.append(["(c) clean cassette, plain subprocess.run, one at a time", str(n), f"{base:.1f}", f"{n / base:.2f}",
                 "1.00", ""])
    for jobs in (1, 2):
        seconds, count, outcomes = sweep_rate(n, jobs, QUICK_KINDS)
        rows.append([f"(b) variants ({', '.join(QUICK_KINDS)}), -j {jobs}", str(count), f"{seconds:.1f}",
                     f"{count / seconds:.2f}", f"{(count / seconds) / (n / base):.2f}", "/".join(outcomes)])
    seconds, count, outcomes = sweep_rate(4, 4, ["stall"], deadline=2.0)
    rows.append(["(d) stall variants, deadline 2 s, -j 4", str(count), f"{seconds:.1f}", f"{count / seconds:.2f}",
                 "", "/".join(outcomes)])
    print("\n(b)-(d) running optio-codex's CodexConversation per variant of optio/text_turn.jsonl\n")
    print(table(["run", "runs", "seconds", "runs/s", "x (c)", "outcomes"], rows))
    print(f"\n(d) a hung variant cost {seconds:.1f} s at a 2 s deadline (its stall lasts {3 * 2.0:g} s)")


if __name__ == "__main__":
    main()
