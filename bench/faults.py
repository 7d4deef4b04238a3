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
(d) hang cost: stall variants a client does not survive, at a 2 s deadline, four at a time,
    the deadline alone deciding (--quiet 0): a hung variant should cost its deadline and a
    little more, never the stall's length;
(e) the quiet period: how long a client's process tree looks quiet (harness.faults.quiescence:
    no CPU, no wake-up, no byte moved) while it computes, polls every 0.5 s or 1 s, or blocks
    for good: the longest unchanged stretch, sampled as the runner samples; the quiet period
    (2 s) must stay well above every one but the blocked client's;
(f) before/after: optio's text turn, crash variants at --deadline 20 -j 2 (issue 25's case),
    the deadline alone deciding (before) and quiescence (after), seconds a variant and
    whether the verdicts are the same.

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
from harness.faults.oracle import Verdict  # noqa: E402
from harness.faults.quiescence import QUIET, SAMPLE, QuietWatch  # noqa: E402
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


def sweep_run(n: int, jobs: int, kinds: list[str], deadline: float = 10.0,
              quiet: float = QUIET) -> tuple[float, list[Verdict]]:
    cassette = open_cassette(TEXT_TURN)
    faults = sample(catalogue(cassette, kinds), n, seed=0, salt="bench")
    with tempfile.TemporaryDirectory() as work:
        sweep = Sweep(cassette, CLIENT, Path(work), FaultTiming(deadline), quiet=quiet)
        sweep.clean_run()  # warms the fork server and the page cache
        t0 = time.perf_counter()
        verdicts = sweep.run(faults, jobs)
        seconds = time.perf_counter() - t0
    return seconds, verdicts


def sweep_rate(n: int, jobs: int, kinds: list[str], deadline: float = 10.0,
               quiet: float = QUIET) -> tuple[float, int, list[str]]:
    seconds, verdicts = sweep_run(n, jobs, kinds, deadline, quiet)
    return seconds, len(verdicts), sorted({v.outcome for v in verdicts})


QUIET_CLIENTS = {
    "computing": "while True: sum(range(1000))",
    "polling every 0.5 s": "import time\nwhile True: time.sleep(0.5)",
    "polling every 1 s": "import time\nwhile True: time.sleep(1.0)",
    "blocked in a read": "import sys; sys.stdin.read()",
}


def quiet_stretches(seconds: float) -> list[list[str]]:
    """The longest stretch each kind of client looks quiet, sampled as the runner samples."""
    rows = []
    for name, code in QUIET_CLIENTS.items():
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        try:
            time.sleep(0.5)  # past its start-up
            watch, longest, t0 = QuietWatch(proc.pid), 0.0, time.monotonic()
            while time.monotonic() - t0 < seconds:
                longest = max(longest, watch.quiet_for(time.monotonic()))
                time.sleep(SAMPLE)
        finally:
            proc.kill()
            proc.wait()
        rows.append([name, f"{seconds:g}", f"{longest:.2f}",
                     "hung" if longest >= QUIET else "never called hung"])
    return rows


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
    seconds, count, outcomes = sweep_rate(4, 4, ["stall"], deadline=2.0, quiet=0.0)
    rows.append(["(d) stall variants, deadline 2 s, -j 4", str(count), f"{seconds:.1f}", f"{count / seconds:.2f}",
                 "", "/".join(outcomes)])
    print("\n(b)-(d) running optio-codex's CodexConversation per variant of optio/text_turn.jsonl\n")
    print(table(["run", "runs", "seconds", "runs/s", "x (c)", "outcomes"], rows))
    print(f"\n(d) a hung variant cost {seconds:.1f} s at a 2 s deadline (its stall lasts {3 * 2.0:g} s)")
    print(f"\n(e) the longest quiet stretch of a client, sampled every {SAMPLE:g} s (quiet period {QUIET:g} s)\n")
    print(table(["client", "watched (s)", "longest quiet (s)", "verdict at the quiet period"],
                quiet_stretches(4.0 if args.quick else 10.0)))
    n = 4 if args.quick else 8
    before_s, before = sweep_run(n, 2, ["crash"], deadline=20.0, quiet=0.0)
    after_s, after = sweep_run(n, 2, ["crash"], deadline=20.0)
    same = [(v.id, v.outcome) for v in before] == [(v.id, v.outcome) for v in after]
    hung = sum(v.outcome == "hung" for v in after)
    print(f"\n(f) optio text turn, {n} crash variants ({hung} hung), --deadline 20 -j 2\n")
    print(table(["rule", "seconds", "seconds a variant", "goal", "verdicts"],
                [["deadline only (--quiet 0)", f"{before_s:.1f}", f"{before_s / n:.2f}", "", ""],
                 [f"quiescence (--quiet {QUIET:g})", f"{after_s:.1f}", f"{after_s / n:.2f}", "<= 3",
                  "the same" if same else "DIFFERENT"]]))


if __name__ == "__main__":
    main()
