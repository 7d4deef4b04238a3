"""The warm fake: launcher + fork server, against the cold fake, over real processes and pipes."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_server import FakeCodexCommand, write_bin_dir
from fake_server.forkserver import ForkServer, ensure_server, launcher_argv, start_server
from fake_server.reports import is_fake
from harness.replay.engine import DIVERGED_EXIT
from harness.replay.report import ReplayReport
from harness.format.wire import encode

WAIT = 10.0

SIMPLE = (Path(__file__).parent / "data" / "simple_session.yaml").read_text()
SESSION = [
    {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "x"}}},
    {"method": "initialized"},
    {"id": 2, "method": "thread/start", "params": {"cwd": "/tmp/live"}},
]
# Says something, then waits for an initialize that never comes (until its 30 s timeout).
WAITING = """
    steps:
      - notify: hello
      - expect: initialize
        reply: {}
    """




def scenario(tmp_path: Path, text: str = SIMPLE, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def warm(server: ForkServer, command: FakeCodexCommand, *codex_args: str) -> list[str]:
    argv = launcher_argv(command.fake_args(*codex_args), server)
    assert argv is not None
    return argv


def run(argv: list[str], messages: list[dict] = SESSION, **kwargs) -> subprocess.CompletedProcess[bytes]:
    data = b"".join(encode(m) for m in messages)
    return subprocess.run(argv, input=data, capture_output=True, timeout=WAIT, **kwargs)


def start(argv: list[str], **kwargs) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=WAIT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def read_within(stream, seconds: float = WAIT) -> bytes:
    """What comes on a pipe until its end, or fail after `seconds`."""
    data = b""
    deadline = time.monotonic() + seconds
    fd = stream.fileno()
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no end of stream within {seconds} s (got {data!r})"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk


def child_of(proc: subprocess.Popen[bytes]) -> int:
    """The fork server's child that plays for this launcher: the other process holding our
    stdout pipe (on some fd: the fake writes through a duplicate of its fd 1)."""
    ours = os.readlink(f"/proc/self/fd/{proc.stdout.fileno()}")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in (proc.pid, os.getpid()):
                try:
                    fds = os.listdir(f"/proc/{entry}/fd")
                    if any(os.readlink(f"/proc/{entry}/fd/{fd}") == ours for fd in fds):
                        return int(entry)
                except OSError:
                    continue
        time.sleep(0.02)
    raise AssertionError("no process holds the launcher's stdout")


def gone_within(pid: int, seconds: float = WAIT) -> bool:
    """Whether pid ended (or is a zombie nobody reaped yet) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_warm_session_gives_the_same_bytes_and_report_as_the_cold_one(server: ForkServer, tmp_path: Path) -> None:
    path = scenario(tmp_path)
    results = {}
    for kind in ("cold", "warm"):
        command = FakeCodexCommand(path, report=tmp_path / kind / "report-{pid}.json", timeout=WAIT)
        (tmp_path / kind).mkdir()
        argv = command.cold_argv() if kind == "cold" else warm(server, command)
        proc = run(argv, env=command.env())
        assert proc.returncode == 0, proc.stderr
        [report] = [ReplayReport.read(p) for p in (tmp_path / kind).glob("report-*.json")]
        results[kind] = (proc.stdout, proc.stderr, report.status, report.played, report.total)
    assert results["warm"] == results["cold"]
    assert results["warm"][2] == "ok"
    assert json.loads(results["warm"][0].splitlines()[1])["result"]["thread"]["cwd"] == "/tmp/live"


def test_exit_codes_pass_through(server: ForkServer, tmp_path: Path) -> None:
    exits = scenario(tmp_path, """
        steps:
          - expect: initialize
            reply: {}
          - exit: 7
        """, "exit.yaml")
    proc = run(warm(server, FakeCodexCommand(exits, timeout=WAIT)), SESSION[:1])
    assert proc.returncode == 7, proc.stderr
    wrong = [{"id": 1, "method": "thread/start", "params": {}}]
    proc = run(warm(server, FakeCodexCommand(scenario(tmp_path), timeout=WAIT)), wrong)
    assert proc.returncode == DIVERGED_EXIT
    assert b"diverged" in proc.stderr.lower()
    usage = run(warm(server, FakeCodexCommand(exits), "app-server", "--listen", "ws://x"), [])
    assert usage.returncode == 2 and b"ws:// takes an IP address and a port" in usage.stderr
    version = run(warm(server, FakeCodexCommand(scenario(tmp_path)), "--version"), [])
    assert (version.returncode, version.stdout) == (0, b"codex-cli 0.163.0\n")


