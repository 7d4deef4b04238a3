"""Record modes of the pytest plugin (`--codex-record-mode`), run as a user would:
inner test files executed by pytester in a subprocess. The "real codex" they record
from is a `codex` executable (the fake serving a scenario) passed with --codex-bin,
so these tests need no network and no model; tests/test_shipped_cassettes.py and
tests/test_record_live.py record from the real binary, and tests/test_optio_driver.py drives the optio driver.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_server import FakeCodexCommand, write_bin_dir
from harness.format.cassette import load_cassette

pytest_plugins = ["pytester"]

SCENARIO = Path(__file__).parent / "data" / "hello.yaml"

INNER = '''
import os, pytest
from harness.live.client import ScriptedClient


async def drive(codex_app_server):
    client = ScriptedClient(await codex_app_server.handle(), timeout=10)
    await client.start({}, "/work/project")
    await client.run([{"turn": "Say hello"}])
    await client.close()
    with open(os.environ["MODE_LOG"], "a") as log:
        log.write(codex_app_server.mode + "\\n")
    deltas = [m["params"]["delta"] for m in client.log if m.get("method") == "item/agentMessage/delta"]
    return "".join(deltas)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("session")
async def test_one(codex_app_server):
    assert await drive(codex_app_server) == "Hello!"
'''

SECOND = '''

@pytest.mark.asyncio
@pytest.mark.codex_cassette("session")
async def test_two(codex_app_server):
    assert await drive(codex_app_server) == "Hello!"
'''


@pytest.fixture
def inner(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An inner project: the test file, a fake 'real codex', and a log of the modes used."""
    codex = write_bin_dir(tmp_path / "realbin", FakeCodexCommand(cassette=SCENARIO)) / "codex"
    log = tmp_path / "modes.log"
    monkeypatch.setenv("MODE_LOG", str(log))
    pytester.makeini("[pytest]\nasyncio_mode = strict\n")

    def run(*args: str, tests: str = INNER):
        pytester.makepyfile(test_inner=tests)
        result = pytester.runpytest_subprocess(f"--codex-bin={codex}", "-p", "no:cacheprovider", *args,
                                               timeout=120)
        modes = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return result, modes

    run.cassette = pytester.path / "cassettes" / "test_inner" / "session.jsonl"
    return run


def test_none_is_the_default_and_never_records(inner):
    result, modes = inner()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no cassette 'session'*record mode 'none'*--codex-record-mode=once*"])
    assert modes == []
    assert not inner.cassette.exists()


def test_once_records_a_missing_cassette_then_replays_it(inner):
    result, modes = inner("--codex-record-mode=once")
    result.assert_outcomes(passed=1)
    assert modes == ["record"]
    cassette = load_cassette(inner.cassette)
    assert cassette.complete
    methods = [e.msg.get("method") for e in cassette.events if e.msg and e.side == "client"]
    assert methods == ["initialize", "initialized", "thread/start", "turn/start"]
    assert cassette.meta["client"]["name"] == "codex_cassette"
    assert [e.kind for e in cassette.events[-3:]] == ["eof", "eof", "exit"]

    result, modes = inner("--codex-record-mode=once")
    result.assert_outcomes(passed=1)
    assert modes == ["replay"]
    result, modes = inner()  # none: replay of what was recorded
    result.assert_outcomes(passed=1)
    assert modes == ["replay"]


def test_all_rerecords_and_new_rerecords_only_incomplete(inner):
    inner("--codex-record-mode=once")
    first = load_cassette(inner.cassette).meta["recorded_at"]
    mtime = inner.cassette.stat().st_mtime_ns

    result, modes = inner("--codex-record-mode=new")
    result.assert_outcomes(passed=1)
    assert modes == ["replay"] and inner.cassette.stat().st_mtime_ns == mtime

    result, modes = inner("--codex-record-mode=all")
    result.assert_outcomes(passed=1)
    assert modes == ["record"] and inner.cassette.stat().st_mtime_ns != mtime
    assert load_cassette(inner.cassette).meta["recorded_at"] >= first

    # A cassette cut short is re-recorded by "new".
    lines = inner.cassette.read_text().splitlines()
    lines[0] = lines[0].replace('"complete":true', '"complete":false')
    inner.cassette.write_text("\n".join(lines[:6]) + "\n")
    result, modes = inner("--codex-record-mode=new")
    result.assert_outcomes(passed=1)
    assert modes == ["record"]
    assert load_cassette(inner.cassette).complete


