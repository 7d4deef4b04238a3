"""Running any client command once per variant, a `codex` shim serving the variant.

Each run gets its own directory: the variant cassette, a bin dir whose `codex` is
the fake serving it (warm, through this process's fork server), the fake's report,
the client's output. The shim is first on PATH and ``CODEX_BIN`` names it, so a
client finds it whichever way it looks for codex.

A hung run costs no more than its deadline, and usually much less: a client whose
process tree has done nothing for ``quiet`` seconds (no CPU, no wake-up, no byte moved:
harness.faults.quiescence) is called hung then. The fake plays at instant pace, so a
quiet tree means the session is stuck, before the fault's line as after it. Either way the
client's whole process tree is stopped (SIGTERM, then SIGKILL), and so is a fake it
launched in a session of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from harness.errors import UsageError
from harness.faults.catalogue import Fault
from harness.faults.oracle import DEADLINE_RULE, QUIET_RULE, Verdict, judge_process
from harness.faults.quiescence import QUIET, SAMPLE, QuietWatch, process_tree
from harness.faults.variants import FaultTiming, write_variant
from harness.format.cassette import Cassette
from harness.format.writer import dump_cassette
from harness.replay.options import ReplayOptions

from fake_server.reports import alive, read_reports, signal_all, stop_running

OUTPUT_TAIL = 64 * 1024   # bytes of a client's stderr kept for the verdict
STOP_GRACE = 1.0          # seconds between SIGTERM and SIGKILL


@dataclass
class Sweep:
    """One client command against a cassette's variants."""

    cassette: Cassette
    command: Sequence[str]
    workdir: Path
    timing: FaultTiming = field(default_factory=FaultTiming)
    keep_dir: Path | None = None      # --write-variants: every variant cassette is written here
    cwd: Path | None = None           # where the client runs (default: this process's)
    quiet: float = QUIET              # seconds of a quiet tree that make a run hung; 0: the deadline only

    def clean_run(self) -> Verdict:
        """The client against the cassette as recorded: it must pass before a fault means anything."""
        return self._run_one(0, None)

    def run(self, faults: Sequence[Fault], jobs: int = 1,
            progress: Callable[[Verdict], None] | None = None) -> list[Verdict]:
        """Each variant's verdict, in catalogue order, ``jobs`` runs at a time."""
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            verdicts = []
            for verdict in pool.map(lambda pair: self._run_one(*pair), enumerate(faults, start=1)):
                if progress is not None:
                    progress(verdict)
                verdicts.append(verdict)
        return verdicts

    def _run_one(self, n: int, fault: Fault | None) -> Verdict:
        from fake_server.forkserver import ensure_server

        ensure_server()  # warm fakes: the client's start-up, not codex's, is what a run costs
        run_dir = self.workdir / f"{n:04d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        if fault is None:
            path = dump_cassette(self.cassette, run_dir / "clean.jsonl")
            kept = None
        else:
            target = self.keep_dir if self.keep_dir is not None else run_dir
            path = write_variant(self.cassette, fault, target, self.timing)
            kept = str(path) if self.keep_dir is not None else None
        bin_dir = _shim(run_dir, path, self.timing)
        deadline = self.timing.deadline_for(fault)
        verdict = self._client(run_dir, bin_dir, fault, deadline)
        verdict.variant_path = kept
        if fault is None or fault.kind == "unknown-request":
            # The clean run must follow the cassette; an unknown request must get -32601.
            # Elsewhere a fault makes the client stray from the recording by design.
            verdict.server = _server_note(run_dir)
        return verdict

    def _client(self, run_dir: Path, bin_dir: Path, fault: Fault | None, deadline: float) -> Verdict:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
        env["CODEX_BIN"] = str(bin_dir / "codex")
        err_path = run_dir / "client.stderr"
        with open(run_dir / "client.stdout", "wb") as out, open(err_path, "wb") as err:
            start = time.monotonic()
            try:
                proc = subprocess.Popen(list(self.command), cwd=self.cwd, env=env,
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            except OSError as exc:
                raise UsageError(f"cannot run the client command {self.command[0]!r}: "
                                 f"{exc.strerror or exc}") from None
            rule = self._watch(proc, start, deadline, self._quiet_for(fault))
            seconds = time.monotonic() - start
            if rule is not None:
                _stop_tree(proc)
        stop_running(run_dir, STOP_GRACE, kill=True)  # a fake the client left (it outwaits the deadline)
        return judge_process(fault, returncode=proc.returncode, stderr=_tail(err_path), seconds=seconds,
                             deadline=deadline, killed=rule is not None, rule=rule or "",
                             quiet=self._quiet_for(fault))

    def _quiet_for(self, fault: Fault | None) -> float:
        """The quiet period that decides this run, 0 for none. A delay fault's server sleeps and
        then goes on, and the client must take the late answer: only its deadline decides. The
        clean run must not hang at all: a slow client is not to be called hung there either."""
        if fault is None or fault.kind == "delay":
            return 0.0
        return self.quiet

    @staticmethod
    def _watch(proc: subprocess.Popen, start: float, deadline: float, quiet: float) -> str | None:
        """Wait for the client to end: None if it did, else the rule that says it hung."""
        watch = QuietWatch(proc.pid)
        while True:
            left = start + deadline - time.monotonic()
            if left <= 0:
                return DEADLINE_RULE
            try:
                proc.wait(timeout=min(left, SAMPLE) if quiet > 0 else left)
                return None
            except subprocess.TimeoutExpired:
                pass
            if quiet > 0 and watch.quiet_for(time.monotonic()) >= quiet:
                return QUIET_RULE


def _shim(run_dir: Path, cassette_path: Path, timing: FaultTiming) -> Path:
    from fake_server.commands import FakeCodexCommand, write_bin_dir

    # The fake outwaits the deadline: a hang-up or a stall must not end by itself first.
    options = ReplayOptions(timeout=timing.fake_timeout, linger=timing.fake_timeout, strict=False)
    command = FakeCodexCommand.from_options(cassette_path, options, run_dir / "report-{pid}.json")
    return write_bin_dir(run_dir / "bin", command)


def _tail(path: Path) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - OUTPUT_TAIL))
        return fh.read().decode("utf-8", "replace")


def _stop_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the client and everything it started (a fake relays it and writes its report),
    then SIGKILL whatever is left."""
    tree = process_tree(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    signal_all(tree, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    signal_all([p for p in tree if alive(p)], signal.SIGKILL)
    proc.wait()


def _server_note(run_dir: Path) -> str:
    """What the fake saw the client do wrong, when it diverged."""
    for report in read_reports(run_dir, torn_ok=True):
        if report.status == "diverged" and report.divergence is not None:
            return report.divergence.message[:300]
    return ""