def test_every_launch_is_played_exactly_once(server: ForkServer, tmp_path: Path) -> None:
    # Launches back to back, each taking the spare the one before left: a request handed to
    # a spare must never be played a second time by a freshly forked child as well (which
    # showed as a doubled --version line, or a session that saw its input eaten).
    path = scenario(tmp_path)
    wrong = [{"id": 1, "method": "thread/start", "params": {}}]
    for n in range(25):
        version = run(warm(server, FakeCodexCommand(path), "--version"), [])
        assert (n, version.returncode, version.stdout) == (n, 0, b"codex-cli 0.163.0\n")
        diverged = run(warm(server, FakeCodexCommand(path, timeout=WAIT)), wrong)
        assert (n, diverged.returncode) == (n, DIVERGED_EXIT) and b"diverged" in diverged.stderr.lower()


def test_the_report_carries_the_launchers_pid(server: ForkServer, tmp_path: Path) -> None:
    command = FakeCodexCommand(scenario(tmp_path, WAITING), report=tmp_path / "report-{pid}.json", timeout=30)
    proc = start(warm(server, command))
    try:
        assert proc.stdout.readline() == b'{"method":"hello"}\n'
        running = ReplayReport.read(tmp_path / f"report-{proc.pid}.json")
        assert running.status == "running" and running.pid == proc.pid
        assert is_fake(proc.pid)  # so FakeCodex's teardown may stop it
        assert child_of(proc) != proc.pid
    finally:
        finish(proc)


def test_sigterm_to_the_launcher_stops_the_fake_as_the_cold_one_stops(server: ForkServer,
                                                                       tmp_path: Path) -> None:
    path = scenario(tmp_path, WAITING)
    outcomes = {}
    for kind in ("cold", "warm"):
        (tmp_path / kind).mkdir()
        command = FakeCodexCommand(path, report=tmp_path / kind / "report-{pid}.json", timeout=30)
        proc = start(command.cold_argv() if kind == "cold" else warm(server, command), env=command.env())
        try:
            assert proc.stdout.readline() == b'{"method":"hello"}\n'  # the engine is running
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=WAIT)
            stderr = read_within(proc.stderr)
        finally:
            finish(proc)
        report = ReplayReport.read(tmp_path / kind / f"report-{proc.pid}.json")
        outcomes[kind] = (code, report.status, report.played, "1 of 3 events played" in stderr.decode())
    assert outcomes["warm"] == outcomes["cold"] == (DIVERGED_EXIT, "stopped", 1, True)


def test_a_child_killed_by_a_signal_kills_its_launcher_by_the_same(server: ForkServer, tmp_path: Path) -> None:
    proc = start(warm(server, FakeCodexCommand(scenario(tmp_path, WAITING), timeout=30)))
    try:
        assert proc.stdout.readline() == b'{"method":"hello"}\n'
        os.kill(child_of(proc), signal.SIGKILL)
        assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        finish(proc)


def test_sigkill_of_the_launcher_ends_its_child(server: ForkServer, tmp_path: Path) -> None:
    proc = start(warm(server, FakeCodexCommand(scenario(tmp_path, WAITING), timeout=30)))
    try:
        assert proc.stdout.readline() == b'{"method":"hello"}\n'
        child = child_of(proc)
        proc.kill()
        proc.wait(timeout=WAIT)
        assert gone_within(child)
        assert read_within(proc.stdout) == b""  # nobody holds the client's pipe any more
    finally:
        finish(proc)


def test_close_stdout_gives_the_client_end_of_stream_while_the_fake_lives(server: ForkServer,
                                                                         tmp_path: Path) -> None:
    path = Path(__file__).parent / "data" / "close_stdout.yaml"
    proc = start(warm(server, FakeCodexCommand(path, timeout=WAIT)))
    try:
        proc.stdin.write(encode(SESSION[0]))
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"id": 1, "result": {}}
        assert read_within(proc.stdout) == b""  # stdout closed ...
        assert proc.poll() is None               # ... while the fake still waits for us
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == 0
    finally:
        finish(proc)


