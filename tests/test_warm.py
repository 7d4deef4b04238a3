"""`codex-cassette warm start|stop`: a detached fork server and DIR/codex, for clients outside pytest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from fake_server.argv import table
from fake_server.warm import LAUNCHER, PIDFILE, read_pidfile

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "warm.md").read_text()
WAIT = 60.0
CLI = [sys.executable, "-m", "harness"]
HELLO = "steps:\n  - expect: initialize\n    reply: {userAgent: fake/1.0}\n  - expect: initialized\n  - exit: 0\n"
INIT = b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"t","version":"1"}}}\n{"method":"initialized"}\n'


def _block(lang: str) -> str:
    found = re.search(rf"```{lang}\n(.*?)```", DOC, re.S)
    assert found, f"docs/warm.md has no {lang} example"
    return found.group(1)


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=WAIT, cwd=ROOT, **kw)


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "Z" in _state(pid):
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


@pytest.fixture
def warm_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "warm"
    yield directory
    _cli("warm", "stop", "--dir", str(directory))


def test_start_writes_the_launcher_and_a_second_start_reuses_the_server(warm_dir: Path, tmp_path: Path) -> None:
    first = _cli("warm", "start", "--dir", str(warm_dir))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(warm_dir)
    server = read_pidfile(warm_dir)
    assert server is not None and server.ready()
    again = _cli("warm", "start", "--dir", str(warm_dir))
    assert again.returncode == 0, again.stderr
    assert read_pidfile(warm_dir) == server
    (tmp_path / "hello.yaml").write_text(HELLO)
    env = {**os.environ, "CODEX_CASSETTE_FILE": "hello.yaml", "CODEX_CASSETTE_REPORT": str(tmp_path / "r.json")}
    run = subprocess.run([str(warm_dir / LAUNCHER), "app-server"], input=INIT, capture_output=True, env=env,
                         cwd=tmp_path, timeout=WAIT)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[0])["result"] == {"userAgent": "fake/1.0"}
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "ok"
    stopped = _cli("warm", "stop", "--dir", str(warm_dir))
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert _gone(server.pid, 15.0)
    assert not (warm_dir / PIDFILE).exists()


def test_the_warm_launcher_ends_and_reports_as_the_cold_fake(warm_dir: Path, tmp_path: Path) -> None:
    """A diverging session: the same exit code, report status and stderr's first line, warm or cold."""
    assert _cli("warm", "start", "--dir", str(warm_dir)).returncode == 0
    (tmp_path / "hello.yaml").write_text(HELLO)
    wrong = b'{"id":1,"method":"thread/start","params":{}}\n'
    results = []
    for name, argv in (("warm", [str(warm_dir / LAUNCHER), "app-server"]),
                       ("cold", [sys.executable, "-m", "fake_server", "app-server"])):
        report = tmp_path / f"{name}.json"
        env = {**os.environ, "CODEX_CASSETTE_FILE": "hello.yaml", "CODEX_CASSETTE_REPORT": str(report),
               "CODEX_CASSETTE_LINGER": "0", "PYTHONPATH": str(ROOT)}
        run = subprocess.run(argv, input=wrong, capture_output=True, env=env, cwd=tmp_path, timeout=WAIT)
        results.append((run.returncode, json.loads(report.read_text())["status"],
                        run.stderr.decode().splitlines()[0]))
    assert results[0] == results[1]
    assert results[0][0] == 3 and results[0][1] == "diverged"


def test_a_value_the_option_refuses_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(HELLO)
    env = {**os.environ, "CODEX_CASSETTE_FILE": "hello.yaml", "CODEX_CASSETTE_TIMEOUT": "soon",
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "fake_server", "app-server"], input=INIT, capture_output=True,
                         env=env, cwd=tmp_path, timeout=WAIT)
    assert run.returncode == 2
    assert b"--timeout" in run.stderr and b"soon" in run.stderr and b"Traceback" not in run.stderr
    assert b"(set by $CODEX_CASSETTE_TIMEOUT)" in run.stderr


def test_every_variable_in_the_docs_table_is_the_option_tables_own() -> None:
    """The docs' table is checked against fake_server/argv.py: one table, the names derived."""
    documented = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[1].startswith("`--"):
            documented[cells[1].strip("`")] = re.findall(r"\$(CODEX_CASSETTE\w*)", cells[0])
    derived = {o.flags[-1]: list(o.variables()) for o in table() if o.variables()}
    assert documented == derived


