"""What an installed codex-cassette costs a pytest run that never uses it.

A throwaway project with one trivial test, run as ``python -m pytest -q`` three ways:
with the plugin (the pytest11 entry point, as any environment with codex-cassette
installed loads it), with an empty plugin instead (a module with nothing in it,
installed beside the project as a distribution with its own pytest11 entry point:
what pytest charges for loading any plugin at all), and with neither
(``-p no:...``). Added = with the plugin minus neither; the empty plugin's figure is
the floor under it, and with the plugin minus the empty one is what codex-cassette's
own code costs.

Two clocks. CPU time (user + system) of the child, runs in rounds whose order
rotates, the median of each round's differences: other load moves it by a few ms.
And, where valgrind is installed, instructions counted by callgrind, one run of each
(the same count every time, whatever else the machine does), turned into ms by the
run's own CPU time per instruction: once as pytest runs, and once with the cyclic
garbage collector off. The second is the clock the verdict uses when present: a
collection runs where allocations cross a threshold, so one more plugin, even an
empty one, can move a whole collection (~4 ms here) into or out of the run, which
says where the threshold fell, not what the plugin costs.
Plus the plugin module's own import time from ``python -X importtime``.
Goal: the plugin adds <= 5 ms.

    python bench/plugin_overhead.py [--quick] [--runs 21]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, fmt, machine, median, table, verdict  # noqa: E402

GOAL_MS = 5.0
WAIT = 120.0
CALLGRIND_WAIT = 600.0
TEST = "def test_one():\n    assert 1 + 1 == 2\n"
EMPTY = "bench_empty_plugin"
CONFIGS = {  # name -> the -p flags that leave just that plugin loaded
    "codex-cassette": ["-p", f"no:{EMPTY}"],
    "empty plugin": ["-p", "no:codex_cassette"],
    "neither": ["-p", "no:codex_cassette", "-p", f"no:{EMPTY}"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_project(root: Path) -> dict[str, str]:
    """The test, and the empty plugin as an installed distribution; the children's environment."""
    (root / "test_one.py").write_text(TEST)
    (root / "pytest.ini").write_text("[pytest]\n")
    site = root / "site"
    info = site / f"{EMPTY}-0.0.dist-info"
    info.mkdir(parents=True)
    (site / f"{EMPTY}.py").write_text('"""An empty pytest plugin: the floor of loading one."""\n')
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {EMPTY}\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(f"[pytest11]\n{EMPTY} = {EMPTY}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["PYTHONHASHSEED"] = "0"  # set iteration orders alike from run to run: the counts repeat
    return env


def argv_for(config: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CONFIGS[config], "test_one.py"]


def run_once(project: Path, env: dict[str, str], config: str) -> float:
    """CPU seconds of one pytest run."""
    c0 = _children_cpu()
    done = subprocess.run(argv_for(config), cwd=project, env=env, capture_output=True, timeout=WAIT)
    if done.returncode != 0:
        raise RuntimeError(f"{config} run failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return _children_cpu() - c0


def instructions(project: Path, env: dict[str, str], config: str, gc_off: bool = False) -> int:
    """Instructions of one pytest run, counted by callgrind; ``gc_off``: with the cyclic garbage
    collector disabled (a collection falls where allocation crosses a threshold, so one more
    object can move millions of instructions of one run without meaning anything)."""
    out = project / f"callgrind.{config.replace(' ', '_')}"
    argv = argv_for(config)
    if gc_off:
        argv = [sys.executable, "-c", "import gc, sys; gc.disable(); import pytest; "
                f"sys.exit(pytest.main({argv[3:]!r}))"]
    done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
                          cwd=project, env=env, capture_output=True, timeout=CALLGRIND_WAIT, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {config} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


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
    p.add_argument("--quick", action="store_true", help="five rounds, no callgrind")
    p.add_argument("--runs", type=int, default=21, help="rounds (one run of each configuration a round)")
    args = p.parse_args(argv)
    runs = 5 if args.quick else args.runs
    print(f"pytest with codex-cassette, with an empty plugin, with neither; one trivial test, {machine()}, "
          f"{runs} rounds", flush=True)
    names = list(CONFIGS)
    # The .pyc files, as pip writes them on install (PYTHONDONTWRITEBYTECODE=1 here would
    # otherwise compile every changed module on each run).
    for package in ("harness", "fake_server"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as tmp:
        project = Path(tmp)
        env = make_project(project)
        for name in names:
            run_once(project, env, name)  # warm the page cache and the .pyc files
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for n in range(runs):
            # Each round runs the three in another order: the later runs of a round find a
            # warmer machine, which must not count for one of them alone.
            for name in names[n % 3:] + names[:n % 3]:
                cpu[name].append(run_once(project, env, name))
        counted = counted_no_gc = None
        if shutil.which("valgrind") and not args.quick:
            counted = {name: instructions(project, env, name) for name in names}
            counted_no_gc = {name: instructions(project, env, name, gc_off=True) for name in names}
    own = median([plugin_import_ms() for _ in range(5)])
    base_ms = median(cpu["neither"]) * 1e3

    def paired(a: str, b: str) -> float:
        return median([x - y for x, y in zip(cpu[a], cpu[b])]) * 1e3

    def by_count(a: str, b: str, counts: dict[str, int] | None) -> float | None:
        return None if counts is None else (counts[a] - counts[b]) / counts["neither"] * base_ms

    rows, added = [], None
    for label, a, b in (("codex-cassette added (judged)", "codex-cassette", "neither"),
                        ("the floor: an empty plugin", "empty plugin", "neither"),
                        ("codex-cassette's own share", "codex-cassette", "empty plugin")):
        counted_ms, no_gc_ms = by_count(a, b, counted), by_count(a, b, counted_no_gc)
        judged = no_gc_ms if no_gc_ms is not None else paired(a, b)
        if added is None:
            added = judged
        rows.append([label, fmt(paired(a, b)), "-" if counted_ms is None else fmt(counted_ms),
                     "-" if no_gc_ms is None else fmt(no_gc_ms),
                     f"<= {GOAL_MS:g}" if a == "codex-cassette" and b == "neither" else "(information)",
                     verdict(judged <= GOAL_MS) if b == "neither" and a == "codex-cassette" else ""])
    print(table(["what", "CPU ms (median of rounds)", "ms by instructions (callgrind)",
                 "the same, gc off", "goal", "verdict"], rows))
    print(f"  a run with neither: {fmt(base_ms)} ms CPU"
          + ("" if counted is None else f", {counted['neither']:,} instructions; with codex-cassette "
             f"{counted['codex-cassette']:,}, with the empty plugin {counted['empty plugin']:,}")
          + ("" if counted_no_gc is None else "; gc off: " + ", ".join(
              f"{name} {counted_no_gc[name]:,}" for name in names)))
    print(f"  the plugin module's own import: {fmt(own)} ms")
    print(f"  after: {machine()}")
    return 0 if added is not None and added <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
