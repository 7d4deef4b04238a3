"""`codex-cassette faults CASSETTE -- CMD`: real client commands, one run per variant."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from harness.format.cassette import load_cassette

from test_faults_pytest import CASSETTE

ROOT = Path(__file__).resolve().parent.parent
OPTIO_CLIENT = ROOT / "tests" / "fault_clients" / "optio_session.py"

# A client in plain Python: initialize on $CODEX_BIN, its answer read by a thread that dies
# (uncaught: nobody told) when codex ends before answering; on a `--spawn MARK` it also starts
# a long sleeper in a session of its own, the kind of child a hung run leaves behind.
TINY_CLIENT = '''
import json, os, subprocess, sys, threading

if sys.argv[1:2] == ["--spawn"]:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", sys.argv[2]], start_new_session=True)
proc = subprocess.Popen([os.environ["CODEX_BIN"], "app-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        text=True)
proc.stdin.write(json.dumps({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}}) + "\\n")
proc.stdin.flush()
answers = []

def read():
    for line in proc.stdout:
        answers.append(json.loads(line))
        return
    raise ConnectionError("codex ended before answering initialize")

reader = threading.Thread(target=read, name="reader")
reader.start()
reader.join()
proc.stdin.close()
proc.kill()
proc.wait()
'''


def faults(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "faults", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_sweep_finds_the_hang_optio_has_when_codex_dies_mid_turn(tmp_path: Path) -> None:
    """optio-codex 0.1.0 fires on_message only on turn/completed: codex dying after the thread
    started leaves a caller awaiting the answer for ever; before that, bootstrap raises."""
    done = faults("cassettes/optio/text_turn.jsonl", "--kinds", "crash", "--max", "4", "--seed", "2",
                  "--deadline", "8", "-j", "4", "--format", "json", "--write-variants", str(tmp_path),
                  "--", sys.executable, str(OPTIO_CLIENT), "text_turn")
    report = json.loads(done.stdout)
    assert report["clean"]["outcome"] == "survived" and report["summary"]["variants"] == 4
    for variant in report["variants"]:
        assert set(variant) >= {"kind", "point", "outcome", "seconds"} and variant["kind"] == "crash"
        midturn = 12 <= variant["point"] <= 28        # after the thread/start answer, before turn/completed
        assert variant["outcome"] == ("hung" if midturn else "survived"), variant
        if midturn:
            assert variant["message"].endswith("the client hung: quiet for 2.0 s after the fault"), variant
            assert variant["rule"] == "quiet" and variant["seconds"] < 8
        written = load_cassette(variant["cassette"])       # a variant that replays alone
        assert written.meta["fault"]["id"] == variant["id"]
    hung = [v for v in report["variants"] if v["outcome"] == "hung"]
    assert done.returncode == (1 if hung else 0)
    assert len(list(tmp_path.glob("text_turn.crash-*.jsonl"))) == 4


def test_background_crashes_are_found_and_a_hung_run_leaves_nothing_behind(tmp_path: Path) -> None:
    cassette = tmp_path / "session.jsonl"
    cassette.write_text(CASSETTE)
    client = tmp_path / "client.py"
    client.write_text(TINY_CLIENT)
    mark = f"codex-faults-test-{os.getpid()}-{time.monotonic_ns()}"
    done = faults(str(cassette), "--kinds", "crash,stall", "--deadline", "4", "-j", "3", "--",
                  sys.executable, str(client), "--spawn", mark, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "crash@2: after crash at cassette line 2 (after client initialize (id 1)) the client crashed in the " \
           "background: ConnectionError: codex ended before answering initialize" in out
    assert "stall@2: after stall at cassette line 2 (after client initialize (id 1)) the client hung: quiet for 2.0 s after the fault" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:5].strip().isdigit()}
    assert rows["2"][-2:] == ["CC", "H"]                   # crash, crash with stdout closed first; stall
    assert rows["3"][-2:] == ["..", "-"]                   # it had its answer: nothing to stall
    time.sleep(0.5)
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                leftovers.append(pid)
        except OSError:
            continue
    for pid in leftovers:
        os.kill(int(pid), 9)
    # Every run's client started a sleeper in a session of its own; the hung run's went with it,
    # the others' clients ended by themselves (what they leave is theirs).
    variants, hung = map(int, re.search(r"(\d+) variants: \d+ survived, (\d+) hung", out).groups())
    assert (variants, hung) == (13, 1)
    assert len(leftovers) == 1 + variants - hung


def test_a_client_that_fails_the_clean_cassette_is_refused() -> None:
    done = faults("cassettes/optio/handshake.jsonl", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert done.returncode == 2 and not done.stdout
    assert "the client does not pass the clean cassette cassettes/optio/handshake.jsonl" in done.stderr
    assert "exit code 3" in done.stderr
    assert "no client command" in faults("cassettes/optio/handshake.jsonl").stderr
    assert "unknown fault kind(s) 'crsh'" in faults("cassettes/optio/handshake.jsonl", "--kinds", "crsh",
                                                     "--", "true").stderr
    missing = faults("cassettes/optio/handshake.jsonl", "--", "no-such-client-here")
    assert missing.returncode == 2
    assert "cannot run the client command 'no-such-client-here': No such file or directory" in missing.stderr


def test_a_broken_cassette_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"codex_cassette":1,"meta":{}}\n{"i":1,"from":"nobody","t":0,"eof":true}\n')
    done = faults(str(bad), "--", "true")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{bad}:2: unknown sender 'nobody'" in done.stderr


def test_markdown_matrix(tmp_path: Path) -> None:
    cassette = tmp_path / "session.jsonl"
    cassette.write_text(CASSETTE)
    client = tmp_path / "client.py"
    client.write_text(TINY_CLIENT)
    done = faults(str(cassette), "--kinds", "drop,duplicate", "--format", "markdown", "-j", "2", "--",
                  sys.executable, str(client), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "| line | event | drop | dup |" in lines
    assert "| 3 | server response (id 1) |  | `.` |" in lines
    assert "| 7 | server thread/started | `.` | `.` |" in lines
