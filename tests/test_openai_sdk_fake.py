"""A second client: the official openai-codex Python SDK (0.163.0) against the
fake codex. It launches whatever argv it is given, picks UUID strings as
request ids, and validates every answer with pydantic models, so it checks
both the id mapping and that the scenario's shapes are what codex says."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

openai_codex = pytest.importorskip("openai_codex")
from openai_codex import AsyncCodex, Codex, CodexConfig  # noqa: E402
from openai_codex.errors import JsonRpcError  # noqa: E402

from harness.replay.engine import DIVERGENCE_CODE  # noqa: E402

SCENARIO = "openai_sdk_text_turn"
THREAD_ID = "019b2f3c-8a41-7e52-9c07-5d1e2f3a4b6c"
TURN_ID = "019b2f3c-9b10-7a01-8e11-0a1b2c3d4e01"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def config(fake_codex: Any, cwd: Path) -> CodexConfig:
    return CodexConfig(launch_args_override=tuple(fake_codex.argv), cwd=str(cwd))


@pytest.mark.codex_cassette(SCENARIO, timeout=5)
def test_sdk_thread_start_and_text_turn(fake_codex: Any, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    with Codex(config(fake_codex, workdir)) as codex:
        # initialize: the SDK reads the server's name and version from userAgent.
        assert codex.metadata.serverInfo.name == "codex_python_sdk"
        assert codex.metadata.serverInfo.version.startswith("0.163.0")
        thread = codex.thread_start(cwd=str(workdir))
        assert thread.id == THREAD_ID
        result = thread.run("Say hello to the world")
    assert result.id == TURN_ID
    assert result.status.value == "completed"
    assert result.final_response == "Hello, world."
    assert [item.root.type for item in result.items] == ["userMessage", "agentMessage"]
    assert result.usage.total.total_tokens == 1214
    assert result.duration_ms == 297

    report = fake_codex.report
    assert report.status in ("ok", "stopped"), report.summary()  # the SDK may SIGTERM a lingering fake
    assert report.played == report.total and not report.failed()
    assert report.bindings["cwd"] == str(workdir)


@pytest.mark.asyncio
@pytest.mark.codex_cassette(SCENARIO, timeout=5)
async def test_async_sdk_against_the_same_scenario(fake_codex: Any, tmp_path: Path) -> None:
    async def session() -> Any:
        async with AsyncCodex(config(fake_codex, tmp_path)) as codex:
            thread = await codex.thread_start(cwd=str(tmp_path))
            return await thread.run("Say hello to the world")

    result = await asyncio.wait_for(session(), 20)
    assert result.final_response == "Hello, world."
    assert not fake_codex.report.failed()


@pytest.mark.codex_cassette(SCENARIO, timeout=5)
def test_sdk_divergence_surfaces_as_a_readable_rpc_error(fake_codex: Any, tmp_path: Path) -> None:
    with Codex(config(fake_codex, tmp_path)) as codex:
        thread = codex.thread_start(cwd=str(tmp_path))
        with pytest.raises(JsonRpcError) as info:
            thread.run("Say goodbye instead")
    err = info.value
    assert err.code == DIVERGENCE_CODE
    assert "expected client turn/start" in err.message
    assert f"{SCENARIO}.yaml:33" in err.message                  # where the scenario expected it
    assert "Say hello to the world" in err.message and "Say goodbye instead" in err.message

    report = fake_codex.assert_diverged()                       # a broken client, on purpose
    assert report.divergence.expected_at.endswith(f"{SCENARIO}.yaml:33")
    # The SDK's request ids are UUID strings; the scenario's are 1, 2, 3.
    assert UUID.match(report.divergence.received["id"])
    assert report.divergence.expected["id"] == 3
