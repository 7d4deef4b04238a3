"""The traps a new user of the pytest plugin fell into (issue 23), each run as that user would:
an inner project executed by pytester with the real plugin and the real fake."""

from __future__ import annotations

import pytest

from harness.format.cassette import load_cassette
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

    pytester.makeini("[pytest]\ncodex_record_mod = once\n")
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
