"""Regression suite for optio-codex's CodexConversation 0.1.0, replayed from YAML scenarios.

Every case runs twice (see the `launch_mode` fixture): against the fake codex
in-process, and against the fake as a real subprocess launched by optio's host layer.
"""

import pytest


@pytest.mark.asyncio
@pytest.mark.codex_cassette("text_turn")
async def test_text_turn(optio, fake_codex):
    session = await optio(cwd="/work/x")
    assert session.conv.thread_id == "thr_1"
    answer = await session.turn("Say hello")
    assert answer == "Hello!"  # item/completed's text wins over the joined deltas "Hello"
    await session.close()
