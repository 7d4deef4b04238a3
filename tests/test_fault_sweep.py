"""The fault sweep on the real clients, in CI: a seeded sample of every shipped cassette's variants.

Each test is an ordinary session of its client against a shipped cassette; the marker's
``faults="all"`` runs it once clean and once per sampled variant (``faults_max``). What the
client does under a fault is the sweep's to judge (docs/faults.md): it must end within the
deadline, whatever it concluded, with nothing crashed unnoticed. The clients' known bugs
are recorded as expected outcomes (``codex_fault.expect``: xfail, strict), so CI stays
green while the findings stay visible: `pytest tests/test_fault_sweep.py -rx` lists them,
and `--codex-faults-max 0` ... `--codex-faults-max 500` widens the sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.faults.catalogue import Fault
from harness.format.load import open_cassette

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 4  # seconds; a healthy session here takes well under one, its own waits are longer (10 s)

OPTIO_QUIET = "optio-codex 0.1.0 has no timeout: when codex goes quiet, a caller awaiting the answer waits for ever"
OPTIO_MIDTURN = ("optio-codex 0.1.0 fires on_message only on turn/completed: when codex goes away mid-turn, the "
                 "reader emits x-optio-closed but a caller awaiting the answer waits for ever")
OPTIO_AFTER_EOF = ("optio-codex 0.1.0 fails the requests in flight when stdout ends, but a request it makes after "
                   "that (the next step of bootstrap()) is never answered: it waits for ever")
OPTIO_REJECTED = ("optio-codex 0.1.0 only logs a rejected turn/start: on_message never fires, a caller awaiting "
                  "the answer waits for ever")
OPTIO_LOST = "optio-codex 0.1.0 has no turn timeout: a turn/completed that never comes is waited for for ever"
SDK_QUIET = "openai-codex 0.163.0 has no timeout: when codex goes quiet, Thread.run waits for ever"
SDK_LOST = "openai-codex 0.163.0 has no turn timeout: without turn/completed, Thread.run waits for ever"
SDK_RACE = ("openai-codex 0.163.0: a request sent after its reader thread saw the end of stdout (or a non-JSON "
            "line) waits for ever; whether it is sent after depends on thread timing")


@pytest.fixture
def codex_cassette_dir() -> Path:
    return ROOT / "cassettes"


def line_of(cassette: Any, method: str, result_key: str | None = None, side: str = "server") -> int:
    """The line of the first message of ``method`` from ``side`` (or the first response holding ``result_key``)."""
    for event in cassette.events:
        msg = event.msg if event.side == side and isinstance(event.msg, dict) else {}
        if msg.get("method") == method or (result_key and result_key in (msg.get("result") or {})):
            return event.line
    raise LookupError(method)


def answers_before(cassette: Any, line: int) -> set[int]:
    """The lines of the server's answers before ``line``."""
    return {e.line for e in cassette.events if e.side == "server" and isinstance(e.msg, dict)
            and "result" in e.msg and e.line < line}


def optio_expectation(fault: Fault, cassette: Any) -> str | None:
    """Why optio-codex 0.1.0 hangs under this fault, or None when it survives (docs/faults.md)."""
    thread = line_of(cassette, "", "thread")           # the thread/start answer: bootstrap is over
    asked = line_of(cassette, "turn/start", side="client")
    ack = line_of(cassette, "", "turn")                 # the turn/start answer
    completed = line_of(cassette, "turn/completed")
    gone = fault.kind == "hangup" or (fault.kind == "crash" and fault.variant == "closed")  # alive, stdout shut
    if fault.kind == "stall":
        return OPTIO_QUIET
    if fault.kind in ("crash", "hangup") and asked <= fault.point < completed:
        return OPTIO_MIDTURN
    if gone and fault.point in answers_before(cassette, thread):
        return OPTIO_AFTER_EOF
    if fault.kind == "error" and fault.point == ack:
        return OPTIO_REJECTED
    if fault.kind == "drop" and fault.point == completed:
        return OPTIO_LOST
    return None


def sdk_expectation(fault: Fault, cassette: Any) -> tuple[str, bool] | None:
    """Why the openai-codex SDK hangs under this fault (and whether it always does), or None."""
    completed = line_of(cassette, "turn/completed")
    if fault.kind == "stall":
        return SDK_QUIET, True
    if fault.kind == "drop" and fault.point == completed:
        return SDK_LOST, True
    if fault.kind in ("crash", "hangup", "garbage") and fault.point < line_of(cassette, "", "turn"):
        return SDK_RACE, False                       # between two requests of the set-up: a race
    return None


@pytest.fixture(autouse=True)
def known_outcomes(request: pytest.FixtureRequest) -> None:
    """The clients' known bugs, as expected outcomes; the tests themselves stay plain sessions."""
    fault = request.getfixturevalue("codex_fault") if "codex_fault" in request.fixturenames else None
    if fault is None:
        return
    cassette = open_cassette(fault.cassette)
    if request.node.get_closest_marker("asyncio"):
        reason = optio_expectation(fault.fault, cassette)
        if reason is not None:
            fault.expect("hung", reason)
        return
    known = sdk_expectation(fault.fault, cassette)
    if known is not None:
        fault.expect("hung", known[0], strict=known[1])


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/text_turn", faults="all", faults_max=6, faults_deadline=DEADLINE)
async def test_optio_text_turn(codex_app_server, optio_start):
    session = await optio_start(await codex_app_server.handle(), cwd=codex_app_server.cwd)
    assert await session.turn("Say hello") == "Hello from the mock"
    await session.close()


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/approval_accepted", faults="all", faults_max=4, faults_deadline=DEADLINE)
async def test_optio_approval(codex_app_server, optio_start):
    from optio_agents.conversation import PermissionDecision

    session = await optio_start(await codex_app_server.handle(), cwd=codex_app_server.cwd, permission_gate=True)

    async def allow(request: Any) -> Any:
        return PermissionDecision(behavior="allow")

    session.conv.on_permission_request(allow)
    assert await session.turn("Run echo hi") == "The command printed hi."
    await session.close()


@pytest.mark.codex_cassette("openai_sdk/approval", faults="all", faults_max=6, faults_deadline=DEADLINE)
def test_openai_sdk_approval(codex_app_server):
    from openai_codex import CodexConfig
    from openai_codex.api import Thread
    from openai_codex.client import CodexClient

    def approve(method: str, params: dict | None) -> dict:
        return {"decision": "accept" if "echo hi" in str((params or {}).get("command")) else "decline"}

    client = CodexClient(CodexConfig(launch_args_override=tuple(codex_app_server.argv), env=codex_app_server.env,
                                     cwd=codex_app_server.cwd), approval_handler=approve)
    try:
        client.start()
        client.initialize()
        started = client.thread_start({"cwd": codex_app_server.cwd, "approvalPolicy": "on-request",
                                       "sandbox": "read-only"})
        result = Thread(client, started.thread.id).run("Run echo hi, then touch forbidden.txt")
        assert result.final_response == "echo printed hi; touch was declined."
    finally:
        client.close()
