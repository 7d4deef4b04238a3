"""The whole loop, timed: record live, replay the shipped suite, sweep faults.

- record-live, per scenario in cassettes/live/: `codex-cassette record-live` against
  the pinned real codex (offline, the loopback mock model), one child per scenario;
- the shipped-cassette suite (tests/test_shipped_cassettes.py) replayed (record mode
  none) and, in the same run, recorded again from the real codex (record mode all):
  replay / record is the ratio that says what a cassette saves a test run;
- the fault sweep per cassette (bench/faults.py), when that script exists.

    python bench/loop.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, fmt, machine, median, table  # noqa: E402

WAIT = 600.0
SUITE = "tests/test_shipped_cassettes.py"


def timed(argv: list[str], cwd: Path = ROOT) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=WAIT, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return took, done.stdout


def record_live(scenarios: list[Path], workdir: Path) -> list[list[str]]:
    rows = []
    for scenario in scenarios:
        out = workdir / f"{scenario.stem}.jsonl"
        took, _ = timed([sys.executable, "-m", "harness", "record-live", str(scenario), "-o", str(out)])
        events = sum(1 for _ in out.open()) - 1
        rows.append([f"record-live {scenario.name}", fmt(took * 1e3), f"{events} events", ""])
    return rows


def suite(runs: int) -> list[list[str]]:
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE]
    replays, records, count = [], [], 0
    for _ in range(runs):
        took, out = timed(base)
        replays.append(took)
        found = re.search(r"(\d+) passed", out)
        count = int(found.group(1)) if found else 0
        with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
            # Recorded into a copy, so the shipped cassettes stay as they are.
            copy = Path(tmp) / "repo"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(copy)],
                           check=True, timeout=WAIT, capture_output=True)
            try:
                took, _ = timed([*base, "--codex-record-mode=all"], cwd=copy)
                records.append(took)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(copy)],
                               timeout=WAIT, capture_output=True)
    replay, record = median(replays), median(records)
    return [[f"shipped suite replayed ({count} tests, {SUITE})", fmt(replay * 1e3),
             f"{fmt(replay / max(count, 1) * 1e3)} ms/test", f"replay / record = {replay / record:.2f}"],
            ["shipped suite recorded again (--codex-record-mode=all)", fmt(record * 1e3),
             f"{fmt(record / max(count, 1) * 1e3)} ms/test", ""]]


def faults() -> list[list[str]]:
    script = ROOT / "bench" / "faults.py"
    if not script.is_file():
        return [["fault sweep per cassette (bench/faults.py)", "pending", "the faults work has not landed", ""]]
    took, out = timed([sys.executable, str(script), "--quick"])
    print(out)
    return [["fault sweep per cassette (bench/faults.py --quick)", fmt(took * 1e3), "see its own table", ""]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="two scenarios, one suite run")
    p.add_argument("--runs", type=int, default=3, help="suite runs (median)")
    args = p.parse_args(argv)
    scenarios = sorted((ROOT / "cassettes" / "live").glob("*.yaml"))
    if args.quick:
        scenarios = scenarios[:2]
    print(f"the whole loop, {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        rows = record_live(scenarios, Path(tmp))
    rows += suite(1 if args.quick else args.runs)
    rows += faults()
    print(table(["step", "wall (ms)", "per unit", "ratio"], rows))
    print(f"  after: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
