"""The cassettes shipped in cassettes/, recorded from the real codex 0.163.0 (offline,
against the mock model) by the clients that replay them here.

By default (record mode none) each test replays its cassette to the real driver.
`pytest tests/test_shipped_cassettes.py --codex-record-mode=all` re-records them all
from the pinned codex; the same test bodies then assert on the live session, plus
a few facts only the live side can show (what reached the mock model, files written).
cassettes/README.md lists what each cassette holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.format.load import open_cassette

ROOT = Path(__file__).resolve().parent.parent
LIVE = ROOT / "cassettes" / "live"
WAIT = 10.0        # longest wait for one thing in an optio session
SDK_WAIT = 60.0    # the whole synchronous SDK session, recording included


@pytest.fixture
def codex_cassette_dir() -> Path:
    return ROOT / "cassettes"


def of(session: Any, method: str) -> list[dict]:
    """The params of every notification (or server request) of this method the driver saw."""
    return [e.get("params") or {} for e in session.events if e.get("method") == method]


def items(session: Any, method: str, kind: str) -> list[dict]:
    return [p["item"] for p in of(session, method) if (p.get("item") or {}).get("type") == kind]


def thread_answer(session: Any) -> dict | None:
    """The thread/start or thread/resume result (every inbound message reaches on_event)."""
    for e in session.events:
        result = e.get("result")
        if isinstance(result, dict) and "thread" in result and "modelProvider" in result:
            return result
    return None


@pytest.fixture
def optio_session(codex_app_server, optio_start):
    """Start CodexConversation on a new connection (a new codex process when recording),
    and check that codex talks to the mock model, never to OpenAI."""
    async def start(**kwargs):
        handle = await codex_app_server.handle()
        session = await optio_start(handle, cwd=codex_app_server.cwd, **kwargs)
        await session.until(lambda: thread_answer(session) is not None, WAIT, "the thread/start answer")
        assert thread_answer(session)["modelProvider"] == "mock"
        return session
    return start


async def run_turn(session: Any, text: str) -> tuple[str, dict]:
    """One turn: the driver's answer text (on_message) and the turn of its turn/completed."""
    done = len(of(session, "turn/completed"))
    answer = await session.turn(text, WAIT)
    await session.until(lambda: len(of(session, "turn/completed")) > done, WAIT, "turn/completed")
    return answer, of(session, "turn/completed")[done]["turn"]


async def close(session: Any) -> None:
    """Hang up (stdin EOF) and wait for codex, or the fake, to exit, so nothing is
    left to reap after the test's event loop is gone."""
    await session.close()
    wait = getattr(session.handle, "wait", None)
    if wait is not None:
        await asyncio.wait_for(wait(), WAIT)


def mock_model(server: Any) -> Any:
    """The mock model API codex called (recording only)."""
    assert server.mode == "record"
    return server._live.mock


def client_requests(server: Any, method: str, n: int = 1) -> list[dict]:
    """Params of the client's requests in the replayed cassette of connection n. Replay
    matches every request against these, so they are what the driver sent."""
    cassette = open_cassette(server.connection_path(n))
    return [e.msg.get("params") or {} for e in cassette.events
            if isinstance(e.msg, dict) and e.side == "client" and e.msg.get("method") == method]


def assert_all_played(server: Any) -> None:
    if server.mode == "replay":
        for report in server.fake.reports:
            assert report.played == report.total and not report.failed(), report.summary()


