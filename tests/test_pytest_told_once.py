"""In pytest a divergence is told once, escaped, and a diverged test is one failure
(issue 13); the fixtures say the replay timeout so a test can wait longer than it."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

SCENARIO = """
    steps:
      - expect: initialize
        params: {clientInfo: {name: inner}}
        reply: {userAgent: "codex_cli_rs/0.163.0"}
      - expect: initialized
    """

# A client that sends a name the scenario does not expect (with a terminal escape in it),
# then trips over the error answer, as a real client's assertion would.
BODY = """
    import json, subprocess, pytest

    def talk(fake_codex, name):
        msg = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": name}}}
        proc = subprocess.run(fake_codex.argv, input=json.dumps(msg) + "\\n", capture_output=True, text=True,
                              timeout=2 * fake_codex.timeout)
        return json.loads(proc.stdout.splitlines()[-1])

    @pytest.mark.codex_cassette("session", timeout=3)
    def test_fails_on_the_answer(fake_codex):
        assert fake_codex.timeout == 3
        answer = talk(fake_codex, "\\x1b]0;retitled\\x07other")
        assert "result" in answer, "the client got an error"

    @pytest.mark.codex_cassette("session")
    def test_passes_but_its_fake_diverged(fake_codex):
        talk(fake_codex, "other")

    @pytest.mark.codex_cassette("session")
    def test_knows_it_diverges(fake_codex):
        talk(fake_codex, "other")
        fake_codex.assert_diverged()

    @pytest.mark.codex_cassette("session")
    def test_codex_app_server_says_its_timeout(codex_app_server):
        assert codex_app_server.timeout == 7
    """


def test_a_diverged_test_is_one_failure_told_once(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=textwrap.dedent(BODY))
    directory = pytester.path / "cassettes" / "test_inner"
    directory.mkdir(parents=True)
    (directory / "session.yaml").write_text(textwrap.dedent(SCENARIO).lstrip())
    result = pytester.runpytest("-p", "no:cacheprovider", "--codex-replay-timeout=7")
    result.assert_outcomes(failed=2, passed=2)  # no errors: nothing is told a second time at teardown
    # (The short summary at the end repeats each failure's first line, untruncated under CI=true.)
    out = result.stdout.str().split("short test summary info")[0]
    assert out.count("codex-cassette: the session diverged from the cassette") == 2
    assert out.count("as server: diverged") == 2
    result.stdout.fnmatch_lines(["*_ test_fails_on_the_answer _*", "*the client got an error*",
                                 "*- codex-cassette -*", "*divergence at *session.yaml:2*",
                                 "*\\x1b]0;retitled\\x07other*"])
    result.stdout.fnmatch_lines(["*_ test_passes_but_its_fake_diverged _*", "*divergence at *session.yaml:2*"])
    assert "\x1b" not in out and "\x07" not in out


HANGS = """
    import asyncio, json, pytest

    @pytest.mark.asyncio
    @pytest.mark.codex_cassette("session")
    async def test_hangs_after_all_was_played(fake_codex):
        proc = await asyncio.create_subprocess_exec(*fake_codex.argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)
        proc.stdin.write(b'{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}}\\n')
        await asyncio.wait_for(proc.stdout.readline(), 10)
        secret = "ghp_" + "k3Xq" * 9  # planted: the report must never show it
        proc.stdin.write(json.dumps({"method": "initialized",
                                     "params": {"note": "the last words", "token": secret}}).encode() + b"\\n")
        await asyncio.wait_for(proc.stdout.readline(), 1)  # waits for what the cassette never had
    """


def test_a_client_that_hangs_after_everything_was_played_gets_the_report_in_its_failure(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=textwrap.dedent(HANGS))
    directory = pytester.path / "cassettes" / "test_inner"
    directory.mkdir(parents=True)
    (directory / "session.yaml").write_text(textwrap.dedent(SCENARIO).lstrip())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TimeoutError*", "*- codex-cassette -*", "*as server: *",
                                 "*all 3 events played; the client was still connected when the test ended*",
                                 "*the client's last message: *initialized*the last words*"])
    assert "k3Xqk3Xq" not in result.stdout.str()
