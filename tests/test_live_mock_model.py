"""The real codex app-server against the loopback mock model (marked `live`),
plus the mock, config writer and binary discovery on their own.

The live tests speak the protocol directly with the small client below, so
they check codex's behaviour and the mock, not other harness code.
Set CODEX_LIVE_DUMP=DIR to write each live test's observed message sequence
as JSON (that is how docs/live.md's sequences were taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ScenarioError
from harness.live import (
    CodexBinaryError,
    CodexHomeError,
    FailStep,
    GateStep,
    MockModel,
    MockModelError,
    MockModelThread,
    PatchStep,
    ProviderCheckError,
    ShellStep,
    Step,
    TextStep,
    add_file_patch,
    check_mock_provider,
    codex_version,
    find_codex_binary,
    load_model_script,
    load_model_script_file,
    make_codex_home,
    parse_codex_version,
)

TURN_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
SWITCH_MODEL = "gpt-5.6-terra"  # in 0.163.0's bundled catalogue (model/list)

TIMINGS: dict[str, float] = {}
STARTUPS: list[float] = []


@pytest.fixture(scope="module", autouse=True)
def _report_timings(request: pytest.FixtureRequest) -> Any:
    yield
    if not STARTUPS:
        return
    lines = [
        f"  codex startup, spawn -> initialize answer: min {min(STARTUPS):.3f} s, "
        f"max {max(STARTUPS):.3f} s over {len(STARTUPS)} launches"
    ]
    lines += [f"  {name}: {seconds:.3f} s" for name, seconds in TIMINGS.items()]
    text = "\nlive codex timings:\n" + "\n".join(lines)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(text)


# ---------------------------------------------------------------- a tiny client


class AppServer:
    """Just enough JSON-RPC-over-JSONL to drive `codex app-server`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                await self.inbox.put(None)
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(EOFError("codex closed stdout"))
                return
            msg = json.loads(line)
            self.received.append(msg)
            if "id" in msg and "method" not in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            else:
                await self.inbox.put(msg)

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())

    async def request(self, method: str, params: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        rid = self._next_id
        self._next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.send({"id": rid, "method": method, "params": params})
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"codex did not answer {method} within {timeout} s") from None
        assert "error" not in reply, f"{method} failed: {reply['error']}"
        return reply["result"]

    async def next_message(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        try:
            msg = await asyncio.wait_for(self.inbox.get(), max(left, 0.001))
        except asyncio.TimeoutError:
            raise AssertionError("turn did not complete in time") from None
        assert msg is not None, "codex closed its stdout mid-turn"
        return msg

    async def close(self) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            code = await asyncio.wait_for(self.proc.wait(), 10.0)
        except asyncio.TimeoutError:
            self.proc.kill()
            code = await asyncio.wait_for(self.proc.wait(), 10.0)
        self._reader.cancel()
        return code


def _label(msg: dict[str, Any]) -> str:
    """A message as it appears in docs/live.md's sequences."""
    method = msg["method"]
    params = msg.get("params") or {}
    if "id" in msg:
        return f"{method} (server request)"
    if method in ("item/started", "item/completed"):
        return f"{method} {params['item']['type']}"
    if method == "thread/status/changed":
        status = params["status"]
        flags = status.get("activeFlags")
        return f"{method} {status['type']}" + (f" {flags}" if flags else "")
    if method == "turn/completed":
        return f"{method} {params['turn']['status']}"
    return method


@dataclass
class Turn:
    turn_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    completed: dict[str, Any] | None = None

    @property
    def labels(self) -> list[str]:
        return [_label(m) for m in self.messages]

    @property
    def status(self) -> str:
        assert self.completed is not None
        return self.completed["turn"]["status"]

    def methods(self) -> list[str]:
        return [m["method"] for m in self.messages]

    def of(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["method"] == method]


Decider = Callable[[dict[str, Any]], dict[str, Any]]


def accept_all(msg: dict[str, Any]) -> dict[str, Any]:
    return {"decision": "accept"}


@dataclass
class Live:
    mock: MockModel
    server: AppServer
    thread_id: str
    cwd: Path
    startup_s: float
    sequences: dict[str, list[str]] = field(default_factory=dict)

    async def start_turn(self, text: str, **extra: Any) -> Turn:
        result = await self.server.request(
            "turn/start", {"threadId": self.thread_id, "input": [{"type": "text", "text": text}], **extra}
        )
        return Turn(result["turn"]["id"])

    async def finish_turn(self, turn: Turn, decide: Decider = accept_all, timeout: float = TURN_TIMEOUT) -> Turn:
        deadline = time.monotonic() + timeout
        while turn.completed is None:
            msg = await self.server.next_message(deadline)
            turn.messages.append(msg)
            if "id" in msg:  # a server request: approvals
                self.server.send({"id": msg["id"], "result": decide(msg)})
            elif msg["method"] == "turn/completed" and msg["params"]["turn"]["id"] == turn.turn_id:
                turn.completed = msg["params"]
        return turn

    async def read_until(self, turn: Turn, method: str, timeout: float = TURN_TIMEOUT) -> dict[str, Any]:
        """Collect the turn's messages up to the first `method` (no approvals expected)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.server.next_message(deadline)
            turn.messages.append(msg)
            if msg.get("method") == method:
                return msg

    async def turn(self, text: str, decide: Decider = accept_all, **extra: Any) -> Turn:
        return await self.finish_turn(await self.start_turn(text, **extra), decide)


@contextlib.asynccontextmanager
async def live_codex(
    name: str, script: list[Step], approval_policy: str = "on-request", sandbox: str = "read-only"
) -> AsyncIterator[Live]:
    codex = find_codex_binary()
    async with MockModel(script) as mock:
        with make_codex_home(mock.base_url, approval_policy=approval_policy, sandbox_mode=sandbox) as home:
            cwd = home.root / "work"
            cwd.mkdir()
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                str(codex), "app-server",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, env=home.env, cwd=str(cwd),
                limit=1 << 24,  # codex lines (thread/started, tool lists) can be long
            )
            server = AppServer(proc)
            try:
                await server.request("initialize", {"clientInfo": {"name": "codex_cassette_tests", "version": "0"}})
                startup = time.monotonic() - t0
                server.send({"method": "initialized"})
                started = await server.request("thread/start", {"cwd": str(cwd)})
                check_mock_provider(started)
                live = Live(mock, server, started["thread"]["id"], cwd, startup)
                STARTUPS.append(startup)
                t1 = time.monotonic()
                yield live
                TIMINGS[f"scenario {name}"] = time.monotonic() - t1
                _dump(name, live)
            finally:
                code = await server.close()
            assert code == 0, f"codex exited with {code}"
            assert not mock.errors, mock.errors
            assert not mock.other_requests, [(r.method, r.path) for r in mock.other_requests]


def _dump(name: str, live: Live) -> None:
    target = os.environ.get("CODEX_LIVE_DUMP")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        Path(target, f"{name}.json").write_text(json.dumps(live.sequences, indent=1))


# ---------------------------------------------------------------- live tests


@pytest.mark.live
@pytest.mark.asyncio
async def test_text_turn_streams_deltas_and_completes() -> None:
    async with live_codex("text", [TextStep("Hello from the mock", chunks=4)]) as live:
        turn = await live.turn("say hello")
        live.sequences["text"] = turn.labels
        assert turn.status == "completed"
        deltas = [m["params"]["delta"] for m in turn.of("item/agentMessage/delta")]
        assert deltas == ["Hello", " from", " the ", "mock"]
        done = [m["params"]["item"] for m in turn.of("item/completed") if m["params"]["item"]["type"] == "agentMessage"]
        assert len(done) == 1 and done[0]["text"] == "Hello from the mock"
        assert done[0]["id"] == "msg_1"  # item ids come from the mock, so they are stable
        assert len(live.mock.requests) == 1
        req = live.mock.requests[0]
        assert req.model == "gpt-5.5" and "apply_patch" in req.tool_names
        assert req.input[-1]["content"][0]["text"] == "say hello"
        assert live.startup_s < 10.0


@pytest.mark.live
@pytest.mark.asyncio
async def test_shell_command_asks_approval_and_runs_when_accepted() -> None:
    script: list[Step] = [ShellStep("echo cassette-ok"), TextStep("It printed cassette-ok.")]
    async with live_codex("shell", script) as live:
        turn = await live.turn("run echo")
        live.sequences["shell"] = turn.labels
        asks = turn.of("item/commandExecution/requestApproval")
        assert len(asks) == 1
        assert "echo cassette-ok" in asks[0]["params"]["command"]
        assert asks[0]["params"]["itemId"] == "call_1"
        assert turn.status == "completed"
        cmd = [m["params"]["item"] for m in turn.of("item/completed") if m["params"]["item"]["type"] == "commandExecution"]
        assert cmd[0]["status"] == "completed" and cmd[0]["exitCode"] == 0
        assert "cassette-ok" in cmd[0]["aggregatedOutput"]
        # The follow-up model request carries the command's output.
        assert len(live.mock.requests) == 2
        last = live.mock.requests[1].input[-1]
        assert last["type"] == "function_call_output" and last["call_id"] == "call_1"
        assert "cassette-ok" in last["output"]


@pytest.mark.live
@pytest.mark.asyncio
async def test_shell_command_declined() -> None:
    script: list[Step] = [ShellStep("echo nope"), TextStep("Declined, fine.")]
    async with live_codex("shell_declined", script) as live:
        turn = await live.turn("run echo", decide=lambda msg: {"decision": "decline"})
        live.sequences["shell_declined"] = turn.labels
        assert turn.status == "completed"
        cmd = [m["params"]["item"] for m in turn.of("item/completed") if m["params"]["item"]["type"] == "commandExecution"]
        assert cmd[0]["status"] == "declined"
        assert live.mock.requests[1].input[-1]["type"] == "function_call_output"


@pytest.mark.live
@pytest.mark.asyncio
async def test_file_edit_asks_file_change_approval() -> None:
    script: list[Step] = [PatchStep(add_file_patch({"hello.txt": "hi from the mock\n"})), TextStep("Created it.")]
    async with live_codex("patch", script) as live:
        turn = await live.turn("create hello.txt")
        live.sequences["patch"] = turn.labels
        asks = turn.of("item/fileChange/requestApproval")
        assert len(asks) == 1 and asks[0]["params"]["itemId"] == "call_1"
        assert turn.status == "completed"
        assert (live.cwd / "hello.txt").read_text() == "hi from the mock\n"
        change = [m["params"]["item"] for m in turn.of("item/started") if m["params"]["item"]["type"] == "fileChange"]
        assert change[0]["changes"][0]["kind"] == {"type": "add"}
        last = live.mock.requests[1].input[-1]
        assert last["type"] == "custom_tool_call_output" and last["call_id"] == "call_1"


@pytest.mark.live
@pytest.mark.asyncio
async def test_interrupt_mid_stream_then_next_turn_works() -> None:
    script: list[Step] = [GateStep("hold", timeout=TURN_TIMEOUT), TextStep("Back again.")]
    async with live_codex("interrupt", script) as live:
        turn = await live.start_turn("write a long story")
        await live.mock.wait_gate_reached("hold", timeout=TURN_TIMEOUT)
        # Interrupt once the partial message reached the client: codex may
        # otherwise drop the deltas it had not forwarded yet.
        await live.read_until(turn, "item/agentMessage/delta")
        t0 = time.monotonic()
        assert await live.server.request("turn/interrupt", {"threadId": live.thread_id, "turnId": turn.turn_id}) == {}
        await live.finish_turn(turn)
        TIMINGS["interrupt -> turn/completed"] = time.monotonic() - t0
        live.sequences["interrupt"] = turn.labels
        assert turn.status == "interrupted"
        # Codex dropped the model stream, and the mock saw it.
        await live.mock.wait_disconnect(timeout=5.0)
        assert live.mock.requests[0].disconnected
        # The partial agentMessage started but never completes.
        assert [m["params"]["item"]["type"] for m in turn.of("item/started")][-1] == "agentMessage"
        assert not [m for m in turn.of("item/completed") if m["params"]["item"]["type"] == "agentMessage"]
        live.mock.open_gate("hold")
        again = await live.turn("go on")
        live.sequences["after_interrupt"] = again.labels
        assert again.status == "completed"


@pytest.mark.live
@pytest.mark.asyncio
async def test_model_switch_reaches_the_model_and_sticks() -> None:
    script: list[Step] = [TextStep("one"), TextStep("two"), TextStep("three")]
    async with live_codex("model_switch", script) as live:
        assert (await live.turn("first")).status == "completed"
        switched = await live.turn("second", model=SWITCH_MODEL)
        live.sequences["model_switch"] = switched.labels
        assert switched.status == "completed"
        assert (await live.turn("third")).status == "completed"
        # Switching to another catalogue model makes codex compact the context
        # first, with the old model; the mock answers that without a step.
        seen = [(r.kind, r.model) for r in live.mock.requests]
        assert seen == [
            ("turn", "gpt-5.5"), ("compaction", "gpt-5.5"), ("turn", SWITCH_MODEL), ("turn", SWITCH_MODEL)
        ]
        assert [r.step.text for r in live.mock.requests if isinstance(r.step, TextStep)][-1] == "three"


@pytest.mark.live
@pytest.mark.asyncio
async def test_model_failures_fail_the_turn_and_the_next_turn_works() -> None:
    script: list[Step] = [
        FailStep("http_500", message="boom 500"),
        FailStep("response_failed", message="boom failed"),
        FailStep("stream_cut"),
        TextStep("recovered"),
    ]
    async with live_codex("failures", script) as live:
        for kind in ("http_500", "response_failed", "stream_cut"):
            turn = await live.turn(f"try {kind}")
            live.sequences[f"fail_{kind}"] = turn.labels
            live.sequences[f"fail_{kind}_error"] = [json.dumps(m["params"]) for m in turn.of("error")]
            assert turn.status == "failed", kind
            errors = turn.of("error")
            assert errors and errors[-1]["params"]["willRetry"] is False, kind
            assert turn.completed and turn.completed["turn"]["error"]["message"], kind
            if kind == "response_failed":
                assert "boom failed" in turn.completed["turn"]["error"]["message"]
        ok = await live.turn("again")
        assert ok.status == "completed"
        # No retries with request_max_retries = stream_max_retries = 0: one request per turn.
        assert len(live.mock.requests) == 4


# ---------------------------------------------------------------- the mock alone


async def _post(port: int, body: bytes, headers: str = "", read_all: bool = True) -> bytes:
    """A raw HTTP/1.1 POST to the mock; returns the whole answer (connection: close)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5.0)
    head = f"POST /v1/responses HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}"
    if "transfer-encoding" not in headers:
        head += f"content-length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10.0) if read_all else b""
    writer.close()
    return data