# -- optio-codex 0.1.0 (CodexConversation), in-process ----------------------------------


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/handshake", live=str(LIVE / "optio_handshake.yaml"))
async def test_optio_handshake(optio_session, codex_app_server):
    session = await optio_session()
    conv = session.conv
    assert conv.server_info["userAgent"].startswith("optio_codex/0.163.0 ")
    assert conv.account is None                                   # offline: no login
    slugs = [m["id"] for m in conv.model_list["data"]]
    assert "gpt-5.5" in slugs and "gpt-5.6-terra" in slugs
    assert conv.current_model_id == "gpt-5.5"
    answer = thread_answer(session)
    assert answer["thread"]["id"] == conv.thread_id
    assert answer["approvalPolicy"] == "never" and answer["sandbox"]["type"] == "workspaceWrite"
    await session.until(lambda: of(session, "thread/started"), WAIT, "thread/started")
    assert of(session, "thread/started")[0]["thread"]["id"] == conv.thread_id
    await close(session)
    assert_all_played(codex_app_server)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/text_turn", live=str(LIVE / "optio_text.yaml"))
async def test_optio_text_turn(optio_session, codex_app_server):
    session = await optio_session()
    answer, turn = await run_turn(session, "Say hello")
    assert answer == "Hello from the mock"
    assert turn["status"] == "completed" and turn["error"] is None
    deltas = [p["delta"] for p in of(session, "item/agentMessage/delta")]
    assert deltas == ["Hello", " from", " the ", "mock"]
    assert [i["text"] for i in items(session, "item/completed", "agentMessage")] == [answer]
    await close(session)
    assert_all_played(codex_app_server)


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
    await close(session)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/approval_declined", live=str(LIVE / "optio_declined.yaml"))
async def test_optio_approval_declined(optio_session, codex_app_server):
    from optio_agents.conversation import PermissionDecision

    session = await optio_session(permission_gate=True)
    asked = []

    async def deny(request):
        asked.append(request.tool_name)
        return PermissionDecision(behavior="deny", message="not today")

    session.conv.on_permission_request(deny)
    answer, turn = await run_turn(session, "Clean the build")
    assert answer == "Understood, I will not delete the build."
    assert turn["status"] == "completed"
    assert len(asked) == 1 and "rm -rf build" in asked[0]
    [request] = of(session, "item/commandExecution/requestApproval")
    assert request["reason"] == "to clean the build"
    [item] = items(session, "item/completed", "commandExecution")
    assert item["status"] == "declined" and item["exitCode"] is None
    assert len(of(session, "serverRequest/resolved")) == 1
    if codex_app_server.mode == "record":
        # Declined means codex ran nothing and told the model so.
        follow_up = mock_model(codex_app_server).requests[1].input[-1]
        assert follow_up["type"] == "function_call_output"
    await close(session)
    assert_all_played(codex_app_server)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/file_change_approval", live=str(LIVE / "optio_file_change.yaml"))
async def test_optio_file_change_approval(optio_session, codex_app_server):
    from optio_agents.conversation import PermissionDecision

    # read-only: the write needs approval (with workspace-write codex 0.163.0 applies it unasked).
    session = await optio_session(permission_gate=True, sandbox="read-only")
    asked = []

    async def allow(request):
        asked.append((request.tool_name, request.input))
        return PermissionDecision(behavior="allow")

    session.conv.on_permission_request(allow)
    answer, turn = await run_turn(session, "Create hello.txt")
    assert answer == "I created hello.txt."
    assert turn["status"] == "completed"
    [(tool, params)] = asked
    assert tool == "file change" and params["itemId"] == "call_1"
    [started] = items(session, "item/started", "fileChange")
    [change] = started["changes"]
    assert change["path"].endswith("hello.txt") and change["kind"]["type"] == "add"
    assert "hello from the patch" in change["diff"]
    [done] = items(session, "item/completed", "fileChange")
    assert done["status"] == "completed"
    if codex_app_server.mode == "record":
        assert (Path(codex_app_server.cwd) / "hello.txt").read_text() == "hello from the patch\n"
    await close(session)
    assert_all_played(codex_app_server)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/interrupt", live=str(LIVE / "optio_interrupt.yaml"))
