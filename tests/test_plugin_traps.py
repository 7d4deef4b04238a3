"""The traps a new user of the pytest plugin fell into (issue 23), each run as that user would:
an inner project executed by pytester with the real plugin and the real fake."""

from __future__ import annotations

import pytest

from harness.format.cassette import load_cassette
from harness.live.codex_home import render_config
from test_faults_pytest import outcomes, project
from test_pytest_plugin import SCENARIO, run, setup_project
from test_record_modes import INNER, inner  # noqa: F401 (a fixture)

pytest_plugins = ["pytester"]


def test_a_fault_variant_is_selected_with_k(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import pytest
        from inner_client import session

        @pytest.mark.codex_cassette("session", faults="crash", faults_deadline=2)
        def test_client(fake_codex, codex_fault):
            try:
                session(fake_codex.argv)
            except (EOFError, OSError):
                assert codex_fault is not None
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", "-k", "fault:crash-7:closed")
    assert outcomes(result) == {"test_client[fault:crash-7:closed]": "PASSED"}, result.stdout.str()
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", "-k", "fault:none or crash-2 and not closed")
    assert outcomes(result) == {"test_client[fault:none]": "PASSED", "test_client[fault:crash-2]": "PASSED"}


def test_a_misspelt_cli_option_or_ini_key_names_the_one_meant(pytester: pytest.Pytester) -> None:
    """(A misspelt marker option: tests/test_pytest_plugin.py::test_unknown_marker_option_fails_clearly.)"""
    setup_project(pytester, "test_typo", """
        def test_session(fake_codex):
            pass
        """, cassettes={"test_session.yaml": SCENARIO})
    result = run(pytester, "--codex-replay-timout=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown option --codex-replay-timout (did you mean '--codex-replay-timeout'?)*"])

    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\ncodex_record_mod = once\n")
    result = run(pytester, "-k", "nothing")
    result.stdout.fnmatch_lines(["*codex-cassette: unknown ini option codex_record_mod "
                                 "(did you mean 'codex_record_mode'?)*"])


def test_the_ini_timeout_has_its_options_name_and_the_old_one_still_works_with_a_warning(
        pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_ini", """
        def test_session(fake_codex):
            assert fake_codex.timeout == 4
        """, cassettes={"test_session.yaml": SCENARIO})
    ini = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    pytester.makeini(ini + "codex_replay_timeout = 4\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert "deprecated" not in result.stdout.str()
    pytester.makeini(ini + "codex_cassette_timeout = 4\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*the ini option codex_cassette_timeout is deprecated; "
                                 "call it codex_replay_timeout*"])


def test_fake_codex_says_it_only_replays_when_asked_to_record(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_rec", """
        import pytest

        @pytest.mark.codex_cassette("nothere", live="scenarios/hello.yaml")
        def test_session(fake_codex):
            pass
        """)
    result = run(pytester, "--codex-record-mode=once")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no cassette 'nothere' for test_rec.py::test_session; looked for *; fake_codex "
                                 "only replays (--codex-record-mode=once, live= not for it): "
                                 "the codex_app_server fixture records*"])


def test_a_cassette_is_shared_across_modules_inside_the_rootdir_and_never_beyond(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> None:
    setup_project(pytester, "test_driver", "def test_unused():\n    pass\n", cassettes={"approval.yaml": SCENARIO})
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.yaml").write_text("steps: []\n")
    directory = setup_project(pytester, "test_other", """
        import pytest
        from inner_helpers import drive

        @pytest.mark.codex_cassette("../test_driver/approval")
        def test_shared(fake_codex):
            assert fake_codex.cassette_path.name == "approval.yaml"
            assert drive(fake_codex.argv)[0] == 0

        @pytest.mark.codex_cassette("../test_driver/approval")
        def test_shared_by_the_app_server(codex_app_server):
            assert drive(codex_app_server.argv)[0] == 0

        @pytest.mark.codex_cassette("escape")
        def test_symlink_out(fake_codex):
            pass
        """)
    (directory / "escape.yaml").symlink_to(outside / "secret.yaml")
    result = run(pytester, "test_other.py")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([f"*cassette name 'escape' leads to {outside.resolve()}/secret.yaml, outside "
                                 f"pytest's rootdir {pytester.path}*also not through a symlink*"])


def test_one_request_more_than_recorded_is_told_in_one_wording(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import json, subprocess

        def test_client(fake_codex):
            msgs = [{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}},
                    {"method": "initialized"},
                    {"id": 2, "method": "thread/start", "params": {"cwd": "/work/inner"}},
                    {"id": 3, "method": "thread/list", "params": {}}]
            subprocess.run(fake_codex.argv, input="".join(json.dumps(m) + "\\n" for m in msgs), text=True,
                           capture_output=True, timeout=20)
    """)
    (pytester.path / "cassettes" / "test_inner" / "test_client.jsonl").write_text(
        (pytester.path / "cassettes" / "test_inner" / "session.jsonl").read_text())
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*3 peer messages matched, 6 of 8 events played",
        "*unexpected message from the client: {\"id\": 3, \"method\": \"thread/list\", \"params\": {}} (the "
        "cassette has 'client closes its stream' next: the client sent more than was recorded; last position "
        "*test_client.jsonl:8).",
        "*2 events never played, first:",
        "*test_client.jsonl:8: client closes its stream"])
    assert "expected nothing" not in result.stdout.str()