def _events(answer: bytes) -> list[tuple[str, dict[str, Any]]]:
    text = answer.decode()
    out = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith(("event: ", "data: "))]
        if len(lines) == 2:
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


@pytest.mark.asyncio
async def test_mock_streams_text_and_records_the_request() -> None:
    async with MockModel([TextStep("a b c")]) as mock:
        answer = await _post(mock.port, json.dumps({"model": "m1", "input": [], "tools": [{"type": "custom", "name": "t"}]}).encode())
        assert answer.startswith(b"HTTP/1.1 200")
        kinds = [k for k, _ in _events(answer)]
        assert kinds == [
            "response.created", "response.output_item.added",
            "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
            "response.output_item.done", "response.completed",
        ]
        assert mock.requests[0].model == "m1" and mock.requests[0].tool_names == ["t"]
        assert mock.base_url == f"http://127.0.0.1:{mock.port}/v1"


@pytest.mark.asyncio
async def test_mock_reads_chunked_bodies_and_fails_when_exhausted() -> None:
    async with MockModel([]) as mock:
        body = json.dumps({"model": "chunky"}).encode()
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        answer = await _post(mock.port, chunked, headers="transfer-encoding: chunked\r\n")
        assert mock.requests[0].model == "chunky"
        assert [k for k, _ in _events(answer)][-1] == "response.failed"
        assert mock.errors and "exhausted" in mock.errors[0]


