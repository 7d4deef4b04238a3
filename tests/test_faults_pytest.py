"""The fault sweep inside pytest, as a user meets it: inner projects run with pytester."""

from __future__ import annotations

import re
import textwrap

import pytest

pytest_plugins = ["pytester"]

# initialize, initialized, thread/start, thread/started: lines 2..7; the client hangs up on line 8.
CASSETTE = "\n".join([
    '{"codex_cassette":1,"meta":{"codex_version":"0.163.0","complete":true}}',
    '{"i":1,"from":"client","t":0.0,"msg":{"id":1,"method":"initialize","params":{"clientInfo":{"name":"inner"}}}}',
    '{"i":2,"from":"server","t":0.1,"msg":{"id":1,"result":{"userAgent":"codex_cli_rs/0.163.0"}}}',
    '{"i":3,"from":"client","t":0.2,"msg":{"method":"initialized"}}',
    '{"i":4,"from":"client","t":0.2,"msg":{"id":2,"method":"thread/start","params":{"cwd":"/work/inner"}}}',
    '{"i":5,"from":"server","t":0.3,"msg":{"id":2,"result":{"thread":{"id":"thr_1"}}}}',
    '{"i":6,"from":"server","t":0.3,"msg":{"method":"thread/started","params":{"thread":{"id":"thr_1"}}}}',
    '{"i":7,"from":"client","t":0.4,"eof":true}',
    '{"i":8,"from":"server","t":0.5,"exit":0}',
]) + "\n"

# A plain client: no timeout of its own (a stall hangs it), raises when codex goes away.
CLIENT = '''
import json, subprocess

def session(argv):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(msg):
        proc.stdin.write(json.dumps(msg) + "\\n")
        proc.stdin.flush()

    def answer(rid):
        for line in proc.stdout:
            msg = json.loads(line)
            if msg.get("id") == rid:
                return msg
        raise EOFError("codex went away")

    try:
        send({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}})
        answer(1)
        send({"method": "initialized"})
        send({"id": 2, "method": "thread/start", "params": {"cwd": "/work/inner"}})
        return answer(2)["result"]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
'''


def project(pytester: pytest.Pytester, body: str) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(inner_client=CLIENT, test_inner=textwrap.dedent(body))
    directory = pytester.path / "cassettes" / "test_inner"
    directory.mkdir(parents=True)
    (directory / "session.jsonl").write_text(CASSETTE)


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """test id -> PASSED / FAILED / XFAIL ... from the -rA summary."""
    found = {}
    for line in result.outlines:
        m = re.match(r"^(PASSED|FAILED|XFAIL|XPASS|ERROR|SKIPPED) \S+::(\S+)", line)
        if m:
            found[m.group(2)] = m.group(1)
    return found


