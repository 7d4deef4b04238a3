"""Recording reaches every client that replay reaches (issue 26): each door of
`codex_app_server` (`.argv`, `.env`, `.bin_dir`, `CODEX_BIN` through `.bin_dir`,
`await .handle()`), driven by a real client (optio-codex's CodexConversation, the
openai-codex SDK), records a complete cassette from the real pinned codex (offline,
against the mock model) in mode `once`, and the same test then replays it green in mode
`none`. The socket door (`.url`) is recorded and replayed the same way in
tests/test_socket_plugin.py. A recording test whose client never reaches the recorder fails,
naming the doors.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.format.cassette import load_cassette

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "cassettes" / "live" / "optio_text.yaml"   # one turn: "Hello from the mock"
ANSWER = "Hello from the mock"

DOORS = '''
import asyncio, os, shlex
from pathlib import Path

import pytest
from openai_codex import Codex, CodexConfig
from optio_codex.conversation import CodexConversation
from optio_host.host import LocalHost

WAIT = 30.0
pytestmark = pytest.mark.codex_cassette(live={scenario!r})


async def optio_turn(handle, cwd, host=None):
    """optio-codex's driver on a handle: bootstrap, one turn, hang up, wait for codex to exit."""
    conv = CodexConversation(cwd=cwd)
    said, methods, changed = [], [], asyncio.Event()
    conv.on_message(lambda text: (said.append(text), changed.set()))
    conv.on_event(lambda obj: (methods.append(obj.get("method")), changed.set()))
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    await asyncio.wait_for(conv.bootstrap(), WAIT)
    await conv.send("Say hello")

    async def until_done():
        while not (said and "turn/completed" in methods):
            changed.clear()
            await changed.wait()
    await asyncio.wait_for(until_done(), WAIT)
    handle.stdin.close()
    await asyncio.wait_for(reader, WAIT)
    if host is not None:
        assert await asyncio.wait_for(handle.pid_like.wait(), WAIT) == 0
    elif hasattr(handle, "wait"):
        await asyncio.wait_for(handle.wait(), WAIT)
    return said[0]


async def optio_launched(command, env, tmp_path, cwd):
    """optio's host layer launches the command line, as optio-codex's session does."""
    host = LocalHost(str(tmp_path / "host"))
    os.makedirs(host.workdir, exist_ok=True)
    handle = await host.launch_subprocess(command, env=env, stdin=True, merge_stderr=False)
    return await optio_turn(handle, cwd, host)


def sdk_turn(config, cwd):
    """The openai-codex SDK in a worker thread (it has no timeouts of its own), bounded."""
    import concurrent.futures

    def run():
        with Codex(config) as codex:   # leaving: close(), a hang-up then SIGTERM
            return codex.thread_start(cwd=cwd).run("Say hello").final_response
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(timeout=WAIT * 2)


@pytest.mark.asyncio
async def test_handle(codex_app_server):
    answer = await optio_turn(await codex_app_server.handle(), codex_app_server.cwd)
    print("DOOR handle", codex_app_server.mode, answer)


@pytest.mark.asyncio
async def test_env(codex_app_server, tmp_path):
    # A client that runs `codex app-server` from PATH, given the fixture's environment.
    answer = await optio_launched("codex app-server", codex_app_server.env, tmp_path, codex_app_server.cwd)
    print("DOOR env", codex_app_server.mode, answer)


@pytest.mark.asyncio
async def test_bin_dir(codex_app_server, tmp_path):
    # A client given a codex path that adds `app-server` and its own flags (optio-codex's session).
    command = shlex.join([str(codex_app_server.bin_dir / "codex"), "app-server", "-c", "hide_agent_reasoning=true"])
    answer = await optio_launched(command, None, tmp_path, codex_app_server.cwd)
    print("DOOR bin_dir", codex_app_server.mode, answer)


def test_argv(codex_app_server):
    # The command line alone: no environment from the fixture.
    config = CodexConfig(launch_args_override=tuple(codex_app_server.argv), cwd=codex_app_server.cwd)
    print("DOOR argv", codex_app_server.mode, sdk_turn(config, codex_app_server.cwd))