async def test_optio_interrupt_mid_stream(optio_session, codex_app_server):
    session = await optio_session()
    await session.conv.send("Do something long")
    # The mock holds the stream after one delta until the gate's timeout (20 s), so the
    # interrupt lands mid-stream when recording; replay sends what was recorded before
    # turn/interrupt and holds the rest until the driver sends it: the same either way.
    await session.until(lambda: of(session, "item/agentMessage/delta"), WAIT, "the first delta")
    await asyncio.wait_for(session.conv.interrupt(), WAIT)
    await session.until(lambda: of(session, "turn/completed") and session.messages, WAIT, "turn/completed")
    [completed] = of(session, "turn/completed")
    assert completed["turn"]["status"] == "interrupted"
    assert session.messages == ["Working"]                  # the partial answer, from deltas only
    assert not items(session, "item/completed", "agentMessage")
    assert session.conv.current_turn_id is None and not session.conv.is_pending()
    if codex_app_server.mode == "record":
        mock = mock_model(codex_app_server)
        assert mock.requests[0].disconnected                # codex dropped the model stream
        assert not mock.errors
    await close(session)
    assert_all_played(codex_app_server)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/model_switch", live=str(LIVE / "optio_model_switch.yaml"))
async def test_optio_model_switch(optio_session, codex_app_server):
    session = await optio_session()
    first, _ = await run_turn(session, "Turn one")
    assert first == "First answer, from gpt-5.5."
    session.conv.request_model_change("gpt-5.6-terra")
    second, turn2 = await run_turn(session, "Turn two")
    third, turn3 = await run_turn(session, "Turn three")
    assert (second, third) == ("Second answer, from gpt-5.6-terra.", "Third answer, still gpt-5.6-terra.")
    assert turn2["status"] == turn3["status"] == "completed"
    assert session.conv.current_model_id == "gpt-5.6-terra"
    # Switching to another catalogue model makes codex 0.163.0 compact first, in that turn only.
    compactions = [p for p in of(session, "item/completed") if p["item"]["type"] == "contextCompaction"]
    assert [p["turnId"] for p in compactions] == [turn2["id"]]
    [warning] = of(session, "warning")
    assert "compactions" in warning["message"] and warning["threadId"] == session.conv.thread_id

    if codex_app_server.mode == "record":
        mock = mock_model(codex_app_server)
        assert [(r.kind, r.model) for r in mock.requests] == [
            ("turn", "gpt-5.5"), ("compaction", "gpt-5.5"),
            ("turn", "gpt-5.6-terra"), ("turn", "gpt-5.6-terra")]
    await close(session)
    if codex_app_server.mode == "replay":
        assert_all_played(codex_app_server)
        # Every turn/start after the switch carries the model (replay matched them all).
        models = [p.get("model") for p in client_requests(codex_app_server, "turn/start")]
        assert models == [None, "gpt-5.6-terra", "gpt-5.6-terra"]


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/failed_turn", live=str(LIVE / "optio_failed_turn.yaml"))
async def test_optio_failed_turn_then_next_turn_works(optio_session, codex_app_server):
    session = await optio_session()
    answer, turn = await run_turn(session, "This one fails")
    assert answer == ""                                          # no agentMessage at all
    assert turn["status"] == "failed"
    assert "high demand" in turn["error"]["message"]            # codex's text for an HTTP 500
    [error] = of(session, "error")
    assert error["willRetry"] is False and error["error"] == turn["error"]
    assert error["error"]["codexErrorInfo"] == "internalServerError"
    statuses = [p["status"]["type"] for p in of(session, "thread/status/changed")]
    assert "systemError" in statuses
    assert not session.conv.is_pending()

    answer, turn = await run_turn(session, "Try again")
    assert answer == "Back to normal."
    assert turn["status"] == "completed" and turn["error"] is None
    if codex_app_server.mode == "record":
        assert not mock_model(codex_app_server).errors
    await close(session)
    assert_all_played(codex_app_server)


