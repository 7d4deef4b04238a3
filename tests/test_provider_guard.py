"""An offline recording stops the moment codex reports a model provider other than
the mock: codex silently falls back to the real OpenAI provider on an invalid
config, and the next turn would reach for the internet. The "codex" here is the
fake serving such an answer, so no test ever runs a codex that could."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fake_server import FakeCodexCommand, InProcessCodex
from harness.format.cassette import load_cassette
from harness.live.client import LiveClientError, ScriptedClient
from harness.record.guard import ProviderGuard
from harness.record.handle import RecordingHandle

DATA = Path(__file__).parent / "data"
WAIT = 20


def proxy(tmp_path: Path, scenario: str) -> tuple[list[str], Path]:
    out = tmp_path / "rec.jsonl"
    fake = FakeCodexCommand(DATA / scenario, timeout=5)
    return [sys.executable, "-m", "harness", "record", "-o", str(out), "--require-model-provider", "mock",
            "--", *fake.argv()], out


HANDSHAKE = [{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "0"}}},
             {"method": "initialized"},
             {"id": 2, "method": "thread/start", "params": {"cwd": "/w", "sandbox": "read-only",
                                                            "approvalPolicy": "on-request"}}]


def test_the_proxy_stops_codex_before_the_client_hears_of_another_provider(tmp_path: Path) -> None:
    argv, out = proxy(tmp_path, "openai_provider.yaml")
    done = subprocess.run(argv, input="".join(json.dumps(m) + "\n" for m in HANDSHAKE), capture_output=True,
                          text=True, timeout=WAIT)
    assert done.returncode == 2
    assert "model provider 'openai', not 'mock'" in done.stderr and str(out) in done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a.get("id") for a in answers] == [1]          # initialize only: thread/start's answer held back
    cassette = load_cassette(out)
    assert not cassette.complete and "'openai'" in cassette.meta["end"]
    assert not any("openai" in json.dumps(e.msg) for e in cassette.messages("server"))


def test_the_proxy_lets_a_mock_provider_through(tmp_path: Path) -> None:
    argv, out = proxy(tmp_path, "hello.yaml")
    turn = {"id": 3, "method": "turn/start", "params": {"threadId": "thr_1",
                                                        "input": [{"type": "text", "text": "Say hello"}]}}
    done = subprocess.run(argv, input="".join(json.dumps(m) + "\n" for m in HANDSHAKE + [turn]),
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert load_cassette(out).complete


@pytest.mark.asyncio
async def test_in_process_recording_refuses_another_provider(tmp_path: Path) -> None:
    fake = InProcessCodex(DATA / "openai_provider.yaml")
    recorder = RecordingHandle(fake, tmp_path / "rec.jsonl", guard=ProviderGuard("mock"))
    client = ScriptedClient(recorder, timeout=5)
    with pytest.raises(LiveClientError):
        await client.start({}, str(tmp_path))
    assert client.thread_id is None
    assert not any(m.get("result", {}).get("modelProvider") for m in client.log)  # never delivered
    cassette = load_cassette(recorder.finish(complete=True))
    assert not cassette.complete and "not 'mock'" in cassette.meta["end"]
    await asyncio.wait_for(fake.wait(), WAIT)
