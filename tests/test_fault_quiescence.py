"""Hung by quiescence: a quiet client tree is called hung without waiting for the deadline,
with the verdicts the deadline alone gives; a client busy or polling is never called hung."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from harness.faults.catalogue import catalogue, sample
from harness.faults.oracle import DEADLINE_RULE, HUNG, QUIET_RULE, SURVIVED
from harness.faults.quiescence import QUIET
from harness.faults.runner import Sweep
from harness.faults.variants import FaultTiming
from harness.format.load import open_cassette

from test_faults_pytest import CASSETTE

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "tests" / "fault_clients"

# After codex answered initialize (or ended), the client does one of: block for good (a
# hang), compute for a while, or poll every second for a while; then it ends.
AFTER = '''
import json, os, subprocess, sys, time

proc = subprocess.Popen([os.environ["CODEX_BIN"], "app-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
proc.stdin.write(b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"inner"}}}\\n')
proc.stdin.flush()
proc.stdout.readline()
mode, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
if mode == "block":
    proc.stdout.read()          # codex never ends its output: this waits for ever
elif mode == "busy":
    while time.monotonic() < end:
        sum(range(1000))
elif mode == "poll":
    while time.monotonic() < end:
        time.sleep(1.0)
proc.kill()
'''


@pytest.mark.parametrize("mode, outcome", [("busy", SURVIVED), ("poll", SURVIVED), ("block", HUNG)])
def test_a_busy_or_polling_client_is_never_called_hung(tmp_path: Path, mode: str, outcome: str) -> None:
    cassette_path = tmp_path / "session.jsonl"
    cassette_path.write_text(CASSETTE)
    client = tmp_path / "client.py"
    client.write_text(AFTER)
    cassette = open_cassette(cassette_path)
    fault = next(f for f in catalogue(cassette, ["duplicate"]) if f.point == 3)  # initialize answered twice
    seconds = 3 * QUIET  # well past the quiet period: only activity keeps it from being called hung
    sweep = Sweep(cassette, [sys.executable, str(client), mode, str(seconds)], tmp_path / "work", FaultTiming(30))
    started = time.monotonic()
    [verdict] = sweep.run([fault])
    assert verdict.outcome == outcome, verdict.message()
    if outcome == HUNG:
        assert verdict.rule == QUIET_RULE and verdict.seconds < 15, verdict
        assert verdict.message().endswith(f"the client hung: quiet for {QUIET:.1f} s after the fault")
    else:
        assert seconds <= verdict.seconds < 30 and time.monotonic() - started < 30


SHIPPED = [
    # optio-codex 0.1.0: codex dying mid-turn leaves it awaiting for ever; before, it raises.
    ("optio/text_turn.jsonl", [str(CLIENTS / "optio_session.py"), "text_turn"], "crash,stall", ()),
    # openai-codex: a request after its reader saw stdout end waits for ever (certain with a pause).
    ("openai_sdk/approval.jsonl", [str(CLIENTS / "sdk_session.py"), "--pause", "0.5"], "crash,hangup",
     ("hangup@3", "hangup@4")),
]


@pytest.mark.parametrize("name, client, kinds, known", SHIPPED, ids=["optio", "openai-codex"])
def test_quiescence_gives_the_deadlines_verdicts_on_the_shipped_cassettes(
        tmp_path: Path, name: str, client: list[str], kinds: str, known: tuple[str, ...]) -> None:
    """A modest sample of each (CI time): a few drawn variants, and the known hangs of docs/faults.md."""
    cassette = open_cassette(ROOT / "cassettes" / name)
    every = catalogue(cassette, kinds.split(","))
    faults = [f for f in every if f.id in known] + sample(every, 6 - len(known), seed="0", salt="quiescence")
    deadline = 12.0  # a client importing the SDK may take 5 s to start on a loaded machine
    runs = {}
    for quiet in (0.0, QUIET):
        sweep = Sweep(cassette, [sys.executable, *client], tmp_path / f"q{quiet:g}", FaultTiming(deadline),
                      cwd=tmp_path, quiet=quiet)
        assert sweep.clean_run().outcome == SURVIVED
        runs[quiet] = sweep.run(faults, jobs=3)
    by_deadline, by_quiet = runs[0.0], runs[QUIET]
    assert [(v.id, v.outcome) for v in by_quiet] == [(v.id, v.outcome) for v in by_deadline]
    hung = [v for v in by_quiet if v.outcome == HUNG]
    assert hung, "the sample should hold a hang, or nothing is compared"
    for fast, slow in zip(by_quiet, by_deadline):
        if fast.outcome == HUNG:
            assert fast.rule == QUIET_RULE and fast.seconds < deadline - 1, fast
            assert slow.rule == DEADLINE_RULE and slow.seconds >= deadline
            assert slow.message().endswith(f"the client hung: deadline {deadline:g} s")
