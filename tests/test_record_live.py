"""The main job end to end: `codex-cassette record-live` runs the REAL codex binary
(offline, against the built-in mock model), `show` prints it, and the cassette
replays to the same built-in client through the fake codex."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from fake_server import FakeCodexCommand, InProcessCodex
from harness.format.cassette import load_cassette
from harness.live.client import ScriptedClient
from harness.live.session import LiveScenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "cassettes" / "live" / "approval.yaml"
CLI = [sys.executable, "-m", "harness"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live") / "approval.jsonl"
    done = subprocess.run([*CLI, "record-live", str(SCENARIO), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stderr and "codex 0.163.0" in done.stderr
    return out


@pytest.mark.live
def test_record_live_writes_a_complete_cassette_from_the_real_codex(recorded: Path):
    cassette = load_cassette(recorded)
    assert cassette.complete
    assert cassette.meta["codex_version"] == "0.163.0"
    assert cassette.meta["live"]["scenario"]["name"] == "command approval"
    server = [e.msg for e in cassette.messages("server")]
    thread = next(m["result"] for m in server if "result" in m and "thread" in m["result"])
    assert thread["modelProvider"] == "mock"
    approval = next(m for m in server if m.get("method") == "item/commandExecution/requestApproval")
    assert "echo hi" in approval["params"]["command"]
    decision = next(e.msg for e in cassette.messages("client") if e.msg.get("id") == approval["id"]
                    and "result" in e.msg)
    assert decision["result"] == {"decision": "accept"}
    completed = [m["params"]["turn"]["status"] for m in server if m.get("method") == "turn/completed"]
    assert completed == ["completed"]
    assert [e.kind for e in cassette.events[-3:]] == ["eof", "eof", "exit"] and cassette.events[-1].exit == 0
    text = recorded.read_text()
    for private in (str(Path.home()), "/tmp/"):
        assert private not in text, f"{private} leaked into the cassette"


@pytest.mark.live
def test_show_prints_the_timeline(recorded: Path):
    done = subprocess.run([*CLI, "show", str(recorded), "--width", "160"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "codex 0.163.0" in out and "client codex_cassette" in out
    assert "? " in out and "item/commandExecution/requestApproval" in out   # the approval, marked
    assert "✓ decision #0: accept" in out
    assert "item/agentMessage/delta ×" in out                                 # deltas folded
    assert "process exits: 0" in out


@pytest.mark.live
@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
async def test_the_live_cassette_replays_to_the_client_that_recorded_it(recorded: Path, mode: str, tmp_path: Path):
    cassette = load_cassette(recorded)
    scenario = LiveScenario.from_meta(cassette.meta, str(recorded))
    if mode == "inprocess":
        handle = InProcessCodex(cassette)
    else:
        report = tmp_path / "report.json"
        command = FakeCodexCommand(cassette=recorded, report=report)
        handle = await asyncio.create_subprocess_exec(*command.argv(), stdin=asyncio.subprocess.PIPE,
                                                      stdout=asyncio.subprocess.PIPE, env=command.env())
    client = ScriptedClient(handle, timeout=10)
    await client.start(scenario.codex, str(tmp_path))  # another cwd: {{cwd}} binds to it
    await client.run(scenario.client)
    await client.close()
    code = await asyncio.wait_for(handle.wait(), 10)
    assert code == 0
    if mode == "inprocess":
        assert handle.report.status == "ok", handle.report.summary()
    else:
        from harness.replay.report import ReplayReport
        final = ReplayReport.read(report)
        assert final.status == "ok", final.summary()
        assert final.bindings["cwd"] == str(tmp_path)
