"""The fake as a real process (cold, and warm through the fork-server launcher) against
clients that misbehave at the pipe level: one that stops reading its stdout, one that
never reads its stderr, and every stop signal while the fake is blocked on a write.
Every wait here is bounded; none of them is what the test measures."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import termios
import textwrap
import time
from pathlib import Path

import pytest

from fake_server.commands import FakeCodexCommand
from fake_server.forkserver import ForkServer, launcher_argv
from harness.format.load import open_cassette
from harness.format.wire import encode
from harness.replay.engine import DIVERGED_EXIT
from harness.replay.report import ReplayReport
from harness.safe_text import CAP

WAIT = 10.0
INIT = {"id": 1, "method": "initialize", "params": {}}
# A reply, then ~400 KB of notifications (far more than a pipe holds), then a message
# the client would send if it ever read them.
FLOOD = "steps:\n  - expect: initialize\n    reply: {}\n" + "".join(
    f"  - notify: n/{n}\n    params: {{text: {'x' * 4000}}}\n" for n in range(100)) + "  - expect: initialized\n"




def launch(kind: str, server: ForkServer, command: FakeCodexCommand, stdout: int | None = None,
           stderr: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    argv = command.cold_argv() if kind == "cold" else launcher_argv(command.fake_args("app-server"), server)
    assert argv is not None
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=stdout if stdout is not None else subprocess.PIPE,
                            stderr=stderr, env=command.env())


def pipe_fill(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def wait_until_blocked(fd: int) -> None:
    """Until the fake has filled the pipe and waits on it (the fill stops growing)."""
    deadline = time.monotonic() + WAIT
    last, steady = -1, 0
    while steady < 10:
        assert time.monotonic() < deadline, "the fake never filled the pipe"
        fill = pipe_fill(fd)
        steady = steady + 1 if fill == last and fill > 0 else 0
        last = fill
        time.sleep(0.02)


def read_all(fd: int) -> bytes:
    data = b""
    while select.select([fd], [], [], WAIT)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("no end of stream")


def finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=WAIT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.mark.parametrize("kind", ["cold", "warm"])
def test_a_client_that_stops_reading_is_reported_at_the_first_line_it_never_got(
        kind: str, server: ForkServer, tmp_path: Path) -> None:
    scenario = tmp_path / "flood.yaml"
    scenario.write_text(FLOOD)
    command = FakeCodexCommand(scenario, report=tmp_path / "report-{pid}.json", timeout=0.5)
    r, w = os.pipe()
    proc = launch(kind, server, command, stdout=w)
    os.close(w)
    try:
        proc.stdin.write(encode(INIT))
        proc.stdin.flush()  # and then never read, stdin left open
        assert proc.wait(timeout=WAIT) == DIVERGED_EXIT
        got = read_all(r)  # what the pipe held when the fake gave up
        stderr = proc.stderr.read().decode()
    finally:
        os.close(r)
        finish(proc)
    report = ReplayReport.read(tmp_path / f"report-{proc.pid}.json")
    assert report.status == "diverged" and report.divergence.kind == "stalled", report.summary()
    # The line named is the first notification whose line the client never got whole.
    cassette = open_cassette(scenario)
    delivered = got.count(b"\n") - 1  # the initialize answer, then whole notifications
    first_missing = cassette.events[2 + delivered]
    assert report.divergence.expected_at == cassette.where(first_missing)
    assert f"the client stopped reading at {cassette.where(first_missing)} (server n/{delivered})" in stderr
    assert "(the write deadline, the replay timeout)" in stderr


@pytest.mark.parametrize("kind", ["cold", "warm"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["TERM", "INT", "HUP"])
def test_every_stop_signal_ends_a_fake_blocked_on_a_write(kind: str, signum: int, server: ForkServer,
                                                        tmp_path: Path) -> None:
    scenario = tmp_path / "flood.yaml"
    scenario.write_text(FLOOD)
    # A write deadline of a minute: only the signal can end it within this test's waits.
    command = FakeCodexCommand(scenario, report=tmp_path / "report-{pid}.json", timeout=60)
    r, w = os.pipe()
    proc = launch(kind, server, command, stdout=w)
    os.close(w)
    try:
        proc.stdin.write(encode(INIT))
        proc.stdin.flush()
        wait_until_blocked(r)
        proc.send_signal(signum)
        assert proc.wait(timeout=WAIT) == DIVERGED_EXIT
    finally:
        os.close(r)
        finish(proc)
    report = ReplayReport.read(tmp_path / f"report-{proc.pid}.json")
    assert report.status == "stopped" and report.failed()


def test_sighup_while_reading_leaves_a_stopped_report_not_a_running_one(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("steps:\n  - notify: hello\n  - expect: initialize\n    reply: {}\n")
    command = FakeCodexCommand(scenario, report=tmp_path / "report-{pid}.json", timeout=30)
    proc = subprocess.Popen(command.cold_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=command.env())
    try:
        assert proc.stdout.readline() == b'{"method":"hello"}\n'
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=WAIT) == DIVERGED_EXIT
    finally:
        finish(proc)
    assert ReplayReport.read(tmp_path / f"report-{proc.pid}.json").status == "stopped"


def test_a_client_that_never_reads_stderr_does_not_hold_the_fake(tmp_path: Path) -> None:
    # A diverging value big enough that the capped summary still outgrows a pipe's buffer.
    scenario = tmp_path / "s.yaml"
    scenario.write_text("steps:\n  - expect: initialize\n    params: {a: 1}\n    reply: {}\n")
    command = FakeCodexCommand(scenario, timeout=WAIT)
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen(command.cold_argv(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=w,
                            env=command.env())
    os.close(w)
    try:
        proc.stdin.write(encode({"id": 1, "method": "initialize", "params": {"a": [str(n) for n in range(30000)]}}))
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == DIVERGED_EXIT  # gave up on stderr, did not wait for a reader
    finally:
        os.close(r)
        finish(proc)


def test_a_huge_diverging_value_gives_capped_escaped_output(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(textwrap.dedent("""
        steps:
          - expect: initialize
            params: {a: 1}
            reply: {}
        """).lstrip())
    command = FakeCodexCommand(scenario, report=tmp_path / "report.json", timeout=WAIT)
    huge = {"id": 1, "method": "initialize", "params": {"a": "\x1b]0;retitled\x07" + "y" * 20_000_000}}
    proc = subprocess.run(command.cold_argv(), input=encode(huge), capture_output=True, timeout=WAIT * 6,
                          env=command.env())
    assert proc.returncode == DIVERGED_EXIT
    assert len(proc.stderr) <= 3 * CAP and b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr
    [answer] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert answer["error"]["code"] == -32099 and len(proc.stdout) <= 3 * CAP
    assert (tmp_path / "report.json").stat().st_size <= 4 * CAP
    assert b"... (20,000,025 bytes)" in proc.stderr  # how big it was is said
