"""The bugs the fault sweep found in real clients, each replayed from its committed variant.

Every case asserts what a sound client does under the fault. The clients pinned here
(optio-codex 0.1.0, openai-codex 0.163.0) do not, so each case is an expected failure
(xfail, strict) with the reason: CI stays green, `pytest -rx` lists the findings, and a
client that gets fixed turns its case into a failure that asks for the finding to be
updated. docs/faults.md tells the story of each; cassettes/faults/ holds the variants,
written by `codex-cassette faults --write-variants`.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.faults.oracle import SURVIVED, Verdict
from harness.faults.runner import Sweep
from harness.faults.variants import FaultTiming
from harness.format.load import open_cassette

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ROOT / "cassettes" / "faults"
CLIENTS = ROOT / "tests" / "fault_clients"
OPTIO = [sys.executable, str(CLIENTS / "optio_session.py"), "text_turn"]
SDK = [sys.executable, str(CLIENTS / "sdk_session.py")]
DEADLINE = 3.0


@dataclass
class Finding:
    variant: str          # under cassettes/faults/
    command: list[str]
    reason: str
    check: str = "ends"   # ends: within the deadline | completes: exit 0 | answers: -32601 to an unknown request

    def __str__(self) -> str:
        return self.variant


FINDINGS = [
    Finding("optio/text_turn.crash-23.jsonl", OPTIO,
            "optio-codex 0.1.0: codex dies mid-turn; the reader emits x-optio-closed, but on_message fires only "
            "on turn/completed, so the caller awaiting the answer waits for ever"),
    Finding("optio/text_turn.error-15.overloaded.jsonl", OPTIO,
            "optio-codex 0.1.0: turn/start answered with -32001 (server overloaded, retryable) is only logged; "
            "on_message never fires and nothing raises"),
    Finding("optio/text_turn.hangup-6.jsonl", OPTIO,
            "optio-host 0.2.7 launches codex through `/bin/sh -c`, and dash keeps its copy of codex's stdout "
            "open: codex closing stdout is never seen, bootstrap() waits for ever"),
    Finding("optio/text_turn.drop-29.jsonl", OPTIO,
            "optio-codex 0.1.0 has no turn timeout: a turn/completed that never comes is awaited for ever"),
    Finding("openai_sdk/approval.hangup-3.jsonl", [*SDK, "--pause", "0.5"],
            "openai-codex 0.163.0: once its reader thread has seen stdout end (fail_all), a request sent after "
            "that registers a waiter nobody will ever wake: thread_start() waits for ever"),
    Finding("openai_sdk/approval.drop-46.jsonl", SDK,
            "openai-codex 0.163.0 has no turn timeout: without turn/completed, Thread.run waits for ever"),
    Finding("openai_sdk/approval.garbage-15.jsonl", SDK,
            "openai-codex 0.163.0: one non-JSON line on codex's stdout kills the reader thread (CodexError "
            "'Invalid JSON-RPC line'): the whole session ends", check="completes"),
    Finding("openai_sdk/approval.unknown-request-15.jsonl", SDK,
            "openai-codex 0.163.0 hands every server request, whatever its method, to the approval handler and "
            "sends back what it returns as a result; it never answers -32601", check="answers"),
]


def replay(finding: Finding, tmp_path: Path) -> Verdict:
    cassette = open_cassette(FAULTS / finding.variant)
    return Sweep(cassette, finding.command, tmp_path, FaultTiming(DEADLINE), cwd=tmp_path).clean_run()


@pytest.mark.parametrize("finding", [
    pytest.param(f, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=f.reason), id=str(f))
    for f in FINDINGS])
def test_finding(finding: Finding, tmp_path: Path) -> None:
    verdict = replay(finding, tmp_path)
    what = open_cassette(FAULTS / finding.variant).meta["fault"]["what"]
    assert verdict.outcome == SURVIVED, f"after {what} the client {verdict.outcome} ({verdict.deadline:g} s)"
    if finding.check == "completes":
        assert verdict.exit_code == 0, f"after {what} the session did not complete: {verdict.said}"
    if finding.check == "answers":
        assert not verdict.server, verdict.server


@pytest.mark.asyncio
@pytest.mark.xfail(strict=True, raises=asyncio.TimeoutError,
                   reason="optio-codex 0.1.0 fails the requests in flight when codex's stdout ends, but the next "
                          "request bootstrap() makes after that is never answered")
@pytest.mark.codex_cassette("optio/text_turn.crash-8.closed", strict=False)
async def test_optio_request_after_the_end_of_stdout(fake_codex, optio_start) -> None:
    """Deterministic in-process (in a subprocess it is a race): codex answers account/read,
    closes stdout and lives 0.2 s more; optio's model/list request is sent into that gap."""
    from optio_agents.conversation import ConversationClosed

    session = await optio_start(fake_codex.handle(), bootstrap=False)
    with pytest.raises(ConversationClosed):
        await asyncio.wait_for(session.conv.bootstrap(), DEADLINE)


@pytest.fixture
def codex_cassette_dir() -> Path:
    return FAULTS