@pytest.mark.asyncio
@pytest.mark.codex_cassette("optio/resume", live=str(LIVE / "optio_resume.yaml"))
async def test_optio_thread_resume_in_a_second_process(optio_session, codex_app_server):
    """Two connections, two cassettes: optio/resume.jsonl and optio/resume.2.jsonl."""
    first = await optio_session()
    answer, _ = await run_turn(first, "Remember a word for me")
    assert answer == "Remember the word: pineapple."
    thread_id = first.conv.thread_id
    await close(first)

    second = await optio_session(resume_thread_id=thread_id)
    assert second.conv.thread_id == thread_id
    assert thread_answer(second)["thread"]["id"] == thread_id
    answer, turn = await run_turn(second, "What was the word?")
    assert answer == "The word was pineapple."
    assert turn["status"] == "completed"
    if codex_app_server.mode == "record":
        # The resumed thread's history reached the model from the second process.
        texts = str(mock_model(codex_app_server).requests[1].input)
        assert "Remember a word for me" in texts and "Remember the word: pineapple." in texts
    await close(second)
    if codex_app_server.mode == "replay":
        assert_all_played(codex_app_server)
        assert len(codex_app_server.fake.reports) == 2
        [resume] = client_requests(codex_app_server, "thread/resume", 2)
        assert resume["threadId"] == thread_id


# -- the official openai-codex SDK 0.163.0, as a subprocess ---------------------------


def run_with_timeout(body: Callable[[], Any], timeout: float, on_timeout: Callable[[], None]) -> Any:
    """The SDK blocks without timeouts of its own: run it on a worker thread, bounded."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(body).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        on_timeout()  # kills codex, which unblocks the SDK's reader and the worker
        raise AssertionError(f"the openai-codex SDK session did not finish within {timeout:g} s") from None
    finally:
        pool.shutdown(wait=False)


@pytest.mark.codex_cassette("openai_sdk/approval", live=str(LIVE / "sdk_approval.yaml"))
def test_openai_sdk_command_approvals(codex_app_server):
    pytest.importorskip("openai_codex")
    from openai_codex import CodexConfig
    from openai_codex.api import Thread
    from openai_codex.client import CodexClient

    decisions: list[tuple[str, str, str]] = []

    def approve(method: str, params: dict | None) -> dict:
        command = str((params or {}).get("command"))
        decision = "accept" if "echo hi" in command else "decline"
        decisions.append((method, command, decision))
        return {"decision": decision}

    config = CodexConfig(launch_args_override=tuple(codex_app_server.argv), env=codex_app_server.env,
                         cwd=codex_app_server.cwd)
    client = CodexClient(config, approval_handler=approve)

    def session() -> Any:
        client.start()
        client.initialize()
        started = client.thread_start({"cwd": codex_app_server.cwd, "approvalPolicy": "on-request",
                                       "sandbox": "read-only"})
        assert started.model_provider == "mock"
        result = Thread(client, started.thread.id).run("Run echo hi, then touch forbidden.txt")
        # The SDK's close() sends SIGTERM right after closing stdin; the recording proxy
        # would count that as an unclean end. Let codex see EOF and exit first.
        proc = client._proc
        proc.stdin.close()
        proc.wait(timeout=WAIT)
        return result

    try:
        result = run_with_timeout(session, SDK_WAIT, client.close)
    finally:
        client.close()

    assert [d[2] for d in decisions] == ["accept", "decline"]
    assert all(d[0] == "item/commandExecution/requestApproval" for d in decisions)
    assert "echo hi" in decisions[0][1] and "touch forbidden.txt" in decisions[1][1]
    assert result.status.value == "completed"
    assert result.final_response == "echo printed hi; touch was declined."
    commands = [i.root for i in result.items if i.root.type == "commandExecution"]
    assert [c.status.value for c in commands] == ["completed", "declined"]
    assert commands[0].aggregated_output == "hi\n" and commands[0].exit_code == 0
    if codex_app_server.mode == "record":
        assert not (Path(codex_app_server.cwd) / "forbidden.txt").exists()
        assert not mock_model(codex_app_server).errors
    else:
        [report] = codex_app_server.fake.reports
        assert report.played == report.total and not report.failed(), report.summary()
