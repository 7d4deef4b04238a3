"""Regression suite for optio-codex's CodexConversation 0.1.0, replayed from YAML scenarios.

Every case runs twice (see the `launch_mode` fixture): against the fake codex
in-process, and against the fake as a real subprocess launched by optio's host layer.
The scenarios (tests/scenarios/*.yaml, schema in docs/scenarios.md) say what codex
sends and what the driver must answer; the tests check what the driver's users
see: messages, events, permission requests, exceptions. The last group breaks the
driver on purpose and checks that the harness notices.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from optio_agents.conversation import ConversationClosed, PermissionDecision, PermissionRequest
from optio_codex.conversation import CodexConversation

from fake_server import InProcessCodex
from harness.errors import ScenarioError
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport
from harness.format.scenario import load_scenario
from harness.drift.snapshot import load_snapshot
from harness.drift.validate import validate_cassette

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).parent / "scenarios"
SCHEMA = ROOT / "cassettes" / "schema" / "0.163.0"
WAIT = 5.0  # the longest any step here waits; a healthy case takes well under a second

THREAD = "019b2f3c-8a41-7e52-9c07-5d1e2f3a4b6c"


# -- helpers -------------------------------------------------------------------

@pytest_asyncio.fixture
async def driver(optio):
    """`optio`, plus a teardown that never leaves a fake codex process behind a failed test."""
    started: list[Any] = []

    async def start(**conv_kwargs: Any):
        session = await optio(**conv_kwargs)
        started.append(session)
        return session

    yield start
    for session in started:
        proc = getattr(session.handle, "pid_like", None)
        if session.host is not None and proc is not None and proc.returncode is None:
            await session.host.terminate_subprocess(session.handle, aggressive=True)


async def fake_exit(session) -> int:
    """Wait (bounded) until the fake codex has ended, and return its exit code.

    A fake subprocess writes its report as it ends, so reports are only complete after this.
    """
    if session.host is None:
        return await session.handle.wait(WAIT)
    return await asyncio.wait_for(session.handle.pid_like.wait(), WAIT)


async def finish(session, fake_codex) -> ReplayReport:
    """Hang up the way optio does (close codex's stdin), let the fake end, return its report.

    Waiting for the fake before `session.close()` matters: that close SIGKILLs a
    subprocess still running, and a killed fake leaves no report to check.
    """
    session.handle.stdin.close()
    code = await fake_exit(session)
    await session.close()
    report = fake_codex.report
    assert report is not None, "the fake codex left no report"
    assert report.status == "ok" and not report.failed(), report.summary()
    assert report.played == report.total
    assert code == 0
    return report


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def events_named(session, method: str) -> list[dict]:
    return [e for e in session.events if e.get("method") == method or e.get("type") == method]


async def wait_event(session, method: str, count: int = 1) -> dict:
    await session.until(lambda: len(events_named(session, method)) >= count, WAIT, f"{count} x {method}")
    return events_named(session, method)[count - 1]


async def wait_messages(session, count: int) -> list[str]:
    await session.until(lambda: len(session.messages) >= count, WAIT, f"{count} on_message call(s)")
    return session.messages


# -- 1. bootstrap --------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("bootstrap")
async def test_bootstrap_captures_thread_models_and_server_info(driver, fake_codex):
    session = await driver(cwd="/work/project", model="gpt-5.5")
    conv = session.conv
    assert conv.thread_id == THREAD
    assert conv.current_model_id == "gpt-5.5"
    assert conv.server_info == {
        "userAgent": "optio_codex/0.163.0 (Debian 12.0.0; x86_64) unknown (optio_codex; 0.1.0)",
        "codexHome": "/home/dev/.codex", "platformFamily": "unix", "platformOs": "linux"}
    assert conv.account == {"type": "apiKey"}
    assert [m["id"] for m in conv.model_list["data"]] == ["gpt-5.5", "gpt-5.5-mini"]
    assert conv.model_list["nextCursor"] is None
    # The unprompted notifications and thread/started reach on_event unchanged.
    started = await wait_event(session, "thread/started")
    assert started["params"]["thread"]["cwd"] == "/work/project"  # {{cwd}} bound from thread/start
    assert started["emittedAtMs"] == 1767268800112
    # Responses to the driver's own requests reach on_event too (four of them).
    assert session.methods() == ["response", "configWarning", "remoteControl/status/changed",
                                 "response", "response", "response", "thread/started"]
    assert not conv.is_pending() and session.messages == []
    report = await finish(session, fake_codex)
    assert report.bindings["cwd"] == "/work/project"


# -- 2. text turns ---------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("text_turn")
async def test_text_turn(driver, fake_codex):
    session = await driver(cwd="/work/x")
    assert session.conv.thread_id == THREAD
    assert await session.turn("Say hello to the world") == "Hello, world."
    await wait_event(session, "turn/completed")
    deltas = [e["params"]["delta"] for e in events_named(session, "item/agentMessage/delta")]
    assert deltas == ["Hello", ", ", "world."]  # streamed to on_event one by one
    assert not session.conv.is_pending()
    # item/completed says "Hello!" where the deltas joined to "Hello": the completed text wins.
    assert await session.turn("Say hello") == "Hello!"
    assert session.messages == ["Hello, world.", "Hello!"]
    assert len(events_named(session, "turn/completed")) == 2
    await finish(session, fake_codex)


# -- 3. command approvals with the gate on -------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("command_approval")
async def test_command_approval_accept_then_decline(driver, fake_codex):
    session = await driver(cwd="/work/project", permission_gate=True)
    asked: list[PermissionRequest] = []

    async def policy(request: PermissionRequest) -> PermissionDecision:
        asked.append(request)
        if request.tool_name.startswith("rm "):
            return PermissionDecision(behavior="deny", message="not without a backup")
        return PermissionDecision(behavior="allow")

    session.conv.on_permission_request(policy)
    # The scenario expects {decision: accept} here; anything else diverges and the turn never ends.
    assert await session.turn("List the files here") == (
        "I'll list the files. There are two entries: README.md and src.")
    assert await session.turn("Clean the build directory") == (
        "You declined the removal, so build/ is untouched.")
    await wait_event(session, "turn/completed", 2)  # on_event runs apart from on_message
    assert [r.tool_name for r in asked] == ["ls -la", "rm -rf build"]
    assert asked[0].input["cwd"] == "/work/project" and asked[0].input["itemId"] == "call_ls_1"
    assert asked[1].raw["method"] == "item/commandExecution/requestApproval"
    assert [e["params"]["requestId"] for e in events_named(session, "serverRequest/resolved")] == [0, 1]
    completed = [e["params"]["item"] for e in events_named(session, "item/completed")
                 if e["params"]["item"]["type"] == "commandExecution"]
    assert [(i["id"], i["status"]) for i in completed] == [("call_ls_1", "completed"), ("call_rm_2", "declined")]
    await finish(session, fake_codex)


# -- 4. the gate off: the driver declines by itself -------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("approval_gate_off")
async def test_gate_off_declines_without_asking(driver, fake_codex):
    session = await driver(cwd="/work/project")  # permission_gate defaults to False
    asked: list[PermissionRequest] = []

    async def allow_everything(request: PermissionRequest) -> PermissionDecision:
        asked.append(request)
        return PermissionDecision(behavior="allow")

    session.conv.on_permission_request(allow_everything)
    # The scenario expects {decision: decline}; an "accept" from the handler would diverge.
    assert await session.turn("Run the tests") == "I could not run the tests: the command was declined."
    assert asked == []
    request = await wait_event(session, "item/commandExecution/requestApproval")
    assert request["id"] == 0 and request["params"]["command"] == "python -m pytest -q"
    await wait_event(session, "turn/completed")
    command = events_named(session, "item/completed")[0]["params"]["item"]
    assert (command["type"], command["status"]) == ("commandExecution", "declined")
    await finish(session, fake_codex)


# -- 5. a file-change approval, asked before a handler exists ---------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("file_change_approval")
async def test_file_change_approval_waits_for_a_handler(driver, fake_codex):
    session = await driver(cwd="/work/project", permission_gate=True)
    await session.conv.send("Add a NOTES.md")
    request = await wait_event(session, "item/fileChange/requestApproval")
    assert request["params"]["itemId"] == "call_patch_1"
    # No handler yet: the driver holds the request (an early answer would diverge from the scenario).
    asked: list[PermissionRequest] = []

    async def allow(req: PermissionRequest) -> PermissionDecision:
        asked.append(req)
        return PermissionDecision(behavior="allow")

    session.conv.on_permission_request(allow)
    assert await wait_messages(session, 1) == ["Created NOTES.md."]
    assert len(asked) == 1
    assert asked[0].tool_name == "file change"
    assert asked[0].input == request["params"] and asked[0].raw == request
    await wait_event(session, "turn/completed")
    change = events_named(session, "item/completed")[0]["params"]["item"]
    assert change["type"] == "fileChange" and change["status"] == "completed"
    assert change["changes"][0]["path"] == "/work/project/NOTES.md"  # {{cwd}} filled in by the fake
    await finish(session, fake_codex)


# -- 6. a server request the driver does not implement ------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("unknown_request")
async def test_unknown_server_request_gets_method_not_found(driver, fake_codex):
    session = await driver()
    # The scenario expects an error with code -32601 for request 0; silence would time out.
    assert await session.turn("Set up the project") == "No answer came, so I went with pytest."
    asked = await wait_event(session, "item/tool/requestUserInput")
    assert asked["params"]["questions"][0]["id"] == "q1"
    resolved = await wait_event(session, "serverRequest/resolved")
    assert resolved["params"]["requestId"] == 0
    assert not session.conv.closed
    await finish(session, fake_codex)


# -- 7. interrupting a streaming turn --------------------------------------------------------

TURN_INTERRUPTED = "019b2f41-5f60-7a01-8e11-0a1b2c3d4e51"


@pytest.mark.asyncio
@pytest.mark.codex_cassette("interrupt")
async def test_interrupt_mid_stream(driver, fake_codex):
    session = await driver()
    conv = session.conv
    await conv.send("Count to one hundred slowly")
    await wait_event(session, "item/agentMessage/delta")
    assert conv.current_turn_id == TURN_INTERRUPTED
    # The scenario expects turn/interrupt {threadId, turnId} exactly; it acknowledges with {}.
    await asyncio.wait_for(conv.interrupt(), WAIT)
    assert await wait_messages(session, 1) == ["1, 2, 3, "]  # the partial text, from the deltas
    completed = await wait_event(session, "turn/completed")
    assert completed["params"]["turn"]["status"] == "interrupted"
    methods = session.methods()
    last_delta = len(methods) - 1 - methods[::-1].index("item/agentMessage/delta")
    assert methods.count("item/agentMessage/delta") == 3 and last_delta < methods.index("turn/completed")
    assert not conv.is_pending() and conv.current_turn_id is None
    await finish(session, fake_codex)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("interrupt_late_ack")
async def test_interrupt_acknowledged_after_turn_completed(driver, fake_codex):
    session = await driver()
    conv = session.conv
    await conv.send("Count to one hundred slowly")
    await wait_event(session, "item/agentMessage/delta", 2)
    await asyncio.wait_for(conv.interrupt(), WAIT)  # returns only once the late {} came
    assert session.messages == ["1, 2, "]
    # on_event sees the same order: the turn's end, then the acknowledgement.
    await session.until(lambda: any(e.get("result") == {} for e in session.events), WAIT, "the {} event")
    ack = [n for n, e in enumerate(session.events) if e.get("result") == {}]
    assert len(ack) == 1 and ack[0] > session.methods().index("turn/completed")
    assert not conv.is_pending()
    await finish(session, fake_codex)


# -- 8. switching the model -------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("model_switch")
async def test_model_switch_applies_to_every_later_turn(driver, fake_codex):
    session = await driver()
    conv = session.conv
    assert conv.current_model_id == "gpt-5.5"
    assert await session.turn("Which model are you?") == "gpt-5.5."
    conv.request_model_change("gpt-5.5-mini")  # no write; the scenario matches turn/start exactly
    assert conv.current_model_id == "gpt-5.5-mini"
    assert await session.turn("And now?") == "gpt-5.5-mini."
    assert await session.turn("Still?") == "Still gpt-5.5-mini."
    await finish(session, fake_codex)


# -- 9. a failed turn, then a good one ------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("failed_turn")
async def test_failed_turn_then_next_turn_works(driver, fake_codex):
    session = await driver()
    conv = session.conv
    # A failed turn still ends the turn: on_message gets what was streamed before the failure.
    assert await session.turn("Summarise the README") == "The README says"
    error = await wait_event(session, "error")
    assert error["params"]["willRetry"] is False
    assert error["params"]["error"]["codexErrorInfo"] == {"responseStreamDisconnected": {"httpStatusCode": None}}
    completed = await wait_event(session, "turn/completed")
    assert completed["params"]["turn"]["status"] == "failed"
    assert completed["params"]["turn"]["error"]["message"].startswith("stream disconnected")
    assert not conv.is_pending() and not conv.closed
    assert await session.turn("Try again") == "It explains how to run the tests."
    await finish(session, fake_codex)


# -- 10. codex dies mid-turn ---------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("server_dies")
async def test_server_dying_mid_turn_closes_the_conversation(driver, fake_codex):
    session = await driver()
    conv = session.conv
    await conv.send("Write a long essay")
    closed = await wait_event(session, "x-optio-closed")
    assert closed == {"type": "x-optio-closed", "reason": "process ended"}
    assert conv.closed
    assert session.methods()[-2:] == ["item/agentMessage/delta", "x-optio-closed"]
    assert await fake_exit(session) == 1
    with pytest.raises(ConversationClosed):
        await conv.send("Are you there?")
    with pytest.raises(ConversationClosed):
        await conv.interrupt()
    with pytest.raises(ConversationClosed):
        conv.request_model_change("gpt-5.5-mini")
    assert session.messages == []  # no turn/completed ever came: the partial answer is not delivered
    await session.close()
    report = fake_codex.report
    assert report.status == "ok" and report.exit_code == 1 and report.played == report.total


# -- 11. a non-JSON line ------------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("garbage_line")
async def test_non_json_line_is_reported_and_skipped(driver, fake_codex):
    session = await driver()
    assert await session.turn("Hi") == "Hi there."
    await wait_event(session, "turn/completed")
    bad = await wait_event(session, "x-optio-unparseable")
    assert bad["line"] == "2026-01-01T12:00:01.345Z  WARN codex_core::exec: sandbox denied write to /tmp/.X11-unix"
    methods = session.methods()
    n = methods.index("x-optio-unparseable")
    assert methods[n - 1] == methods[n + 1] == "item/agentMessage/delta"
    assert not session.conv.closed
    await finish(session, fake_codex)


# -- 12. interrupt() before the turn/start ACK ------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.codex_cassette("interrupt_before_ack")
async def test_interrupt_before_turn_ack_is_a_silent_no_op(driver, fake_codex):
    session = await driver()
    conv = session.conv
    await conv.send("Never mind")
    assert conv.is_pending() and conv.current_turn_id is None  # the ACK is held back 0.3 s
    # Nothing to name yet: no turn/interrupt may go out (the scenario's stall would catch one).
    await asyncio.wait_for(conv.interrupt(), WAIT)
    assert await wait_messages(session, 1) == ["Okay."]
    await finish(session, fake_codex)


# -- the harness catches a broken driver -----------------------------------------------------------
# Each test breaks one behaviour of the real driver instance (the broken driver is the
# thing under test) and asserts that the fake codex fails the session, naming what the
# scenario expected and what came instead.

async def diverged(session, fake_codex) -> ReplayReport:
    """The fake stops at a divergence and hangs up; wait for both ends, then take its report."""
    await wait_event(session, "x-optio-closed")
    code = await fake_exit(session)
    await session.close()
    report = fake_codex.assert_diverged()
    assert code == 3, f"the fake exits with 3 after a divergence, not {code}"
    return report


@pytest.mark.asyncio
@pytest.mark.codex_cassette("approval_gate_off")
async def test_harness_catches_cancel_instead_of_decline(driver, fake_codex):
    session = await driver()
    conv = session.conv

    async def cancel_on_deny(obj: dict, decision: PermissionDecision) -> None:
        # The bug: "cancel" also interrupts the turn, which deny does not mean.
        answer = "accept" if decision.behavior == "allow" else "cancel"
        await conv._write_json({"id": obj.get("id"), "result": {"decision": answer}})

    conv._answer_permission_decision = cancel_on_deny
    await conv.send("Run the tests")
    report = await diverged(session, fake_codex)
    message = report.divergence.message
    assert "decline" in message and "cancel" in message, message
    # The report points at the scenario step that expected the decision.
    step = _line_of(SCENARIOS / "approval_gate_off.yaml", "- request: item/commandExecution/requestApproval")
    assert report.divergence.expected_at == f"{SCENARIOS / 'approval_gate_off.yaml'}:{step}"
    assert report.divergence.received == {"id": 0, "result": {"decision": "cancel"}}
    assert session.messages == []  # the turn never finished


@pytest.mark.asyncio
@pytest.mark.codex_cassette("model_switch")
async def test_harness_catches_a_dropped_model_override(driver, fake_codex):
    session = await driver()
    conv = session.conv
    assert await session.turn("Which model are you?") == "gpt-5.5."

    def forgetful(model: str) -> None:
        conv.current_model_id = model  # the bug: reports the switch, never pins it on turn/start

    conv.request_model_change = forgetful
    conv.request_model_change("gpt-5.5-mini")
    await conv.send("And now?")
    report = await diverged(session, fake_codex)
    message = report.divergence.message
    assert "turn/start" in message and "gpt-5.5-mini" in message and "model" in message, message
    assert report.divergence.received["params"] == {
        "threadId": THREAD, "input": [{"type": "text", "text": "And now?"}]}
    # The offending request itself was answered with an error that says what was expected.
    rejected = [e for e in session.events if e.get("id") == report.divergence.received["id"] and "error" in e]
    assert rejected and rejected[0]["error"]["code"] == -32099
    assert "model_switch.yaml" in rejected[0]["error"]["message"]


@pytest.mark.asyncio
@pytest.mark.codex_cassette("text_turn")
async def test_harness_catches_an_extra_request(driver, fake_codex):
    session = await driver()
    conv = session.conv
    send = conv.send

    async def send_refreshing_models(text: str) -> None:
        # The bug: re-reads the model catalogue before every turn, a request codex never expected.
        conv._next_id += 1
        await conv._write_json({"id": conv._next_id, "method": "model/list", "params": {}})
        try:
            await send(text)
        except (ConnectionError, ConversationClosed):  # the fake may already have hung up
            pass

    conv.send = send_refreshing_models
    await conv.send("Say hello to the world")
    report = await diverged(session, fake_codex)
    message = report.divergence.message
    assert "expected client turn/start" in message and "model/list" in message, message
    assert report.divergence.matcher == "method"


@pytest.mark.asyncio
@pytest.mark.codex_cassette("interrupt_before_ack")
async def test_harness_catches_an_interrupt_before_the_ack(driver, fake_codex):
    session = await driver()
    conv = session.conv

    async def eager_interrupt() -> dict:
        # The bug: interrupts without knowing the turn's id yet.
        return await conv._request("turn/interrupt", {"threadId": conv.thread_id, "turnId": conv.current_turn_id})

    await conv.send("Never mind")
    answer = await asyncio.wait_for(eager_interrupt(), WAIT)
    assert answer["error"]["code"] == -32099  # the fake's refusal names the scenario line
    assert "interrupt_before_ack.yaml" in answer["error"]["message"]
    report = await diverged(session, fake_codex)
    assert report.divergence.kind == "unexpected"
    assert "turn/interrupt" in report.divergence.message


# -- the scenarios themselves ------------------------------------------------------------------------

def _server_problem(cassette, problem) -> bool:
    """Whether a schema problem is in a message the fake sends (client expectations may be partial)."""
    for event in cassette.events:
        if event.side != "server" or event.line != problem.line or not isinstance(event.msg, dict):
            continue
        is_response = "method" not in event.msg
        if problem.path.startswith(("$.result", "$.error", "$.id")) == is_response:
            return True
    return False


def _scenarios_used_here() -> list[Path]:
    names = {m.args[0] for f in list(globals().values()) if callable(f)
             for m in getattr(f, "pytestmark", []) if m.name == "codex_cassette"}
    return sorted(SCENARIOS / f"{name}.yaml" for name in names)


def test_scenarios_speak_codex_0_163():
    """Everything the fake says in this module's scenarios is valid codex 0.163.0 protocol."""
    snapshot = load_snapshot(SCHEMA)
    scenarios = _scenarios_used_here()
    assert len(scenarios) >= 12
    problems = []
    for path in scenarios:
        cassette = load_scenario(path)
        problems += [str(p) for p in validate_cassette(cassette, snapshot) if _server_problem(cassette, p)]
    assert problems == []


# -- scenario-writing mistakes the compiler refuses, and `ignore` paths ---------------------------------

def test_a_misspelt_step_key_is_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("steps:\n  - expect: thread/start\n    parms: {cwd: /work/project}\n    reply: {}\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert f"{path}:2" in str(caught.value) and "'parms'" in str(caught.value)


@pytest.mark.asyncio
async def test_ignore_paths_are_written_from_the_message_down(tmp_path):
    # thread/start's cwd differs from what the driver sends, and `ignore: [params.cwd]` lets it.
    text = (SCENARIOS / "bootstrap.yaml").read_text().replace(
        'params: {cwd: "{{cwd}}", sandbox: workspace-write, approvalPolicy: never, model: gpt-5.5}',
        'params: {cwd: /elsewhere, sandbox: workspace-write, approvalPolicy: never, model: gpt-5.5}\n'
        '    ignore: [params.cwd]')
    assert "ignore: [params.cwd]" in text
    path = tmp_path / "bootstrap_ignoring_cwd.yaml"
    path.write_text(text)
    handle = InProcessCodex(path, ReplayOptions(timeout=WAIT, linger=WAIT))
    conv = CodexConversation(cwd="/work/project", model="gpt-5.5")
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    try:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
        assert conv.thread_id == THREAD
    finally:
        handle.stdin.close()
        await handle.wait(WAIT)
        await asyncio.wait_for(reader, WAIT)
    assert handle.report.status == "ok" and not handle.report.failed(), handle.report.summary()