def test_parallel_workers_never_record_the_same_cassette_twice(inner):
    result, modes = inner("--codex-record-mode=once", "-n", "2", tests=INNER + SECOND)
    result.assert_outcomes(passed=2)
    assert sorted(modes) == ["record", "replay"]
    assert load_cassette(inner.cassette).complete
    # Nothing but the cassette stays beside it: no lock, no partial, no temporary file.
    assert sorted(p.name for p in inner.cassette.parent.iterdir()) == ["session.jsonl"]


def test_a_wrong_record_mode_is_refused(inner):
    result, _ = inner("--codex-record-mode=sometimes")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--codex-record-mode*invalid choice*sometimes*"])


# The same session, its client launching the recorder's command line itself (the proxy).
AS_COMMAND = INNER.replace(
    "client = ScriptedClient(await codex_app_server.handle(), timeout=10)",
    "import asyncio\n"
    "    proc = await asyncio.create_subprocess_exec(*codex_app_server.argv, env=codex_app_server.env,\n"
    "                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)\n"
    "    client = ScriptedClient(proc, timeout=10)").replace(
    "    await client.close()\n", "    await client.close()\n    await asyncio.wait_for(proc.wait(), 30)\n")


@pytest.mark.parametrize("tests", [INNER, AS_COMMAND], ids=["in-process", "as-command"])
def test_a_test_that_fails_while_recording_leaves_its_cassette_incomplete_so_new_records_it(inner, tests):
    failing = tests.replace('assert await drive(codex_app_server) == "Hello!"',
                            'assert await drive(codex_app_server) == "Goodbye!"')
    result, modes = inner("--codex-record-mode=once", tests=failing)
    result.assert_outcomes(failed=1)
    assert modes == ["record"]
    cassette = load_cassette(inner.cassette)
    assert cassette.meta["recorder"] == ("proxy" if tests is AS_COMMAND else "in-process")
    assert not cassette.complete
    assert cassette.meta["end"].startswith("the test failed while recording (test_inner.py::test_one)")
    assert [e.kind for e in cassette.events[-3:]] == ["eof", "eof", "exit"]  # the session itself was whole

    result, modes = inner("--codex-record-mode=new", tests=tests)
    result.assert_outcomes(passed=1)
    assert modes == ["record"]
    again = load_cassette(inner.cassette)
    assert again.complete and again.meta["end"] == "clean"


# A session already cut short by its recorder, then the test fails: docs/recording.md puts the
# test's failure first in `end`, the recording's own end kept after it, whatever the door.
CUT_SHORT = {
    # the client signals its codex (the proxy) while still connected
    "as-command": (AS_COMMAND.replace(
        "    await client.close()\n",
        "    proc.terminate()\n    await asyncio.wait_for(proc.wait(), 30)\n    await client.close()\n"),
        "the recorder got SIGTERM and passed it on to the server"),
    # the server killed before the client hung up
    "in-process": (INNER.replace(
        "    await client.close()\n",
        "    handle.kill()\n    await asyncio.wait_for(handle.wait(), 30)\n").replace(
        "    client = ScriptedClient(await codex_app_server.handle(), timeout=10)",
        "    import asyncio\n    handle = await codex_app_server.handle()\n"
        "    client = ScriptedClient(handle, timeout=10)"),
        "the server ended by SIGKILL"),
}


@pytest.mark.parametrize("door", sorted(CUT_SHORT))
def test_a_failed_test_comes_first_in_the_end_of_a_cassette_already_cut_short(inner, door):
    tests, own_end = CUT_SHORT[door]
    failing = tests.replace('assert await drive(codex_app_server) == "Hello!"',
                            'assert await drive(codex_app_server) == "Goodbye!"')
    result, modes = inner("--codex-record-mode=once", tests=failing)
    result.assert_outcomes(failed=1)
    end = load_cassette(inner.cassette).meta["end"]
    assert end.startswith("the test failed while recording (test_inner.py::test_one)"), end
    assert end.endswith("; the recording itself ended so: " + own_end), end