def test_one_peer_message_is_singular(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import json, subprocess

        def test_client(fake_codex):
            msg = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}}
            subprocess.run(fake_codex.argv, input=json.dumps(msg) + "\\n", text=True, capture_output=True, timeout=20)
    """)
    (pytester.path / "cassettes" / "test_inner" / "test_client.jsonl").write_text(
        (pytester.path / "cassettes" / "test_inner" / "session.jsonl").read_text())
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 peer message matched, 2 of 8 events played"])


def test_a_cassette_a_failing_test_recorded_warns_in_none_and_is_recorded_again_by_once(inner) -> None:
    failing = INNER.replace('== "Hello!"', '== "Goodbye!"')
    result, modes = inner("--codex-record-mode=once", tests=failing)
    result.assert_outcomes(failed=1)
    assert not load_cassette(inner.cassette).complete

    result, modes = inner("-W", "default")  # none: it replays, green, but not silently
    result.assert_outcomes(passed=1, warnings=1)
    assert modes == ["replay"]
    result.stdout.fnmatch_lines([f"*codex-cassette: {inner.cassette} is incomplete (the test failed while recording "
                                 "(test_inner.py::test_one)*): test_inner.py::test_one replays it only as far as it "
                                 "goes; record it again with pytest --codex-record-mode=once test_inner.py::test_one"])

    result, modes = inner("--codex-record-mode=once")
    result.assert_outcomes(passed=1)
    assert modes == ["record"] and load_cassette(inner.cassette).complete
    result, modes = inner()
    result.assert_outcomes(passed=1)
    assert "incomplete" not in result.stdout.str()


DIVERGING_CLIENT = """
    import json, subprocess

    def test_session(fake_codex):
        msg = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "other"}}}
        proc = subprocess.run(fake_codex.argv, input=json.dumps(msg) + "\\n", text=True, stdout=subprocess.PIPE,
                              timeout=20)  # the fake's stderr is the test's
        answer = json.loads(proc.stdout.splitlines()[-1])
        assert "result" in answer, "the client got an error"
