"""The cassettes shipped in cassettes/, recorded from the real codex 0.163.0 (offline,
against the mock model) by the clients that replay them here.

By default (record mode none) each test replays its cassette to the real driver.
`pytest tests/test_shipped_cassettes.py --codex-record-mode=all` re-records them all
from the pinned codex; the same test bodies then assert on the live session.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIVE = ROOT / "cassettes" / "live"


@pytest.fixture
def codex_cassette_dir() -> Path:
    return ROOT / "cassettes"


@pytest.fixture
def optio_session(codex_app_server, optio_start):
    async def start(**kwargs):
        handle = await codex_app_server.handle()
        return await optio_start(handle, cwd=codex_app_server.cwd, **kwargs)
    return start


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/approval_accepted", live=str(LIVE / "approval.yaml"))
async def test_optio_approval_accepted(optio_session):
    from optio_agents.conversation import PermissionDecision

    session = await optio_session(permission_gate=True)
    asked = []

    async def allow(request):
        asked.append(request.tool_name)
        return PermissionDecision(behavior="allow")

    session.conv.on_permission_request(allow)
    answer = await session.turn("Run echo hi")
    assert answer == "The command printed hi."
    assert asked and "echo hi" in asked[0]
    completed = [e for e in session.events if e.get("method") == "item/completed"
                 and (e["params"]["item"].get("type") == "commandExecution")]
    assert completed and completed[0]["params"]["item"]["status"] == "completed"
    await session.close()