def test_marker_sweeps_a_test_and_a_hang_fails_it(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import pytest
        from inner_client import session

        @pytest.mark.codex_cassette("session", faults="crash,stall", faults_deadline=2)
        def test_client(fake_codex):
            assert session(fake_codex.argv)["thread"]["id"] == "thr_1"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    got = outcomes(result)
    assert got.pop("test_client[fault:none]") == "PASSED"
    crashes = {k: v for k, v in got.items() if "fault:crash-" in k}
    assert sorted(crashes) == sorted(f"test_client[fault:crash-{n}{v}]" for n in (2, 3, 5, 6, 7)
                                     for v in ("", ":closed"))
    assert set(crashes.values()) == {"PASSED"}                 # the client raised: it noticed
    assert {k: v for k, v in got.items() if "stall" in k} == {
        "test_client[fault:stall-2]": "FAILED", "test_client[fault:stall-5]": "FAILED",
        "test_client[fault:stall-6]": "PASSED"}                # its answer came before the stall
    result.stdout.fnmatch_lines(["*after stall at cassette line 5 (after client thread/start (id 2)) "
                                 "the client hung: deadline 2 s*"])


def test_expectations_xfail_known_bugs_and_a_test_asking_for_the_fault_keeps_its_verdict(
        pytester: pytest.Pytester) -> None:
    project(pytester, """
        import pytest
        from inner_client import session

        @pytest.mark.codex_cassette("session", faults="stall", faults_deadline=2)
        def test_known_bug(fake_codex, codex_fault):
            if codex_fault is not None:
                codex_fault.expect("hung", reason="this client has no timeout")
            session(fake_codex.argv)

        @pytest.mark.codex_cassette("session", faults="crash", faults_max=2, faults_deadline=2)
        def test_own_assertions(fake_codex, codex_fault):
            assert codex_fault is None or codex_fault.kind == "crash"
            assert session(fake_codex.argv)["thread"]["id"] == "thr_1"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", "--codex-faults-seed", "3")
    got = outcomes(result)
    assert got["test_known_bug[fault:stall-2]"] == got["test_known_bug[fault:stall-5]"] == "XFAIL"
    assert got["test_known_bug[fault:stall-6]"] == "FAILED"   # strict: it did not hang there
    result.stdout.fnmatch_lines(["*expected the client to be hung under stall at cassette line 6*"
                                 "(this client has no timeout), but after stall*the client ended*"])
    result.stdout.fnmatch_lines(["*this client has no timeout [[]after stall at cassette line 2*hung: deadline 2 s]*"])
    own = {k: v for k, v in got.items() if k.startswith("test_own_assertions")}
    assert own.pop("test_own_assertions[fault:none]") == "PASSED"
    assert len(own) == 2 and set(own.values()) == {"FAILED"}  # EOFError/BrokenPipe: its own verdict


def test_an_unobserved_background_crash_fails_the_variant(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import asyncio, json
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session", faults="crash", faults_deadline=3)
        async def test_async_client(fake_codex, codex_fault):
            if codex_fault is None or codex_fault.point > 2:
                pytest.skip("this client stops after initialize: only a crash before its answer is of use")
            handle = fake_codex.handle()          # in-process fake, in this event loop
            answered = []

            async def reader():
                async for line in handle.stdout:
                    answered.append(json.loads(line))
                if not answered:
                    raise ConnectionError("codex died before answering initialize")

            task = asyncio.create_task(reader())   # never awaited: a crash nobody sees
            handle.stdin.write(json.dumps({"id": 1, "method": "initialize",
                                           "params": {"clientInfo": {"name": "inner"}}}).encode() + b"\\n")
            for _ in range(100):
                if task.done() or answered:
                    break
                await asyncio.sleep(0.01)
            handle.stdin.close()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    got = outcomes(result)
    assert got["test_async_client[fault:crash-2]"] == got["test_async_client[fault:crash-2:closed]"] == "FAILED"
    result.stdout.fnmatch_lines(["*after crash at cassette line 2 (after client initialize (id 1)) the client "
                                 "crashed in the background: *ConnectionError*codex died before answering "
                                 "initialize*"])
    assert result.parseoutcomes() == {"failed": 2, "skipped": 9}


def test_command_line_option_samples_the_same_variants_on_every_xdist_worker(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import pytest
        from inner_client import session

        @pytest.mark.codex_cassette("session")
        def test_client(fake_codex):
            session(fake_codex.argv)

        def test_without_a_cassette():
            pass
    """)
    args = ("-p", "no:cacheprovider", "--codex-faults=all", "--codex-faults-max=5", "--codex-faults-deadline=2")
    listed = pytester.runpytest(*args, "--collect-only", "-q").outlines
    ids = sorted(line for line in listed if "test_client[" in line)
    assert len(ids) == 6 and "test_inner.py::test_client[fault:none]" in ids
    assert len({re.search(r"fault:([a-z-]+)", i).group(1) for i in ids}) == 6   # five kinds and none
    assert "test_inner.py::test_without_a_cassette" in listed
    result = pytester.runpytest_subprocess(*args, "-n", "2", "-rA")
    assert sorted(f"test_inner.py::{k}" for k in outcomes(result) if k.startswith("test_client")) == ids


def test_an_unknown_kind_is_a_usage_error(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import pytest

        @pytest.mark.codex_cassette("session")
        def test_client(fake_codex):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--codex-faults=crash,stal")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--codex-faults: unknown fault kind(s) 'stal'; the kinds are all, crash, hangup*"])
    (pytester.path / "test_inner.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.codex_cassette("session", faults="drop,dup")
        def test_client(fake_codex):
            pass
    """))
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*unknown fault kind(s) 'dup'*(faults= on the marker of test_inner.py::test_client)*"])


@pytest.mark.asyncio
async def test_the_in_process_fake_refuses_writes_once_it_has_exited(tmp_path) -> None:
    """A crash variant in-process must look like a dead process to a client that writes next:
    EPIPE (BrokenPipeError), not a write that is taken and never answered."""
    import asyncio
    import json

    from fake_server import InProcessCodex
    from harness.faults.catalogue import catalogue
    from harness.faults.variants import build_variant
    from harness.format.cassette import load_cassette

    path = tmp_path / "session.jsonl"
    path.write_text(CASSETTE)
    source = load_cassette(path)
    crash = next(f for f in catalogue(source, ["crash"]) if f.id == "crash@3")   # right after initialize's answer
    fake = InProcessCodex(build_variant(source, crash))
    fake.stdin.write(json.dumps({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}})
                     .encode() + b"\n")
    assert json.loads(await asyncio.wait_for(fake.stdout.readline(), 5))["id"] == 1
    assert await fake.wait(5) == 1 and await fake.stdout.readline() == b""
    with pytest.raises(BrokenPipeError):
        fake.stdin.write(b'{"method": "initialized"}\n')
        await fake.stdin.drain()


def test_a_parametrized_test_sweeps_each_case_from_its_own_cassette(pytester: pytest.Pytester) -> None:
    """The sweep names a case's cassette as its fixture will (``Class.test[params]``, unsafe
    characters replaced), so each case gets the faults of its own cassette; a name on the marker wins."""
    project(pytester, """
        import pytest
        from inner_client import session

        def run(fake_codex, codex_fault, cassette):
            assert codex_fault is None or codex_fault.cassette.name == cassette
            try:
                session(fake_codex.argv)
            except (EOFError, OSError):
                assert codex_fault is not None   # a crash, and the client noticed it

        @pytest.mark.parametrize("case", ["a", "b"])
        def test_x(fake_codex, codex_fault, case):
            run(fake_codex, codex_fault, f"test_x[{case}].jsonl")

        class TestK:
            @pytest.mark.parametrize("who", ["x:y"])
            def test_y(self, fake_codex, codex_fault, who):
                run(fake_codex, codex_fault, "TestK.test_y[x-y].jsonl")

        @pytest.mark.codex_cassette("session")
        @pytest.mark.parametrize("n", [1, 2])
        def test_named(fake_codex, codex_fault, n):
            run(fake_codex, codex_fault, "session.jsonl")
    """)
    directory = pytester.path / "cassettes" / "test_inner"
    lines = CASSETTE.splitlines()
    # case b's codex says one thing more after thread/started: one more point to crash at
    extra = '{"i":7,"from":"server","t":0.35,"msg":{"method":"thread/status/changed","params":{"threadId":"thr_1"}}}'
    longer = lines[:7] + [extra] + [line.replace('"i":7,', '"i":8,').replace('"i":8,"from":"server"', '"i":9,"from":"server"')
                                    for line in lines[7:]]
    (directory / "test_x[a].jsonl").write_text(CASSETTE)
    (directory / "test_x[b].jsonl").write_text("\n".join(longer) + "\n")
    (directory / "TestK.test_y[x-y].jsonl").write_text(CASSETTE)
    args = ("-p", "no:cacheprovider", "--codex-faults=crash", "--codex-faults-deadline=2")
    listed = pytester.runpytest(*args, "--collect-only", "-q", "-W", "error::pytest.PytestWarning").outlines
    ids = {line.split("::", 1)[1] for line in listed if line.startswith("test_inner.py::")}
    a_points = {"2", "3", "5", "6", "7"}
    assert {i for i in ids if i.startswith("test_x[a-")} == {"test_x[a-fault:none]"} | {
        f"test_x[a-fault:crash-{n}{v}]" for n in a_points for v in ("", ":closed")}
    assert {i for i in ids if i.startswith("test_x[b-")} == {"test_x[b-fault:none]"} | {
        f"test_x[b-fault:crash-{n}{v}]" for n in a_points | {"8"} for v in ("", ":closed")}
    assert "TestK::test_y[x:y-fault:crash-7:closed]" in ids
    assert {"test_named[1-fault:crash-2]", "test_named[2-fault:crash-2]"} <= ids
    result = pytester.runpytest(*args, "--codex-faults-max=2", "-rA")
    got = outcomes(result)
    assert len(got) == 5 * 3 and set(got.values()) == {"PASSED"}, result.stdout.str()


def test_a_variant_is_never_built_from_another_cassettes_faults(pytester: pytest.Pytester) -> None:
    """A cassette directory that differs between collection and setup: the sweep's faults came
    from one cassette, the fixture would serve another; the variant says so instead of running."""
    project(pytester, """
        import pytest
        from inner_client import session

        @pytest.fixture
        def codex_cassette_dir(request):
            return request.path.parent / "cassettes" / ("test_inner" if "[" not in request.node.name else "other")

        @pytest.mark.codex_cassette("session", faults="crash", faults_max=1, faults_deadline=2)
        def test_client(fake_codex):
            session(fake_codex.argv)
    """)
    (pytester.path / "cassettes" / "other").mkdir()
    (pytester.path / "cassettes" / "other" / "session.jsonl").write_text(CASSETTE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    got = outcomes(result)
    assert got.pop("test_client[fault:none]") == "PASSED" and list(got.values()) == ["ERROR"]
    result.stdout.fnmatch_lines(["*the fault sweep read its faults from *test_inner?session.jsonl while collecting, "
                                 "but the fixture serves *other?session.jsonl; name the cassette on the "
                                 "codex_cassette marker*"])
