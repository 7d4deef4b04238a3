"""The pytest plugin as a user meets it: inner test files run with pytester,
using the marker, the fixtures and the command-line options."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SCENARIO = """
    meta: {codex_version: "0.163.0"}
    steps:
      - notify: hello/fromFake
        params: {cwd: "{{cwd}}"}
      - expect: initialize
        params: {clientInfo: {name: inner}}
        reply: {userAgent: "codex_cli_rs/0.163.0"}
      - expect: initialized
      - expect: thread/start
        params: {cwd: /work/inner}
        reply: {thread: {id: thr_1}}
    """

# What a user's client would do, as plain subprocess + JSON lines (sync).
HELPERS = '''
import json, subprocess

SESSION = [
    {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}},
    {"method": "initialized"},
    {"id": 2, "method": "thread/start", "params": {"cwd": "/work/inner"}},
]

def drive(argv, messages=SESSION, env=None):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    out, err = proc.communicate("".join(json.dumps(m) + "\\n" for m in messages), timeout=10)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err
'''


def setup_project(pytester: pytest.Pytester, module: str, body: str, *, cassettes: dict[str, str] | None = None,
                  where: str | None = None) -> Path:
    """An inner project: helpers, a test module, and its cassettes."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(inner_helpers=HELPERS)
    pytester.makepyfile(**{module: textwrap.dedent(body)})
    directory = pytester.path / (where or f"cassettes/{module}")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (cassettes or {}).items():
        (directory / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return directory


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-q", *args)


def test_marker_name_and_sync_subprocess_via_argv(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_inner", """
        import pytest
        from inner_helpers import drive

        @pytest.mark.codex_cassette("session")
        def test_with_marker(fake_codex):
            assert fake_codex.cassette_path.name == "session.yaml"
            code, out, err = drive(fake_codex.argv)
            assert code == 0, err
            assert out[0]["method"] == "hello/fromFake"
            assert out[1] == {"id": 1, "result": {"userAgent": "codex_cli_rs/0.163.0"}}
            assert out[2] == {"id": 2, "result": {"thread": {"id": "thr_1"}}}
            assert fake_codex.report.status == "ok"

        @pytest.mark.codex_cassette(name="session")
        def test_name_keyword_and_codex_on_path(fake_codex):
            code, out, err = drive(["codex", "app-server", "--listen", "stdio://"], env=fake_codex.env)
            assert code == 0, err
            assert len(out) == 3
        """, cassettes={"session.yaml": SCENARIO})
    result = run(pytester)
    result.assert_outcomes(passed=2)


def test_default_name_is_the_class_and_full_test_name(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_defaults", """
        import pytest
        from inner_helpers import drive

        def test_session(fake_codex):
            assert fake_codex.cassette_path.name == "test_session.yaml"
            assert fake_codex.cassette_path.parent.name == "test_defaults"
            assert fake_codex.cassette_path.parent.parent.name == "cassettes"
            code, out, err = drive(fake_codex.argv)
            assert code == 0, err

        @pytest.mark.parametrize("n", [1, "a/b"])
        def test_session_param(fake_codex, n):
            # Each parametrized case has a cassette of its own; '/' is not kept in a file name.
            assert fake_codex.cassette_path.name == {1: "test_session_param[1].yaml",
                                                     "a/b": "test_session_param[a-b].yaml"}[n]
            assert drive(fake_codex.argv)[0] == 0

        class TestGroup:
            def test_in_class(self, fake_codex):
                assert fake_codex.cassette_path.name == "TestGroup.test_in_class.yaml"
                assert drive(fake_codex.argv)[0] == 0
        """, cassettes={"test_session.yaml": SCENARIO, "test_session_param[1].yaml": SCENARIO,
                        "test_session_param[a-b].yaml": SCENARIO, "TestGroup.test_in_class.yaml": SCENARIO})
    run(pytester).assert_outcomes(passed=4)


def test_markers_merge_from_module_class_and_function_closest_winning(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_merge", """
        import pytest
        from inner_helpers import drive

        pytestmark = pytest.mark.codex_cassette("session", timeout=3, pace="instant")

        @pytest.mark.codex_cassette(timeout=7)
        class TestMerged:
            def test_class_wins_over_module(self, fake_codex):
                assert fake_codex.cassette_path.name == "session.yaml"
                assert fake_codex.options.timeout == 7 and fake_codex.options.pace == "instant"
                assert drive(fake_codex.argv)[0] == 0

            @pytest.mark.codex_cassette("other", linger=0.5)
            def test_function_wins(self, fake_codex):
                assert fake_codex.cassette_path.name == "other.yaml"
                assert fake_codex.options.timeout == 7 and fake_codex.options.linger == 0.5
                assert drive(fake_codex.argv)[0] == 0
        """, cassettes={"session.yaml": SCENARIO, "other.yaml": SCENARIO})
    run(pytester).assert_outcomes(passed=2)


def test_a_marker_name_cannot_leave_the_cassette_directory(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_escape", """
        import pytest

        @pytest.mark.codex_cassette("../../../x")
        def test_up(fake_codex):
            pass

        @pytest.mark.codex_cassette("/etc/passwd")
        def test_absolute(codex_app_server):
            pass
        """, cassettes={"session.yaml": SCENARIO})
    result = run(pytester)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"*cassette name '../../../x' leads to {pytester.path.parent.resolve()}/x, outside "
                                 f"pytest's rootdir {pytester.path}*",
                                 "*cassette name '/etc/passwd' must be a relative path*"])


def test_cassette_dir_and_config_overridden_in_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        from pathlib import Path
        import pytest

        @pytest.fixture
        def codex_cassette_dir():
            return Path(__file__).parent / "elsewhere"

        @pytest.fixture
        def codex_cassette_config():
            return {"timeout": 0.3, "bindings": {"cwd": "/from/config"}}
        """)
    setup_project(pytester, "test_conf", """
        import subprocess
        import pytest
        from inner_helpers import drive

        def test_session(fake_codex):
            assert fake_codex.cassette_path.parent.name == "elsewhere"
            assert fake_codex.options.timeout == 0.3
            code, out, err = drive(fake_codex.argv)
            assert code == 0, err
            assert out[0]["params"] == {"cwd": "/from/config"}   # bound up front by the config

        @pytest.mark.codex_cassette("test_session", timeout=5, bindings={"cwd": "/from/marker"})
        def test_marker_kwargs_win(fake_codex):
            assert fake_codex.options.timeout == 5
            code, out, err = drive(fake_codex.argv)
            assert out[0]["params"] == {"cwd": "/from/marker"}

        @pytest.mark.codex_cassette("test_session")
        def test_config_timeout_is_used(fake_codex):
            # Says nothing, with stdin open: the fake gives up after the configured 0.3 s, not 10 s.
            proc = subprocess.Popen(fake_codex.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            try:
                assert proc.wait(timeout=5) == 3
            finally:
                proc.kill()
                proc.stdin.close()
            assert "nothing came in 0.3 s" in proc.stderr.read()
            proc.stderr.close()
            fake_codex.assert_diverged()
        """, cassettes={"test_session.yaml": SCENARIO}, where="elsewhere")
    result = run(pytester, "--durations=3")
    result.assert_outcomes(passed=3)


def test_unknown_marker_option_fails_clearly(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_opts", """
        import pytest

        @pytest.mark.codex_cassette("s", timout=3)
        def test_typo(fake_codex):
            pass
        """, cassettes={"s.yaml": SCENARIO})
    result = run(pytester)
    result.assert_outcomes(errors=1)
    out = result.stdout.str()  # (fnmatch would read the brackets as a character class)
    assert "codex-cassette: unknown option(s) ['timout'] for test_opts.py::test_typo (did you mean 'timeout'?); known: [" in out


def test_async_test_with_an_in_process_handle(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_async", """
        import asyncio, json
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session", bindings={"cwd": "/in/process"})
        async def test_handle(fake_codex):
            proc = fake_codex.handle()
            first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 5))
            assert first == {"method": "hello/fromFake", "params": {"cwd": "/in/process"}}
            proc.stdin.write(json.dumps({"id": "a", "method": "initialize",
                                         "params": {"clientInfo": {"name": "inner"}}}) + "\\n")
            proc.stdin.write(b'{"method": "initialized"}\\n')
            await proc.stdin.drain()
            assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 5))["id"] == "a"
            proc.stdin.write(b'{"id": "b", "method": "thread/start", "params": {"cwd": "/work/inner"}}\\n')
            reply = json.loads(await asyncio.wait_for(proc.stdout.readline(), 5))
            assert reply == {"id": "b", "result": {"thread": {"id": "thr_1"}}}
            proc.stdin.close()
            assert await proc.wait(5) == 0
            assert fake_codex.report.status == "ok"
        """, cassettes={"session.yaml": SCENARIO})
    run(pytester).assert_outcomes(passed=1)


def test_divergence_fails_the_test_once_with_a_readable_report(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_diverge", """
        from inner_helpers import SESSION, drive

        def test_session(fake_codex):
            wrong = SESSION[:2] + [{"id": 2, "method": "thread/start", "params": {"cwd": "/somewhere/else"}}]
            code, out, err = drive(fake_codex.argv, messages=wrong)
            assert code == 3
            assert out[-1]["error"]["code"] == -32099
        """, cassettes={"test_session.yaml": SCENARIO})
    result = run(pytester)
    result.assert_outcomes(failed=1)  # the test body passed, but its fake had diverged: one failure
    result.stdout.fnmatch_lines([
        "*_ test_session _*",
        "*codex-cassette: the session diverged from the cassette*",
        "*test_session.yaml as server: diverged*",
        "*divergence at *test_session.yaml:9: expected client thread/start (id 2)*",
        "*diff (recorded -> live):*",
        "*/work/inner*/somewhere/else*",
    ])
    assert "Traceback" not in result.stdout.str()


def test_missing_cassette(pytester: pytest.Pytester) -> None:
    directory = setup_project(pytester, "test_missing", """
        import pytest

        @pytest.mark.codex_cassette("nope")
        def test_session(fake_codex):
            pass
        """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*codex-cassette: no cassette 'nope' for test_missing.py::test_session; "
                                 f"looked for {directory}/nope, {directory}/nope.jsonl*"])


def test_broken_cassette_is_reported_with_file_and_line(pytester: pytest.Pytester) -> None:
    directory = setup_project(pytester, "test_broken", """
        def test_session(fake_codex):
            pass
        """, cassettes={"test_session.yaml": "steps:\n  - expect: initialize\n    match: fuzzy\n"})
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{directory}/test_session.yaml:2: 'match' must be one of*"])


UNPLAYED = """
    from inner_helpers import SESSION, drive

    def test_session(fake_codex):
        code, out, err = drive(fake_codex.argv, messages=SESSION[:1])  # stops after initialize
        assert out[1]["id"] == 1
    """


def test_unplayed_events_fail_unless_allowed(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_unplayed", UNPLAYED, cassettes={"test_session.yaml": SCENARIO})
    strict = run(pytester)
    strict.assert_outcomes(failed=1)  # the fake had ended, unplayed events left: the test fails, once
    strict.stdout.fnmatch_lines(["*test_session.yaml as server: incomplete*",
                                 "*3 events never played*",
                                 "*test_session.yaml:8: client initialized*"])
    relaxed = run(pytester, "--codex-allow-unplayed")
    relaxed.assert_outcomes(passed=1)


def test_options_show_in_help(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "codex-cassette: record/replay of codex app-server sessions:",
        "*--codex-replay-timeout=SECONDS*",
        "*--codex-allow-unplayed*",
    ])
    result.stdout.fnmatch_lines(["*codex_replay_timeout*"])


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.codex_cassette(name=None, **options)*"])


def test_a_fake_left_running_is_stopped_and_judged_at_teardown(pytester: pytest.Pytester) -> None:
    """A test that never closes the fake's stdin: teardown stops the process (it must not
    linger) and judges what it played. Everything played: pass. Not everything: fail."""
    setup_project(pytester, "test_left", """
        import json, subprocess, pytest

        def start(fake_codex, messages):
            proc = subprocess.Popen(fake_codex.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
            for m in messages:
                proc.stdin.write((json.dumps(m) + "\\n").encode())
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["method"] == "hello/fromFake"
            assert json.loads(proc.stdout.readline())["id"] == 1
            return proc

        @pytest.fixture
        def procs():
            started = []
            yield started
            for proc in started:  # after the fake_codex teardown ran: it must already be gone
                assert proc.wait(timeout=10) is not None

        @pytest.mark.codex_cassette("test_session")
        def test_all_played(procs, fake_codex):
            from inner_helpers import SESSION
            proc = start(fake_codex, SESSION)
            assert json.loads(proc.stdout.readline())["id"] == 2
            procs.append(proc)

        @pytest.mark.codex_cassette("test_session")
        def test_stopped_half_way(procs, fake_codex):
            from inner_helpers import SESSION
            procs.append(start(fake_codex, SESSION[:1]))
        """, cassettes={"test_session.yaml": SCENARIO})
    result = run(pytester, "--durations=5")
    result.assert_outcomes(passed=1, failed=1)  # one outcome per test: teardown's finding is the test's failure
    result.stdout.fnmatch_lines(["*_ test_stopped_half_way _*", "*the session was still running*",
                                 "FAILED test_left.py::test_stopped_half_way*"])
    assert "ERROR" not in result.stdout.str()


def test_match_on_and_ignore_reach_the_fake_in_and_out_of_process(pytester: pytest.Pytester) -> None:
    setup_project(pytester, "test_match", """
        import asyncio, json, pytest
        from inner_helpers import SESSION, drive

        OTHER_CWD = [dict(m, params={"cwd": "/not/recorded"}) if m.get("method") == "thread/start" else m
                     for m in SESSION]

        @pytest.mark.codex_cassette("test_session", match_on=["kind", "method", "id"])
        def test_without_the_body_matcher_params_may_differ(fake_codex):
            code, out, err = drive(fake_codex.argv, OTHER_CWD)
            assert code == 0, err

        @pytest.mark.codex_cassette("test_session", ignore=["params.cwd"])
        def test_an_ignored_path_may_differ(fake_codex):
            code, out, err = drive(fake_codex.argv, OTHER_CWD)
            assert code == 0, err

        @pytest.mark.codex_cassette("test_session")
        def test_by_default_it_may_not(fake_codex):
            code, out, err = drive(fake_codex.argv, OTHER_CWD)
            assert code == 3 and "/not/recorded" in err
            fake_codex.assert_diverged()

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("test_session", match_on=["kind", "method", "id", "cwd_under_work"])
        async def test_a_registered_matcher_decides_in_process(fake_codex):
            handle = fake_codex.handle()
            for m in OTHER_CWD:
                handle.stdin.write((json.dumps(m) + "\\n").encode())
            handle.stdin.close()
            await asyncio.wait_for(handle.wait(), 10)
            report = fake_codex.assert_diverged()
            assert report.divergence.matcher == "cwd_under_work"
            assert "/not/recorded" in report.divergence.message

        @pytest.mark.codex_cassette("test_session", match_on=["kind", "method", "id", "cwd_under_work"])
        def test_a_registered_module_level_matcher_decides_in_the_subprocess_too(fake_codex):
            # The registry hands the subprocess the matcher as module:function.
            assert any(a.endswith("inner_matchers:cwd_under_work") for a in fake_codex.argv)
            code, out, err = drive(fake_codex.argv, OTHER_CWD)
            assert code == 3 and "'/not/recorded' is not under /work" in err
            assert fake_codex.assert_diverged().divergence.matcher == "inner_matchers:cwd_under_work"

        @pytest.mark.codex_cassette("test_session", match_on=["kind", "method", "id", "inner_matchers:cwd_under_work"])
        def test_a_module_function_matcher_needs_no_registration(fake_codex):
            code, out, err = drive(fake_codex.argv, OTHER_CWD)
            assert code == 3 and "is not under /work" in err
            fake_codex.assert_diverged()

        @pytest.mark.codex_cassette("test_session", match_on=["kind", "nonsense"])
        def test_an_unknown_matcher_is_named(fake_codex):
            pass

        @pytest.mark.codex_cassette("test_session", match_on=["kind", "no_such_module_xyz:f"])
        def test_an_unimportable_matcher_is_named(fake_codex):
            pass
        """, cassettes={"test_session.yaml": SCENARIO})
    pytester.makepyfile(inner_matchers="""
        def cwd_under_work(rec, live, ctx, event):
            cwd = (live.get("params") or {}).get("cwd")
            return None if cwd is None or cwd.startswith("/work/") else f"cwd {cwd!r} is not under /work"
        """)
    pytester.makeconftest("""
        import os
        import inner_matchers

        # The fake subprocess finds inner_matchers as any user's module would be found.
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)

        def pytest_codex_cassette_configure(config, registry):
            registry.register("cwd_under_work", inner_matchers.cwd_under_work)
        """)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    result = run(pytester)
    result.assert_outcomes(passed=6, errors=2)
    result.stdout.fnmatch_lines(["*unknown matcher 'nonsense' in match_on*pytest_codex_cassette_configure*",
                                 "*matcher 'no_such_module_xyz:f' in match_on cannot be imported*"])


def test_the_fake_subprocess_names_an_unknown_matcher(tmp_path: Path) -> None:
    import subprocess
    import sys

    cassette = tmp_path / "s.yaml"
    cassette.write_text(textwrap.dedent(SCENARIO).lstrip("\n"))
    proc = subprocess.run([sys.executable, "-m", "fake_server", "--cassette", str(cassette),
                           "--match-on=kind,nonsense", "app-server"], input="", capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "unknown matcher 'nonsense'" in proc.stderr
