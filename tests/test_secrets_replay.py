"""Symmetric redaction, on real parts: the openai-codex SDK logs in to the real codex
(offline) with an API key through the recording proxy, then the same client replays the
cassette against every kind of fake. The cassette holds markers, the live client sends
the secrets, and the replay passes; a replay that diverges never says the secrets back
(not in the JSON-RPC error, its data, the fake's stderr, nor the report).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

openai_codex = pytest.importorskip("openai_codex")
from openai_codex import Codex, CodexConfig  # noqa: E402
from openai_codex.errors import JsonRpcError  # noqa: E402

from fake_server import FakeCodexCommand  # noqa: E402
from fake_server.forkserver import ensure_server  # noqa: E402
from fake_server.inprocess import InProcessCodex  # noqa: E402
from harness.format.cassette import load_cassette  # noqa: E402
from harness.live.session import LiveCodex, LiveScenario  # noqa: E402
from harness.replay.engine import DIVERGENCE_CODE  # noqa: E402
from harness.replay.options import ReplayOptions  # noqa: E402
from harness.replay.report import ReplayReport  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa_0123456789"  # made up
TOKEN = "opaque-7f3a9c2e1b5d"         # $MY_LLM_TOKEN while recording (a format no detector knows)
REPLAY_TOKEN = "opaque-0d4c8b2a6e91"  # $MY_LLM_TOKEN at replay: another value of the same variable
WAIT = 30.0
CLIENT_MESSAGES = 5  # initialize, initialized, account/login/start, account/read, thread/start


def sdk_session(argv: list[str], env: dict[str, str], workdir: Path, token: str,
                instructions: str = "Use the token {token} for the API.") -> str:
    """The client: log in with the key, read the account, start a thread whose
    instructions hold the token from the environment. The thread's id."""
    with Codex(CodexConfig(launch_args_override=tuple(argv), env=env, cwd=str(workdir))) as codex:
        codex.login_api_key(KEY)
        codex.account()
        return codex.thread_start(cwd=str(workdir), base_instructions=instructions.format(token=token)).id


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("recorded")
    cassette = root / "login.jsonl"
    with LiveCodex(LiveScenario.from_data({"name": "login"}, "<login>"), root=root / "live") as live:
        env = {**live.env, "MY_LLM_TOKEN": TOKEN,
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        argv = [sys.executable, "-m", "harness", "record", "-o", str(cassette), "--", *live.argv]
        thread_id = sdk_session(argv, env, live.workdir, TOKEN)
    yield cassette, thread_id


@pytest.mark.live
def test_the_cassette_names_its_rules_and_holds_no_secret(recorded: tuple[Path, str]) -> None:
    cassette, _ = recorded
    text = cassette.read_text()
    assert KEY not in text and TOKEN not in text
    c = load_cassette(cassette)
    rules = c.meta["redaction_rules"]
    assert rules["env"] == ["MY_LLM_TOKEN"]  # the variable's name: its value was found and replaced
    assert "openai_api_key" in rules["detectors"] and "secret_field" in rules["detectors"]
    login = next(e.msg for e in c.messages("client") if e.msg.get("method") == "account/login/start")
    assert login["params"]["apiKey"] == "{{redacted:api_key}}"
    start = next(e.msg for e in c.messages("client") if e.msg.get("method") == "thread/start")
    assert start["params"]["baseInstructions"] == "Use the token {{redacted:env:MY_LLM_TOKEN}} for the API."


def replay_env(token: str) -> dict[str, str]:
    return FakeCodexCommand(Path("-")).env({**os.environ, "MY_LLM_TOKEN": token})


@pytest.mark.live
@pytest.mark.parametrize("warm", [False, True], ids=["subprocess", "fork-server"])
def test_the_same_client_replays_with_its_live_secrets(recorded: tuple[Path, str], tmp_path: Path,
                                                       warm: bool) -> None:
    cassette, thread_id = recorded
    report = tmp_path / "report.json"
    command = FakeCodexCommand(cassette, report=report, timeout=10)
    if warm:
        server = ensure_server()
        assert server is not None and server.wait_ready(WAIT)
    argv = command.argv() if warm else command.cold_argv()
    assert (argv[0] != sys.executable or "-S" in argv) and ("_launch" in " ".join(argv)) == warm
    # The key, and the variable's value at replay (not the recorded one), match the markers.
    assert sdk_session(argv, replay_env(REPLAY_TOKEN), tmp_path, REPLAY_TOKEN) == thread_id
    result = ReplayReport.read(report)
    # Every client message matched. (The SDK's close() SIGTERMs the fake right after closing
    # its stdin, so the fake may stop before it reads that end: "stopped", nothing diverged.)
    assert result.status in ("ok", "stopped") and result.divergence is None, result.summary()
    # A fake that heard the end of stdin before the signal counts it as matched too; an "ok"
    # fake always heard it.
    assert result.matched in (CLIENT_MESSAGES, CLIENT_MESSAGES + 1), result.summary()
    assert result.status != "ok" or result.matched == CLIENT_MESSAGES + 1, result.summary()


@pytest.mark.live
@pytest.mark.asyncio
async def test_the_in_process_fake_matches_the_same_live_secrets(recorded: tuple[Path, str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What the SDK sent, with the secrets it held put back, to the in-process fake."""
    cassette, thread_id = recorded
    monkeypatch.setenv("MY_LLM_TOKEN", REPLAY_TOKEN)
    fake = InProcessCodex(cassette, ReplayOptions(timeout=10, linger=5))
    live = {"{{redacted:api_key}}": KEY, "{{redacted:env:MY_LLM_TOKEN}}": REPLAY_TOKEN, "{{cwd}}": "/work/replayed"}
    answers: dict[Any, Any] = {}
    for event in load_cassette(cassette).messages("client"):
        line = json.dumps(event.msg)
        for marker, value in live.items():
            line = line.replace(marker, value)
        assert KEY in line or "{{redacted" not in line
        fake.stdin.write(line.encode() + b"\n")
        await fake.stdin.drain()
        if "id" in event.msg:
            while event.msg["id"] not in answers:
                got = json.loads(await asyncio.wait_for(fake.stdout.__anext__(), WAIT))
                answers[got.get("id")] = got
    fake.stdin.close()
    assert await fake.wait(WAIT) == 0, fake.report.summary()
    assert any(isinstance(a.get("result"), dict) and a["result"].get("thread", {}).get("id") == thread_id
               for a in answers.values())


@pytest.mark.live
def test_a_diverging_replay_never_says_the_live_secrets(recorded: tuple[Path, str], tmp_path: Path) -> None:
    cassette, _ = recorded
    report, stderr = tmp_path / "report.json", tmp_path / "fake.stderr"
    command = FakeCodexCommand(cassette, report=report, timeout=10)
    # The fake's stderr, as a CI log would keep it.
    argv = ["/bin/sh", "-c", f'exec "$@" 2>{shlex.quote(str(stderr))}', "sh", *command.cold_argv()]
    changed = "Now use {token} and " + KEY + " differently."
    with pytest.raises(JsonRpcError) as info:
        sdk_session(argv, replay_env(REPLAY_TOKEN), tmp_path, REPLAY_TOKEN, instructions=changed)
    err = info.value
    assert err.code == DIVERGENCE_CODE and "thread/start" in err.message
    said = json.dumps({"message": err.message, "data": err.data}) + stderr.read_text() + report.read_text()
    for secret in (KEY, REPLAY_TOKEN, TOKEN):
        assert secret not in said, f"{secret!r} was said back"
    # The difference itself is still told, with markers where the secrets were.
    assert "{{redacted:env:MY_LLM_TOKEN}}" in err.message and "differently" in err.message
    result = ReplayReport.read(report)
    assert result.status == "diverged" and "divergence" in stderr.read_text()


def test_the_fakes_own_errors_never_say_a_key_from_its_command_line(tmp_path: Path) -> None:
    import subprocess

    command = FakeCodexCommand(tmp_path / "missing.jsonl")
    for extra in (["-c", KEY], ["--bogus", KEY]):  # a config flag without '=', an unknown flag
        done = subprocess.run(command.cold_argv("app-server", *extra), env=command.env(), capture_output=True,
                              timeout=WAIT)
        assert done.returncode == 2, done.stderr
        assert KEY.encode() not in done.stderr and b"{{redacted:openai_api_key}}" in done.stderr, done.stderr


@pytest.mark.asyncio
async def test_a_scenario_names_its_rules_in_meta_and_its_markers_match_live_secrets(tmp_path: Path) -> None:
    import textwrap

    from harness.format.load import open_cassette

    token = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    path = tmp_path / "login.yaml"
    path.write_text(textwrap.dedent("""
        name: login
        meta:
          redaction_rules: {detectors: [github_token, secret_field]}
        steps:
          - expect: account/login/start
            params: {note: "use {{redacted:github_token}}", password: "{{redacted:password}}"}
            reply: {ok: true}
          - expect_close: true
    """).lstrip())
    fake = InProcessCodex(open_cassette(path), ReplayOptions(timeout=10, linger=5))
    fake.stdin.write(json.dumps({"id": 1, "method": "account/login/start",
                                 "params": {"note": f"use {token}", "password": "hunter2-x"}}).encode() + b"\n")
    await fake.stdin.drain()
    answer = json.loads(await asyncio.wait_for(fake.stdout.__anext__(), WAIT))
    fake.stdin.close()
    assert answer == {"id": 1, "result": {"ok": True}}
    assert await fake.wait(WAIT) == 0, fake.report.summary()