"""


def test_a_divergence_is_told_once_in_the_failure_and_once_in_its_section(pytester: pytest.Pytester) -> None:
    project(pytester, DIVERGING_CLIENT)
    directory = pytester.path / "cassettes" / "test_inner"
    (directory / "test_session.jsonl").write_text((directory / "session.jsonl").read_text())
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert out.count("test_session.jsonl as server: diverged") == 1, out
    assert "Captured stderr" not in out
    result.stdout.fnmatch_lines(["*AssertionError: the client got an error*", "*- codex-cassette -*",
                                 "*diff (recorded -> live):*"])


def test_a_client_that_leaves_the_fake_running_gets_one_outcome(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import json, subprocess

        def test_session(fake_codex):
            proc = subprocess.Popen(fake_codex.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            proc.stdin.write(json.dumps({"id": 1, "method": "initialize",
                                         "params": {"clientInfo": {"name": "inner"}}}) + "\\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["id"] == 1   # and never waits for it to exit
    """)
    directory = pytester.path / "cassettes" / "test_inner"
    (directory / "test_session.jsonl").write_text((directory / "session.jsonl").read_text())
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(failed=1)
    assert outcomes(result) == {"test_session": "FAILED"}
    result.stdout.fnmatch_lines(["*_ test_session _*", "*the session was still running*"])




def test_recording_from_a_codex_without_an_account_fails_in_seconds_and_leaves_no_cassette(
        pytester: pytest.Pytester, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real codex, with no account: its default OpenAI provider, every way out pointed at a
    dead loopback port (base URL and proxies), so it cannot reach the internet whatever it tries."""
    import time

    import codex_cli_bin

    codex_home = tmp_path / "codex_home"
    codex_home.mkdir()
    offline = render_config("http://127.0.0.1:9/v1")  # the live kit's: no plugins, no analytics; and no mock
    (codex_home / "config.toml").write_text(offline[offline.index("[analytics]"):])
    (tmp_path / "home").mkdir()
    for name in ("OPENAI_API_KEY", "CODEX_API_KEY", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    dead = "http://127.0.0.1:9"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    monkeypatch.setenv("OPENAI_BASE_URL", dead + "/v1")
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=INNER.replace("log.write", "log and log.write").replace(
        'open(os.environ["MODE_LOG"], "a")', 'open(os.devnull, "a")'))
    started = time.monotonic()
    result = pytester.runpytest_subprocess(f"--codex-bin={codex_cli_bin.bundled_codex_path()}", "-p",
                                           "no:cacheprovider", "--codex-record-mode=once", timeout=120)
    seconds = time.monotonic() - started
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot record test_inner.py::test_one without live=: this codex (*) has no "
                                 "account*live='path/to/scenario.yaml'*`codex login`*OPENAI_API_KEY*"
                                 "Nothing was recorded.*"])
    assert seconds < 30, seconds
    directory = pytester.path / "cassettes" / "test_inner"
    assert not directory.exists() or list(directory.iterdir()) == []


def test_disable_recording_hands_out_the_real_codex_and_writes_nothing(inner) -> None:
    """The "real codex" here is tests/test_record_modes.py's: a `codex` that serves a scenario."""
    result, modes = inner("--codex-disable-recording", "--codex-record-mode=once")
    result.assert_outcomes(passed=1)
    assert modes == ["real"]
    assert not inner.cassette.parent.exists() or list(inner.cassette.parent.iterdir()) == []


def test_codex_cassette_name_is_overridable_like_default_cassette_name(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def codex_cassette_name(request):
            return "shared/" + request.node.originalname.removeprefix("test_")
        """)
    directory = setup_project(pytester, "test_named", """
        import pytest
        from inner_helpers import drive

        def test_session(fake_codex):
            assert fake_codex.cassette_path.name == "session.yaml"
            assert drive(fake_codex.argv)[0] == 0

        @pytest.mark.codex_cassette("session")
        def test_marker_wins(codex_app_server):
            assert codex_app_server.cassette_path.name == "session.yaml"
        """, cassettes={"session.yaml": SCENARIO})
    (directory / "shared").mkdir()
    (directory / "shared" / "session.yaml").write_text((directory / "session.yaml").read_text())
    run(pytester).assert_outcomes(passed=2)