def test_cwd_and_environment_reach_the_child(server: ForkServer, tmp_path: Path) -> None:
    path = scenario(tmp_path, """
        steps:
          - notify: where
            params: {cwd: "{{cwd}}"}
          - expect: initialize
            reply: {}
        """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = launcher_argv(["app-server"], server)  # the cassette comes from the environment
    assert argv is not None
    env = {**os.environ, "CODEX_CASSETTE": str(path), "CODEX_CASSETTE_REPORT": str(tmp_path / "r.json")}
    proc = run(argv, SESSION[:1], cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0]) == {"method": "where", "params": {"cwd": str(elsewhere)}}
    assert ReplayReport.read(tmp_path / "r.json").status == "ok"


def test_without_a_server_the_launcher_runs_the_cold_fake(tmp_path: Path) -> None:
    gone = start_server()
    gone.stop()
    command = FakeCodexCommand(scenario(tmp_path), report=tmp_path / "report-{pid}.json", timeout=WAIT)
    argv = launcher_argv(command.fake_args(), gone)
    assert argv is not None and not Path(gone.socket_path).exists()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(b"".join(encode(m) for m in SESSION), timeout=WAIT)
    assert proc.returncode == 0, err
    assert len(out.splitlines()) == 2
    assert ReplayReport.read(tmp_path / f"report-{proc.pid}.json").status == "ok"  # the exec kept the pid


def test_the_server_exits_when_its_parent_dies(tmp_path: Path) -> None:
    code = ("import os, sys; from fake_server.forkserver import start_server; s = start_server(); "
            "print(s.process.pid, s.directory, flush=True); sys.stdin.read(); os._exit(0)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=FakeCodexCommand(tmp_path).env())
    try:
        pid, directory = parent.stdout.readline().decode().split()
        assert not gone_within(int(pid), 0.3)
        parent.kill()  # no atexit, no stop(): only the pipe tells the server
        parent.wait(timeout=WAIT)
        assert gone_within(int(pid))
        deadline = time.monotonic() + WAIT
        while Path(directory).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not Path(directory).exists()  # its socket went with it
    finally:
        finish(parent)


def test_a_bin_dir_codex_is_the_launcher_itself(server: ForkServer, tmp_path: Path) -> None:
    singleton = ensure_server()
    assert singleton is not None and singleton.wait_ready(WAIT * 3)
    command = FakeCodexCommand(scenario(tmp_path, WAITING), report=tmp_path / "report-{pid}.json", timeout=30)
    bin_dir = write_bin_dir(tmp_path / "bin", command)
    assert (bin_dir / "codex").read_text().startswith(f"#!{sys.executable} -SI\n")
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}
    proc = start(["codex", "app-server"], env=env)
    try:
        assert proc.stdout.readline() == b'{"method":"hello"}\n'
        assert is_fake(proc.pid)
        assert ReplayReport.read(tmp_path / f"report-{proc.pid}.json").status == "running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == DIVERGED_EXIT
    finally:
        finish(proc)
    assert ReplayReport.read(tmp_path / f"report-{proc.pid}.json").status == "stopped"


def test_argv_is_warm_while_the_server_runs_and_cold_when_switched_off(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert ensure_server() is not None
    command = FakeCodexCommand(scenario(tmp_path))
    assert command.argv()[:3] == [sys.executable, "-S", "-I"] and "_launch" in command.argv()[3]
    proc = run(command.argv())
    assert proc.returncode == 0, proc.stderr
    monkeypatch.setenv("CODEX_CASSETTE_FORKSERVER", "0")
    assert command.argv() == command.cold_argv()
    assert ensure_server() is None


def test_fake_codex_hands_out_the_launcher_and_stops_one_left_running(tmp_path: Path) -> None:
    from harness.pytest.servers import FakeCodex
    from harness.replay.options import ReplayOptions

    fake = FakeCodex(cassette_path=scenario(tmp_path, WAITING), options=ReplayOptions(timeout=30),
                     workdir=tmp_path / "work")
    fake.workdir.mkdir()
    argv = fake.argv
    singleton = ensure_server()
    assert singleton is not None and argv[4] == singleton.socket_path  # the launcher, started on first use
    assert singleton.wait_ready(WAIT * 3)
    proc = start(fake.argv)
    try:
        assert proc.stdout.readline() == b'{"method":"hello"}\n'
        assert fake.report is not None and fake.report.status == "running" and fake.report.pid == proc.pid
        fake.close()  # a test's teardown: SIGTERM to the launcher, forwarded, `stopped` written
        assert proc.wait(timeout=WAIT) == DIVERGED_EXIT
    finally:
        finish(proc)
    assert [r.status for r in fake.reports] == ["stopped"]
