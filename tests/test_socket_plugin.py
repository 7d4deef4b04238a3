"""The plugin's socket transports as a user meets them: `transport="ws"` / `"unix"` on the marker
or in codex_cassette_config, and `.url` on fake_codex and codex_app_server, replaying and
recording alike. Inner test files run by pytester in a subprocess; the inner client is the
websockets library. The "real codex" recorded from here is the fake (which listens as codex
does) passed with --codex-bin; test_socket_live.py records the real one."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fake_server import FakeCodexCommand, write_bin_dir
from harness.format.cassette import load_cassette

pytest_plugins = ["pytester"]

SCENARIO = """
    meta: {codex_version: "0.163.0"}
    steps:
      - expect: initialize
        params: {clientInfo: {name: inner}}
        reply: {userAgent: "codex_cli_rs/0.163.0"}
      - expect: initialized
      - expect: thread/start
        params: {cwd: /work/inner}
        reply: {thread: {id: thr_1}}
      - notify: thread/started
        params: {thread: {id: thr_1}}
    """

CLIENT = '''
import asyncio, json
from websockets.asyncio.client import connect, unix_connect

SESSION = [
    {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}},
    {"method": "initialized"},
    {"id": 2, "method": "thread/start", "params": {"cwd": "/work/inner"}},
]


async def talk(url, messages=SESSION):
    if url.startswith("unix://"):
        ws = await unix_connect(url[len("unix://"):], uri="ws://localhost/", compression=None)
    else:
        assert url.startswith("ws://127.0.0.1:")
        ws = await connect(url, compression=None)
    got = []
    for msg in messages:
        await ws.send(json.dumps(msg))
    while not got or got[-1].get("method") != "thread/started":
        got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        if "error" in got[-1]:
            break
    await ws.close()
    return got
'''


def project(pytester: pytest.Pytester, body: str, cassette: bool = True) -> Path:
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(inner_client=CLIENT)
    pytester.makepyfile(test_inner=textwrap.dedent(body))
    directory = pytester.path / "cassettes" / "test_inner"
    directory.mkdir(parents=True, exist_ok=True)
    if cassette:
        (directory / "session.yaml").write_text(textwrap.dedent(SCENARIO).lstrip("\n"))
    return directory


def test_fake_codex_listens_where_the_marker_says(pytester: pytest.Pytester) -> None:
    project(pytester, '''
        import pytest
        from inner_client import talk

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session", transport="ws")
        async def test_ws(fake_codex):
            got = await talk(fake_codex.url)
            assert got[-1]["method"] == "thread/started"

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session", transport="unix")
        async def test_unix(fake_codex):
            got = await talk(fake_codex.url)
            assert got[1]["result"]["thread"]["id"] == "thr_1"

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session", transport="ws")
        async def test_diverges(fake_codex):
            wrong = [{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "other"}}}]
            got = await talk(fake_codex.url, wrong)
            assert got[-1]["error"]["code"] == -32099
        ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    outcomes = result.parseoutcomes()
    # The diverging test fails once: as it ends when the fake's report is in by then, else at teardown.
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 1, outcomes
    assert outcomes["passed"] == 3 - outcomes.get("failed", 0), outcomes
    result.stdout.fnmatch_lines(["*test_diverges*", "*diverged from the cassette*", "*expected client initialize*"])


def test_transport_in_codex_cassette_config_and_a_bad_one(pytester: pytest.Pytester) -> None:
    project(pytester, '''
        import pytest
        from inner_client import talk

        @pytest.fixture
        def codex_cassette_config():
            return {"transport": "unix"}

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session")
        async def test_from_config(fake_codex):
            assert fake_codex.url.startswith("unix://")
            await talk(fake_codex.url)

        @pytest.mark.codex_cassette("session", transport="tcp")
        def test_bad(fake_codex):
            pass
        ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*transport 'tcp' is not one of stdio, ws, unix*"])


@pytest.mark.parametrize("transport", ["ws", "unix"])
def test_codex_app_server_records_a_socket_once_then_replays_it(pytester: pytest.Pytester, tmp_path: Path,
                                                                transport: str) -> None:
    scenario = tmp_path / "real.yaml"
    scenario.write_text(textwrap.dedent(SCENARIO).lstrip("\n"))
    codex = write_bin_dir(tmp_path / "realbin", FakeCodexCommand(cassette=scenario, extra=["--linger=2"])) / "codex"
    directory = project(pytester, f'''
        import pytest
        from inner_client import talk

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session", transport="{transport}")
        async def test_session(codex_app_server):
            got = await talk(codex_app_server.url)
            assert got[-1]["method"] == "thread/started"
            print("MODE", codex_app_server.mode)
        ''', cassette=False)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(f"--codex-bin={codex}", "-p", "no:cacheprovider", "-q", "-s", *args,
                                             timeout=120)

    result = run("--codex-record-mode=once")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*MODE record*"])
    cassette = load_cassette(directory / "session.jsonl")
    assert (cassette.meta["complete"], cassette.meta["transport"]) == (True, transport)
    assert [e.msg.get("method") for e in cassette.events if e.msg and e.side == "client"] == [
        "initialize", "initialized", "thread/start"]
    result = run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*MODE replay*"])


LIVE_TEST = '''
import asyncio, json, pytest
from websockets.asyncio.client import connect


@pytest.mark.asyncio
@pytest.mark.codex_cassette("live_ws", transport="ws", live="{scenario}")
async def test_turn_over_ws(codex_app_server):
    ws = await connect(codex_app_server.url, compression=None, max_size=None)

    async def until(key, value):
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg.get(key) == value:
                return msg

    info = {{"name": "inner", "version": "1"}}
    await ws.send(json.dumps({{"id": 1, "method": "initialize", "params": {{"clientInfo": info}}}}))
    await until("id", 1)
    await ws.send(json.dumps({{"method": "initialized"}}))
    await ws.send(json.dumps({{"id": 2, "method": "thread/start", "params": {{"cwd": codex_app_server.cwd}}}}))
    started = await until("id", 2)
    assert "result" in started, started
    thread = started["result"]["thread"]["id"]
    await ws.send(json.dumps({{"id": 3, "method": "turn/start",
                              "params": {{"threadId": thread, "input": [{{"type": "text", "text": "Say hello"}}]}}}}))
    done = await until("method", "turn/completed")
    assert done["params"]["turn"]["status"] == "completed"
    await ws.close()
    print("MODE", codex_app_server.mode)
'''


@pytest.mark.live
def test_record_the_real_codex_over_ws_with_the_fixture_then_replay(pytester: pytest.Pytester) -> None:
    scenario = Path(__file__).parent.parent / "cassettes" / "live" / "text.yaml"
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=LIVE_TEST.format(scenario=scenario))
    recorded = pytester.runpytest_subprocess("--codex-record-mode=once", "-p", "no:cacheprovider", "-q", "-s",
                                             timeout=180)
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["*MODE record*"])
    cassette = load_cassette(pytester.path / "cassettes" / "test_inner" / "live_ws.jsonl")
    assert (cassette.meta["complete"], cassette.meta["transport"]) == (True, "ws")
    assert cassette.meta["live"]["scenario"]["name"] == "text turn"
    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-s", timeout=180)
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines(["*MODE replay*"])


def test_recording_a_socket_a_failed_test_leaves_incomplete_cassettes_one_never_connecting_fails(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    scenario = tmp_path / "real.yaml"
    scenario.write_text(textwrap.dedent(SCENARIO).lstrip("\n"))
    codex = write_bin_dir(tmp_path / "realbin", FakeCodexCommand(cassette=scenario, extra=["--linger=2"])) / "codex"
    directory = project(pytester, '''
        import pytest
        from inner_client import talk

        @pytest.mark.asyncio
        @pytest.mark.codex_cassette("session", transport="ws")
        async def test_session(codex_app_server):
            await talk(codex_app_server.url)
            assert False, "the test fails after a whole session"

        @pytest.mark.codex_cassette("quiet", transport="ws")
        def test_never_connects(codex_app_server):
            pass
        ''', cassette=False)
    result = pytester.runpytest_subprocess(f"--codex-bin={codex}", "-p", "no:cacheprovider", "-q",
                                           "--codex-record-mode=once", timeout=120)
    result.assert_outcomes(failed=2)  # one outcome per test
    result.stdout.fnmatch_lines(["*no client connected to codex_app_server while the test recorded, so nothing was "
                                 "recorded to *quiet.jsonl*doors: `.url` (the socket a WebSocket client connects to)*"])
    cassette = load_cassette(directory / "session.jsonl")
    assert not cassette.complete
    assert cassette.meta["end"].startswith("the test failed while recording (test_inner.py::test_session)")
