"""Stop latency: from a stop signal to the fake's exit, with its final report written.

The fake must end within a second of SIGTERM, SIGINT or SIGHUP whatever it is doing.
Measured per signal, for the cold fake and the warm one (the launcher through this
process's fork server), in three states:

  reading   waiting for a client message (replay timeout a minute away)
  writing   blocked on a write the client never takes (write deadline a minute away)
  sleeping  inside a scripted 60 s delay fault

Each cell: the median and the worst of --runs launches, from os.kill to the exit
status (the report is checked to say `stopped`). Goal: the worst <= 1 s.

    python bench/stop_latency.py [--quick] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, median, table, verdict  # noqa: E402

from fake_server.commands import FakeCodexCommand  # noqa: E402
from fake_server.forkserver import ensure_server, launcher_argv, stop_server  # noqa: E402
from harness.replay.report import ReplayReport  # noqa: E402

GOAL = 1.0
WAIT = 30.0
INIT = b'{"id": 1, "method": "initialize", "params": {}}\n'
STATES = {
    "reading": "steps:\n  - notify: ready\n  - expect: initialize\n    reply: {}\n",
    "writing": "steps:\n  - expect: initialize\n    reply: {}\n" + "".join(
        f"  - notify: n/{n}\n    params: {{text: {'x' * 4000}}}\n" for n in range(100)) + "  - expect: initialized\n",
    "sleeping": "steps:\n  - notify: ready\n  - fault: {delay: 60}\n  - expect: initialize\n",
}
SIGNALS = {"TERM": signal.SIGTERM, "INT": signal.SIGINT, "HUP": signal.SIGHUP}


def _pipe_fill(fd: int) -> int:
    import fcntl
    import termios

    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def one_stop(kind: str, state: str, signum: int, directory: Path) -> float:
    scenario = directory / f"{state}.yaml"
    report = directory / "report-{pid}.json"
    command = FakeCodexCommand(scenario, report=report, timeout=60)
    argv = command.cold_argv() if kind == "cold" else launcher_argv(command.fake_args("app-server"))
    assert argv is not None
    r, w = os.pipe()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=w, stderr=subprocess.DEVNULL, env=command.env())
    os.close(w)
    try:
        if state == "writing":
            proc.stdin.write(INIT)
            proc.stdin.flush()
            deadline, last, steady = time.monotonic() + WAIT, -1, 0
            while steady < 5 and time.monotonic() < deadline:  # until the pipe is full and stays full
                fill = _pipe_fill(r)
                steady, last = (steady + 1 if fill == last and fill else 0), fill
                time.sleep(0.02)
        else:
            line = b""
            while not line.endswith(b"\n"):
                line += os.read(r, 1)  # the `ready` notification: the play has begun
            time.sleep(0.05)  # into the wait (or the sleep) proper
        start = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=WAIT)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)
        proc.stdin.close()
    status = ReplayReport.read(directory / f"report-{proc.pid}.json").status
    assert status == "stopped", status
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two runs per cell")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    runs = 2 if args.quick else args.runs
    server = ensure_server()
    if server is None or not server.wait_ready(WAIT):
        print("no fork server (CODEX_CASSETTE_FORKSERVER=0?): warm cells are skipped", file=sys.stderr)
    rows, worst_all = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for state, text in STATES.items():
            (directory / f"{state}.yaml").write_text(text)
        for kind in ("cold", "warm") if server is not None else ("cold",):
            for state in STATES:
                for name, signum in SIGNALS.items():
                    times = [one_stop(kind, state, signum, directory) for _ in range(runs)]
                    worst_all = max(worst_all, max(times))
                    rows.append([kind, state, f"SIG{name}", fmt(median(times) * 1000), fmt(max(times) * 1000),
                                 verdict(max(times) <= GOAL)])
    stop_server()
    print(f"stop latency, {machine()}, {runs} run(s) per cell")
    print(table(["fake", "state", "signal", "median (ms)", "worst (ms)", f"worst <= {GOAL:g} s"], rows))
    return 0 if worst_all <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
