"""The client's own secret comes back to it at replay (issue 21, item 3), on real parts.

optio-codex's CodexConversation sends a prompt holding two API keys of one kind through the
recording proxy to the real codex (offline, the mock model scripted to run a command that
echoes them: codex asks for approval with that command). The cassette holds markers
(``{{redacted:openai_api_key}}`` and ``...#2``, one per key), never a key. Replayed by the real
fake to the same driver, the approval request the driver sees holds the keys again, each in
its place, exactly as it saw it live; no file and no report holds a key.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optio_codex")
from optio_agents.conversation import PermissionDecision, PermissionRequest  # noqa: E402
from optio_codex.conversation import CodexConversation  # noqa: E402
from optio_host.host import LocalHost  # noqa: E402

from fake_server import FakeCodexCommand  # noqa: E402
from harness.format.cassette import load_cassette  # noqa: E402
from harness.live.session import LiveCodex, LiveScenario  # noqa: E402
from harness.replay.report import ReplayReport  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-proj-Qw3rTy7uIo9pAs2dFg4hJk6LzXcVbNm1_23"   # made up
KEY2 = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe_45"  # another of the same kind
PROMPT = f"Check that the key {KEY} works, then the key {KEY2}"
COMMAND = f"echo {KEY} # key {KEY2}"
ANSWER = "Both keys were echoed."
WAIT = 30.0
SCENARIO = {"name": "key echoed", "codex": {"approval_policy": "on-request", "sandbox_mode": "read-only"},
            "model": [{"shell": {"cmd": COMMAND, "justification": "to check the keys"}}, {"text": ANSWER}]}


async def drive(argv: list[str], env: dict[str, str], cwd: Path, host_dir: Path) -> list[str]:
    """optio's driver: one turn with the prompt, every approval allowed; the commands it was asked about."""
    host = LocalHost(str(host_dir))
    os.makedirs(host.workdir, exist_ok=True)
    raw = await host.launch_subprocess(" ".join(map(str, argv)), env=env, stdin=True, merge_stderr=False,
                                       cwd=str(cwd))
    conv = CodexConversation(cwd=str(cwd), permission_gate=True)
    conv.attach(raw)
    asked: list[str] = []

    async def allow(request: PermissionRequest) -> PermissionDecision:
        asked.append(request.tool_name)
        return PermissionDecision(behavior="allow")
    conv.on_permission_request(allow)
    answers: asyncio.Queue[str] = asyncio.Queue()
    conv.on_message(answers.put_nowait)
    reader = asyncio.create_task(conv.run_reader())
    try:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
        await conv.send(PROMPT)
        assert await asyncio.wait_for(answers.get(), WAIT) == ANSWER
    finally:
        raw.stdin.close()
        await asyncio.wait_for(reader, WAIT)
        try:
            await asyncio.wait_for(raw.pid_like.wait(), WAIT)
        finally:
            if raw.pid_like.returncode is None:
                await host.terminate_subprocess(raw, aggressive=True)
    return asked


def files_under(root: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.live
@pytest.mark.asyncio
async def test_the_driver_sees_the_same_command_at_replay_as_live(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cassette, report = out / "keys.jsonl", out / "report.json"
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    async with LiveCodex(LiveScenario.from_data(SCENARIO, "<keys>"), root=tmp_path / "live") as live:
        env = {**live.env, "PYTHONPATH": pythonpath}
        record = [sys.executable, "-m", "harness", "record", "-o", str(cassette), "--", *live.argv]
        asked_live = await drive(record, env, live.workdir, tmp_path / "host1")
    assert len(asked_live) == 1 and COMMAND in asked_live[0]  # codex asked about the command (in a shell)

    text = cassette.read_text()
    assert KEY not in text and KEY2 not in text
    c = load_cassette(cassette)
    approval = next(e.msg for e in c.messages("server") if e.msg.get("method") == "item/commandExecution/requestApproval")
    assert "echo {{redacted:openai_api_key}} # key {{redacted:openai_api_key#2}}" in approval["params"]["command"]

    # The fake, as a subprocess, to the same driver elsewhere: the keys come back, each in its place.
    fake = FakeCodexCommand(cassette, report=report, timeout=10)
    replay_env = fake.env({**os.environ, "PYTHONPATH": pythonpath})
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    asked_replay = await drive(fake.cold_argv(), replay_env, workdir, tmp_path / "host2")
    assert asked_replay == asked_live
    result = ReplayReport.read(report)
    assert result.status in ("ok", "stopped") and result.divergence is None, result.summary()
    # No file (cassette, report) and no report field holds a key.
    written = files_under(out)
    assert KEY not in written and KEY2 not in written
    assert KEY not in json.dumps(result.to_json()) and KEY2 not in json.dumps(result.to_json())
