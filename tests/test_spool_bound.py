"""The proxy's spool is bounded whatever the burst (issue 21, point 5).

A server's stderr that nobody records is not spooled at all; what is recorded waits
for the recorder once the spool holds CAP bytes (the wire slows, nothing is dropped).
Measured on the real proxy's process tree: the blocks its memfd spool holds, sampled
through /proc while a real server writes a burst bigger than the bound."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.format.cassette import load_cassette

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
MIB = 1 << 20
BOUND = 64 * MIB  # the goal for the spool's peak
WAIT = 300.0
JSON_LINE = b'{"method":"item/agentMessage/delta","params":{"delta":"' + b"word " * 200 + b'"}}\n'


def burst(stream: str, mib: int, line: bytes) -> list[str]:
    """A server writing ``mib`` MiB of ``line`` (repeated to a line of at most 1 MiB) to ``stream``."""
    head, times = (line[:-1], 1) if len(line) < 1 << 12 else (line[:1], len(line) - 1)
    return [PY, "-c", f"import sys\nline={head!r}*{times}+b'\\n'\nout=sys.{stream}.buffer\n"
                      f"for _ in range({mib * MIB // len(line)}): out.write(line)\nout.flush()"]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def spool_bytes(root: int) -> int:
    """The memory the spools of ``root``'s process tree hold (allocated blocks, each memfd once)."""
    held: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(_children(pid))
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if "codex-cassette spool" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                    held[st.st_ino] = st.st_blocks * 512
            except OSError:
                continue
    return sum(held.values())


def record_peak(tmp_path: Path, server: list[str], *flags: str) -> tuple[int, int]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([PY, "-m", "harness", "record", "-o", "c.jsonl", *flags, "--", *server],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tmp_path, env=env)
    peak = 0
    deadline = time.monotonic() + WAIT
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            peak = max(peak, spool_bytes(proc.pid))
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    return peak, proc.returncode


def test_stderr_nobody_records_is_not_spooled(tmp_path: Path) -> None:
    peak, code = record_peak(tmp_path, burst("stderr", 256, b"x" * (MIB - 1) + b"\n"))
    assert code == 0
    assert peak < 4 * MIB, f"{peak / MIB:.1f} MiB spooled for stderr nobody records"
    assert load_cassette(tmp_path / "c.jsonl").complete


def test_a_stdout_burst_waits_for_the_recorder_and_loses_nothing(tmp_path: Path) -> None:
    mib = 96
    peak, code = record_peak(tmp_path, burst("stdout", mib, JSON_LINE))
    assert code == 0
    assert peak <= BOUND, f"the spool peaked at {peak / MIB:.1f} MiB"
    cassette = load_cassette(tmp_path / "c.jsonl")
    assert cassette.complete
    assert sum(e.msg is not None for e in cassette.events) == mib * MIB // len(JSON_LINE)


def test_a_recorded_stderr_burst_is_bounded_and_copied_whole(tmp_path: Path) -> None:
    mib = 80
    line = b"a line of the server's log " * 40 + b"\n"
    peak, code = record_peak(tmp_path, burst("stderr", mib, line), "--stderr-file", "err.txt")
    assert code == 0
    assert peak <= BOUND, f"the spool peaked at {peak / MIB:.1f} MiB"
    assert (tmp_path / "err.txt").stat().st_size == mib * MIB // len(line) * len(line)
    assert load_cassette(tmp_path / "c.jsonl").complete


def test_a_wire_waiting_for_a_killed_recorder_goes_on(tmp_path: Path) -> None:
    """The wait is for a living recorder only: SIGKILL it while the spool is full, and every
    byte still reaches the client; the proxy says what was kept."""
    mib = 160
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([PY, "-m", "harness", "record", "-o", "c.jsonl", "--", *burst("stdout", mib, JSON_LINE)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, env=env)
    received: list[int] = []
    reader = threading.Thread(target=lambda: received.append(len(proc.stdout.read())), daemon=True)  # type: ignore[union-attr]
    reader.start()  # a client that reads: the wire moves, the spool fills
    try:
        deadline = time.monotonic() + WAIT
        while spool_bytes(proc.pid) < 30 * MIB and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the burst ended before the spool filled"
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            own = f.read()
        recorders = []
        for pid in _children(proc.pid):  # the recorder is a fork of the proxy: the same command line
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == own:
                    recorders.append(pid)
        assert len(recorders) == 1
        os.kill(recorders[0], 9)
        reader.join(WAIT)
        err = proc.stderr.read()  # type: ignore[union-attr]
        proc.wait(WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert received == [mib * MIB // len(JSON_LINE) * len(JSON_LINE)]
    assert b"the recorder process ended without an answer" in err and b"Traceback" not in err
