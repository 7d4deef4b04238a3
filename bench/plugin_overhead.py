"""What an installed codex-cassette costs a pytest run that never uses it.

A throwaway project with one trivial test, run as ``python -m pytest -q`` with the
plugin (the pytest11 entry point, as any environment with codex-cassette installed
loads it) and with ``-p no:codex_cassette``; runs interleaved, medians compared,
plus the plugin's own import time from ``python -X importtime``. The verdict uses
the child's CPU time (user + system), which other load on the machine does not
change; wall time is printed beside it.
Goal: the plugin adds <= 5 ms.

    python bench/plugin_overhead.py [--quick] [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, median, table, verdict  # noqa: E402

GOAL_MS = 5.0
WAIT = 120.0
TEST = "def test_one():\n    assert 1 + 1 == 2\n"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(project: Path, extra: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one pytest run."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "test_one.py"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    t0, c0 = time.perf_counter(), _children_cpu()
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, timeout=WAIT)
    took, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return took, cpu


def plugin_import_ms() -> float:
    """The plugin module's own cumulative import time, pytest already imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import pytest, _pytest.config; import harness.pytest.plugin"],
                          capture_output=True, timeout=WAIT, text=True)
    for line in done.stderr.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[2].strip() == "harness.pytest.plugin":
            return int(fields[1]) / 1e3
    raise RuntimeError(f"no import time for harness.pytest.plugin in:\n{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="five runs each")
    p.add_argument("--runs", type=int, default=21)
    args = p.parse_args(argv)
    runs = 5 if args.quick else args.runs
    print(f"pytest with and without the plugin, one trivial test, {machine()}, {runs} runs each (median)",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as tmp:
        project = Path(tmp)
        (project / "test_one.py").write_text(TEST)
        (project / "pytest.ini").write_text("[pytest]\n")
        run_once(project, [])  # warm the page cache and the .pyc files
        with_plugin: list[tuple[float, float]] = []
        without: list[tuple[float, float]] = []
        for _ in range(runs):
            with_plugin.append(run_once(project, []))
            without.append(run_once(project, ["-p", "no:codex_cassette"]))
    own = median([plugin_import_ms() for _ in range(5)])
    rows = []
    for k, clock in ((1, "cpu"), (0, "wall")):
        on, off = median([r[k] for r in with_plugin]) * 1e3, median([r[k] for r in without]) * 1e3
        rows.append([clock, fmt(on), fmt(off), fmt(on - off), f"<= {GOAL_MS:g}" if k else "(information)",
                     verdict(on - off <= GOAL_MS) if k else ""])
    added = (median([r[1] for r in with_plugin]) - median([r[1] for r in without])) * 1e3
    print(table(["clock", "with plugin (ms)", "-p no:codex_cassette (ms)", "added (ms)", "goal", "verdict"], rows))
    print(f"  added / goal = {added / GOAL_MS:.2f}; the plugin module's own import: {fmt(own)} ms")
    print(f"  after: {machine()}")
    return 0 if added <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