@pytest.mark.asyncio
async def test_mock_answers_a_bad_body_with_400() -> None:
    async with MockModel([TextStep("unused")]) as mock:
        answer = await _post(mock.port, b"xx", headers="content-encoding: gzip\r\n")
        assert answer.startswith(b"HTTP/1.1 400") and mock.errors and mock.steps_left == 1


@pytest.mark.asyncio
async def test_mock_failures() -> None:
    async with MockModel([FailStep("http_500", message="nope"), FailStep("stream_cut")]) as mock:
        first = await _post(mock.port, b"{}")
        assert first.startswith(b"HTTP/1.1 500") and b"nope" in first
        cut = await _post(mock.port, b"{}")
        kinds = [k for k, _ in _events(cut)]
        assert "response.completed" not in kinds and kinds[-1] == "response.output_text.delta"


@pytest.mark.asyncio
async def test_mock_gate_holds_until_opened_and_notices_disconnects() -> None:
    async with MockModel([GateStep("g", timeout=5.0), GateStep("h", timeout=5.0)]) as mock:
        # Opened while held: the stream completes.
        task = asyncio.ensure_future(_post(mock.port, b"{}"))
        await mock.wait_gate_reached("g", timeout=5.0)
        assert not task.done()
        mock.open_gate("g")
        kinds = [k for k, _ in _events(await asyncio.wait_for(task, 5.0))]
        assert kinds[-1] == "response.completed"
        # Client hangs up while held: recorded as a disconnect.
        reader, writer = await asyncio.open_connection("127.0.0.1", mock.port)
        writer.write(b"POST /v1/responses HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        await mock.wait_gate_reached("h", timeout=5.0)
        writer.close()
        await mock.wait_disconnect(timeout=5.0)
        assert mock.requests[1].disconnected and not mock.requests[0].disconnected


@pytest.mark.asyncio
async def test_mock_gate_timeout_fails_the_response() -> None:
    async with MockModel([GateStep("never", timeout=0.2)]) as mock:
        kinds = [k for k, _ in _events(await _post(mock.port, b"{}"))]
        assert kinds[-1] == "response.failed"
        assert "never" in mock.errors[0]
        with pytest.raises(MockModelError, match="gate 'other'"):
            await mock.wait_gate_reached("other", timeout=0.05)


def test_mock_in_a_thread_for_sync_callers() -> None:
    import urllib.request

    with MockModelThread([TextStep("sync hi")]) as mock:
        req = urllib.request.Request(mock.base_url + "/responses", data=b'{"model":"s"}', method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
            body = resp.read()
        assert b"sync hi" in body
        mock.wait_requests(1, timeout=5)
        assert mock.requests[0].model == "s"


# ---------------------------------------------------------------- script loading


def test_yaml_script_loads_every_step_kind(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        """
model:
  - text: "Hello there"
  - text: {text: "abcdef", chunks: 3, delay: 0.01}
  - text: {deltas: ["Hel", "lo"]}
  - shell: {cmd: "echo hi", justification: "why not"}
  - shell: ls
  - patch: {add: {"a.txt": "one\\ntwo\\n"}}
  - patch: "*** Begin Patch\\n*** Delete File: b.txt\\n*** End Patch"
  - gate: hold
  - gate: {name: slow, before: "Thinking", timeout: 3}
  - fail: http_500
  - fail: {kind: response_failed, message: "quota"}
"""
    )
    steps = load_model_script_file(path)
    assert [type(s).__name__ for s in steps] == [
        "TextStep", "TextStep", "TextStep", "ShellStep", "ShellStep", "PatchStep", "PatchStep",
        "GateStep", "GateStep", "FailStep", "FailStep",
    ]
    assert steps[1].pieces() == ["ab", "cd", "ef"]  # type: ignore[union-attr]
    assert steps[2].text == "Hello"  # type: ignore[union-attr]
    assert steps[3].sandbox_permissions == "require_escalated"  # type: ignore[union-attr]
    assert steps[5].patch == "*** Begin Patch\n*** Add File: a.txt\n+one\n+two\n*** End Patch"  # type: ignore[union-attr]
    assert steps[8].timeout == 3.0  # type: ignore[union-attr]
    assert steps[10].message == "quota"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("not a list", "must be a list"),
        ([{"text": "a", "shell": "b"}], "one-key mapping"),
        ([{"dance": "x"}], "unknown step kind 'dance'"),
        ([{"shell": {"command": "x"}}], "unknown key(s) command"),
        ([{"fail": "explode"}], "unknown failure 'explode'"),
        ([{"patch": {}}], "exactly one of"),
        ([{"text": {"text": "ab", "deltas": ["a"]}}], "join up"),
    ],
)
def test_yaml_script_errors_are_readable(data: Any, fragment: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_model_script(data, "s.yaml")
    assert fragment in str(info.value) and str(info.value).startswith("s.yaml")


# ---------------------------------------------------------------- home and binary


def test_codex_home_env_and_config(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "OPENAI_API_KEY": "sk-secret", "HTTPS_PROXY": "http://proxy:1", "LANG": "C.UTF-8"}
    home = make_codex_home("http://127.0.0.1:1234/v1", tmp_path / "h", approval_policy="on-failure", base_env=base)
    assert "OPENAI_API_KEY" not in home.env and "HTTPS_PROXY" not in home.env
    assert home.env["CODEX_HOME"] == str(home.codex_home) and home.env["HOME"] == str(home.home)
    assert home.env["PATH"] == "/usr/bin"
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    config = tomllib.loads(home.config_path.read_text())
    assert config["model_provider"] == "mock" and config["approval_policy"] == "on-failure"
    assert config["model_providers"]["mock"]["base_url"] == "http://127.0.0.1:1234/v1"
    assert config["features"]["plugins"] is False


def test_default_codex_home_is_not_under_tmp_and_is_removed() -> None:
    with make_codex_home("http://127.0.0.1:1/v1") as home:
        root = home.root
        assert root.is_dir()
    assert not root.exists()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"approval_policy": "untrusted"}, "exit at startup"),
        ({"sandbox_mode": "yolo"}, "sandbox_mode 'yolo'"),
        ({"base_url": "http://10.0.0.1:80/v1"}, "not on loopback"),
    ],
)
def test_codex_home_refuses_what_codex_would_not_honour(tmp_path: Path, kwargs: dict[str, str], fragment: str) -> None:
    args = {"base_url": "http://127.0.0.1:1/v1", **kwargs}
    with pytest.raises(CodexHomeError, match=fragment):
        make_codex_home(args.pop("base_url"), tmp_path, **args)


def test_provider_check() -> None:
    check_mock_provider({"modelProvider": "mock"})
    with pytest.raises(ProviderCheckError, match="'openai'"):
        check_mock_provider({"modelProvider": "openai"})


def test_binary_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "codex"
    fake.write_text("#!/bin/sh\necho 'codex-cli 9.8.7'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CODEX_BIN", str(fake))
    assert find_codex_binary() == fake
    assert codex_version(fake) == "9.8.7"
    assert find_codex_binary(str(fake)) == fake
    with pytest.raises(CodexBinaryError, match="--codex-bin"):
        find_codex_binary(tmp_path / "missing")
    monkeypatch.setenv("CODEX_BIN", str(tmp_path / "missing"))
    with pytest.raises(CodexBinaryError, match=r"\$CODEX_BIN"):
        find_codex_binary()


def test_pinned_binary_version() -> None:
    if os.environ.get("CODEX_BIN"):
        pytest.skip("CODEX_BIN overrides the pinned binary")
    assert codex_version(find_codex_binary()) == "0.163.0"
    assert parse_codex_version("codex-cli 0.163.0\n") == "0.163.0"
    with pytest.raises(CodexBinaryError):
        parse_codex_version("something else")
