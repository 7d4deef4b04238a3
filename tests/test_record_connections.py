"""One writer per cassette, one cassette per connection (issue 12, point 4), as a user
meets them: the openai-codex SDK resuming a thread in a second process, both launched
from ``codex_app_server.argv``, recorded from the real codex (offline) and replayed;
and two recorders of one path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.format.cassette import load_cassette

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
WAIT = 30.0

SDK_RESUME = '''
import pytest
from openai_codex import Codex, CodexConfig

@pytest.mark.codex_cassette("resume", live={scenario!r})
def test_resume_in_a_second_process(codex_app_server):
    config = CodexConfig(launch_args_override=tuple(codex_app_server.argv), env=codex_app_server.env,
                         cwd=codex_app_server.cwd)
    with Codex(config) as codex:          # leaving the block: close(), a hang-up then SIGTERM
        thread = codex.thread_start(cwd=codex_app_server.cwd)
        first = thread.run("Remember a word for me")
        thread_id = thread.id
    with Codex(config) as codex:          # a second process: a connection of its own
        second = codex.thread_resume(thread_id).run("What was the word?")
    assert first.final_response == "Remember the word: pineapple."
    assert second.final_response == "The word was pineapple."
    print("MODE", codex_app_server.mode)
'''


@pytest.mark.live
def test_sdk_resume_in_a_second_process_records_two_connections_and_replays_them(pytester: pytest.Pytester) -> None:
    pytest.importorskip("openai_codex")
    scenario = REPO / "cassettes" / "live" / "optio_resume.yaml"
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=SDK_RESUME.format(scenario=str(scenario)))
    directory = pytester.path / "cassettes" / "test_inner"

    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--codex-record-mode=once",
                                             timeout=300)
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["*MODE record*"])
    first, second = load_cassette(directory / "resume.jsonl"), load_cassette(directory / "resume.2.jsonl")
    for cassette in (first, second):
        assert cassette.complete and cassette.meta["end"] == "clean", cassette.meta
    methods = [[e.msg.get("method") for e in c.messages("client") if "method" in e.msg] for c in (first, second)]
    assert "thread/start" in methods[0] and "thread/resume" not in methods[0]
    assert "thread/resume" in methods[1] and "thread/start" not in methods[1]
    assert sorted(p.name for p in directory.iterdir()) == ["resume.2.jsonl", "resume.jsonl"]  # no locks, no partials

    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", timeout=300)
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines(["*MODE replay*"])


def test_a_second_recorder_of_one_path_fails_at_once_naming_the_first(tmp_path: Path) -> None:
    cassette = tmp_path / "one.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    argv = [PY, "-m", "harness", "record", "-o", str(cassette), "--", "sh", "-c", "touch started-$$; exec cat"]
    first = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    assert first.stdin is not None and first.stdout is not None
    first.stdin.write(b'{"id":1}\n')
    first.stdin.flush()
    assert first.stdout.readline() == b'{"id":1}\n'

    second = subprocess.run(argv, input=b'{"id":2}\n', capture_output=True, env=env, cwd=tmp_path, timeout=WAIT)
    assert second.returncode == 2 and second.stdout == b""
    err = second.stderr.decode()
    assert "Traceback" not in err and err.count("\n") == 1
    assert f"{cassette}.partial: pid " in err and "(python" in err and "-m harness record)" in err
    assert len(list(tmp_path.glob("started-*"))) == 1  # the second one never started its server

    first.stdin.close()
    assert first.wait(WAIT) == 0
    first.stdout.close()
    recorded = load_cassette(cassette)
    assert recorded.complete and [e.msg for e in recorded.messages()] == [{"id": 1}, {"id": 1}]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("one")) == ["one.jsonl"]