def test_codex_bin(codex_app_server, monkeypatch):
    # A client that reads $CODEX_BIN and appends `app-server --listen stdio://` itself.
    monkeypatch.setenv("CODEX_BIN", str(codex_app_server.bin_dir / "codex"))
    config = CodexConfig(codex_bin=os.environ["CODEX_BIN"], cwd=codex_app_server.cwd)
    print("DOOR codex_bin", codex_app_server.mode, sdk_turn(config, codex_app_server.cwd))
'''

NAMES = ["handle", "env", "bin_dir", "argv", "codex_bin"]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-s", *args, timeout=300)


@pytest.mark.live
def test_every_door_records_once_then_replays_with_the_same_client(pytester: pytest.Pytester) -> None:
    pytest.importorskip("openai_codex")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=DOORS.format(scenario=str(SCENARIO)))
    directory = pytester.path / "cassettes" / "test_inner"

    recorded = run(pytester, "--codex-record-mode=once")
    recorded.assert_outcomes(passed=len(NAMES))
    recorded.stdout.fnmatch_lines_random([f"*DOOR {name} record {ANSWER}*" for name in NAMES])
    for name in NAMES:
        cassette = load_cassette(directory / f"test_{name}.jsonl")
        assert cassette.complete and cassette.meta["end"] == "clean", (name, cassette.meta)
        assert cassette.meta["live"]["scenario"]["name"] == "optio text turn", name
        sent = [e.msg.get("method") for e in cassette.events if e.msg and e.side == "client"]
        assert "turn/start" in sent, (name, sent)
        assert cassette.meta["recorder"] == ("in-process" if name == "handle" else "proxy"), name
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"test_{name}.jsonl" for name in NAMES)
    # What the client gave codex reached it through the proxy: optio's `-c` flag, the SDK's --listen.
    assert load_cassette(directory / "test_bin_dir.jsonl").meta["command"][-2:] == ["-c", "hide_agent_reasoning=true"]
    assert load_cassette(directory / "test_codex_bin.jsonl").meta["command"][-3:] == ["app-server", "--listen",
                                                                                       "stdio://"]

    replayed = run(pytester)  # mode none
    replayed.assert_outcomes(passed=len(NAMES))
    replayed.stdout.fnmatch_lines_random([f"*DOOR {name} replay {ANSWER}*" for name in NAMES])


NEVER = '''
import subprocess, pytest

pytestmark = pytest.mark.codex_cassette(live={scenario!r})


def test_no_client(codex_app_server):
    # The recording `codex` carries the live environment, never a secret of this one.
    script = (codex_app_server.bin_dir / "codex").read_text()
    assert "CODEX_HOME=" in script and "OPENAI_API_KEY" in script.splitlines()[2]  # unset, by name
    assert {secrets!r}[0] not in script and {secrets!r}[1] not in script


def test_runs_the_real_codex_itself(codex_app_server):
    # Straight to the real binary: codex answers, nothing is recorded.
    out = subprocess.run([{real!r}, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0


def test_asks_the_recording_codex_its_version(codex_app_server):
    # Not app-server: the real codex answers, unrecorded, and that is no connection.
    out = subprocess.run(["codex", "--version"], env=codex_app_server.env, capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.startswith("codex-cli 0.163.0"), out
'''


@pytest.mark.live
def test_a_recording_test_whose_client_never_connected_fails_naming_the_doors(pytester: pytest.Pytester,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.live.binary import find_codex_binary

    secrets = ("sk-proj-" + "Q7tZ" * 8, "ghp_" + "x9Lm" * 9)
    monkeypatch.setenv("OPENAI_API_KEY", secrets[0])   # the live kit drops it
    monkeypatch.setenv("DEPLOY_TOKEN", secrets[1])     # kept, as it is, in the environment codex gets
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=NEVER.format(scenario=str(SCENARIO), real=str(find_codex_binary(None)),
                                                secrets=secrets))
    result = run(pytester, "--codex-record-mode=once")
    result.assert_outcomes(failed=3)  # one outcome per test: the teardown finding is the failure
    text = result.stdout.str()
    assert text.count("no client connected to codex_app_server while the test recorded") == 3, text
    for door in ("`.argv`", "`.env`", "`.bin_dir`", "CODEX_BIN", "`await .handle()`", "`.url`"):
        assert door in text, door
    assert not (pytester.path / "cassettes" / "test_inner").exists() or not any(
        (pytester.path / "cassettes" / "test_inner").iterdir())