def test_it_goes_by_itself_when_idle_and_the_launcher_then_runs_cold(warm_dir: Path, tmp_path: Path) -> None:
    assert _cli("warm", "start", "--dir", str(warm_dir), "--idle-exit", "1").returncode == 0
    server = read_pidfile(warm_dir)
    assert server is not None
    assert _gone(server.pid, 20.0), "the idle server did not go by itself"
    assert not os.path.exists(server.socket)
    (tmp_path / "hello.yaml").write_text(HELLO)
    env = {**os.environ, "CODEX_CASSETTE_FILE": "hello.yaml"}
    run = subprocess.run([str(warm_dir / LAUNCHER), "app-server"], input=INIT, capture_output=True, env=env,
                         cwd=tmp_path, timeout=WAIT)
    assert run.returncode == 0, run.stderr
    # The dead server's pidfile is stale: a new start recovers it.
    assert _cli("warm", "start", "--dir", str(warm_dir)).returncode == 0
    fresh = read_pidfile(warm_dir)
    assert fresh is not None and fresh.pid != server.pid and fresh.ready()


def test_a_pidfile_naming_another_process_is_recovered_and_that_process_left_alone(warm_dir: Path) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        warm_dir.mkdir()
        (warm_dir / PIDFILE).write_text(json.dumps({"pid": other.pid, "socket": "/tmp/nowhere/s"}))
        stopped = _cli("warm", "stop", "--dir", str(warm_dir))
        assert stopped.returncode == 0 and "stale" in stopped.stderr
        assert other.poll() is None and not (warm_dir / PIDFILE).exists()
        (warm_dir / PIDFILE).write_text(json.dumps({"pid": other.pid, "socket": "/tmp/nowhere/s"}))
        assert _cli("warm", "start", "--dir", str(warm_dir)).returncode == 0
        server = read_pidfile(warm_dir)
        assert server is not None and server.pid != other.pid and server.ready()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_link_planted_at_the_launchers_name_is_not_written_through(warm_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    warm_dir.mkdir()
    (warm_dir / LAUNCHER).symlink_to(victim)
    run = _cli("warm", "start", "--dir", str(warm_dir))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "link" in run.stderr and str(warm_dir / LAUNCHER) in run.stderr
    assert victim.read_text() == "keep me\n"


def test_the_shell_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(_block("yaml"))
    script = tmp_path / "run.sh"
    script.write_text(_block("sh"))
    bin_dir = Path(sys.executable).parent  # codex-cassette, as installed
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=WAIT)
    assert run.returncode == 0, run.stderr
    assert '"userAgent":"fake/1.0"' in run.stdout and "the fake ended with 0" in run.stdout
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "ok"
    assert "stopped the warm fork server" in run.stderr
    assert read_pidfile(tmp_path / "codex-warm") is None


def test_the_node_example_runs_as_written(warm_dir: Path, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed (.ci/run installs it)"
    (tmp_path / "hello.yaml").write_text(_block("yaml"))
    (tmp_path / "client.js").write_text(_block("js"))
    assert _cli("warm", "start", "--dir", str(warm_dir)).returncode == 0
    run = subprocess.run([node, "client.js"], capture_output=True, text=True, cwd=tmp_path, timeout=WAIT,
                         env={**os.environ, "CODEX_WARM_DIR": str(warm_dir)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "initialize answered: fake/1.0"


def test_a_session_longer_than_the_idle_time_keeps_it_and_stop_ends_the_fake_with_a_report(
        warm_dir: Path, tmp_path: Path) -> None:
    """Idle means no launcher and no fake running: a long session is not cut; `warm stop`
    stops a fake still running, which writes its `stopped` report."""
    assert _cli("warm", "start", "--dir", str(warm_dir), "--idle-exit", "1").returncode == 0
    server = read_pidfile(warm_dir)
    assert server is not None
    (tmp_path / "hello.yaml").write_text(HELLO)
    report = tmp_path / "r.json"
    env = {**os.environ, "CODEX_CASSETTE_FILE": "hello.yaml", "CODEX_CASSETTE_REPORT": str(report),
           "CODEX_CASSETTE_TIMEOUT": "60"}
    fake = subprocess.Popen([str(warm_dir / LAUNCHER), "app-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        assert fake.stdin is not None and fake.stdout is not None
        fake.stdin.write(INIT.splitlines(keepends=True)[0])
        fake.stdin.flush()
        assert json.loads(fake.stdout.readline())["result"] == {"userAgent": "fake/1.0"}
        time.sleep(3.0)  # three idle times, the session still open (it waits for `initialized`)
        assert server.ours() and fake.poll() is None
        stopped = _cli("warm", "stop", "--dir", str(warm_dir))
        assert stopped.returncode == 0 and "stopped" in stopped.stderr
        fake.wait(timeout=WAIT)
        assert json.loads(report.read_text())["status"] == "stopped"
        assert _gone(server.pid, 15.0)
    finally:
        fake.kill()
        fake.wait()
