"""A scripted loopback mock of the OpenAI Responses API, for running the real
codex binary offline.

Codex POSTs to `{base_url}/responses` and reads a `text/event-stream` answer.
The mock answers each request with the next step of its script (see
harness.live.model_script) and records every request it received, so a test
can check what reached the model (model slug, input items, tools).

Plain asyncio streams on purpose: codex sends ordinary HTTP/1.1 requests with
Content-Length bodies over keep-alive connections, which is little enough to
serve without a web framework, and it lets the mock notice exactly when codex
drops a stream (an interrupt) instead of a framework hiding it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.live.http import MAX_BODY_BYTES, MAX_HEADER_BYTES, BadRequest, ClientGone, decode_content, read_chunked, send_plain
from harness.live.sse import SseStream, completed, deltas, failed, message_added, message_done, stream_message
from harness.live.model_script import (
    FailStep,
    GateStep,
    PatchStep,
    ShellStep,
    Step,
    TextStep,
    split_text,
)

# Codex compacts the context on its own, e.g. before a turn that switches to a
# model of another family; these requests are answered without using a step.
COMPACTION_MARKER = "CONTEXT CHECKPOINT COMPACTION"
COMPACTION_SUMMARY = "Summary (mock): the conversation so far was scripted by codex-cassette."


class MockModelError(HarnessError):
    """The mock model could not start, or something a test waited for on it did not happen in time."""


@dataclass
class RecordedRequest:
    """One HTTP request the mock received, with its JSON body parsed."""

    index: int  # 1-based, in arrival order
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    received_at: float  # time.monotonic()
    step: Step | None = None  # the script step that answered it (None: not a model call)
    disconnected: bool = False  # the client hung up before the answer was complete

    @property
    def kind(self) -> str:
        """What codex asked for: "turn", "compaction", ... (its turn-metadata header)."""
        try:
            meta = json.loads(self.headers.get("x-codex-turn-metadata", "{}"))
        except ValueError:
            meta = {}
        kind = meta.get("request_kind") if isinstance(meta, dict) else None
        if not kind and COMPACTION_MARKER in json.dumps(self.input[-1:]):
            kind = "compaction"
        return str(kind or "turn")

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def input(self) -> list[Any]:
        return list(self.body.get("input") or []) if isinstance(self.body, dict) else []

    @property
    def tools(self) -> list[Any]:
        return list(self.body.get("tools") or []) if isinstance(self.body, dict) else []

    @property
    def tool_names(self) -> list[str]:
        names = []
        for tool in self.tools:
            if isinstance(tool, dict):
                names.append(str(tool.get("name") or tool.get("type")))
        return names


@dataclass
class Gate:
    """A named hold point: `reached` is set when a stream stops at it, `opened`
    lets the stream go on. Opening before it is reached makes it a no-op."""

    name: str
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)


class MockModel:
    """The mock Responses API server. Use as `async with MockModel(steps) as mock:`.

    `mock.base_url` is what goes in codex's provider config (it ends in `/v1`).
    With `auto_compaction` (default) codex's own context-compaction requests
    get a canned summary and do not consume a script step; they are still
    recorded (`request.kind == "compaction"`).
    """

    def __init__(
        self,
        script: Sequence[Step] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = 120.0,
        auto_compaction: bool = True,
    ) -> None:
        self._script: list[Step] = list(script)
        self._next_step = 0
        self._host = host
        self._port = port
        self._idle_timeout = idle_timeout
        self._auto_compaction = auto_compaction
        self._server: asyncio.AbstractServer | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._gates: dict[str, Gate] = {}
        self._request_arrived = asyncio.Event()
        self._disconnect_seen = asyncio.Event()
        self.requests: list[RecordedRequest] = []
        self.other_requests: list[RecordedRequest] = []  # anything not POST .../responses
        self.errors: list[str] = []  # script problems: exhausted, gate timeouts, bad bodies

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> "MockModel":
        try:
            self._server = await asyncio.start_server(
                self._handle_connection, self._host, self._port, limit=MAX_HEADER_BYTES
            )
        except OSError as exc:
            raise MockModelError(
                f"The mock model could not listen on {self._host}:{self._port}: {exc.strerror or exc}."
            ) from None
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conn_tasks):
            task.cancel()
        if self._conn_tasks:
            await asyncio.wait(self._conn_tasks, timeout=5.0)
        self._server = None

    async def __aenter__(self) -> "MockModel":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}/v1"

    # ------------------------------------------------------------ script control

    def add_steps(self, steps: Sequence[Step]) -> None:
        """Append steps to the script (a driver may script as it goes)."""
        self._script.extend(steps)

    @property
    def steps_left(self) -> int:
        return len(self._script) - self._next_step

    def gate(self, name: str) -> Gate:
        if name not in self._gates:
            self._gates[name] = Gate(name)
        return self._gates[name]

    def open_gate(self, name: str) -> None:
        self.gate(name).opened.set()

    async def wait_gate_reached(self, name: str, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self.gate(name).reached.wait(), timeout)
        except asyncio.TimeoutError:
            raise MockModelError(
                f"No model stream reached gate {name!r} within {timeout:g} s; "
                f"the mock got {len(self.requests)} model request(s) and has {self.steps_left} step(s) left."
            ) from None

    async def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        """Wait until at least `count` model requests have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MockModelError(
                    f"The mock model expected {count} request(s) within {timeout:g} s but got {len(self.requests)}."
                )
            self._request_arrived.clear()
            try:
                await asyncio.wait_for(self._request_arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_disconnect(self, timeout: float = 10.0) -> None:
        """Wait until some client dropped a stream before its end (an interrupt)."""
        try:
            await asyncio.wait_for(self._disconnect_seen.wait(), timeout)
        except asyncio.TimeoutError:
            raise MockModelError(f"No client dropped a model stream within {timeout:g} s.") from None

    # ------------------------------------------------------------ HTTP

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._idle_timeout)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError):
                    return
                try:
                    request = await self._read_request(head, reader)
                except BadRequest as exc:
                    self.errors.append(f"bad request: {exc}")
                    await send_plain(writer, 400, {"error": {"message": str(exc)}}, close=True)
                    return
                keep_alive = request.headers.get("connection", "").lower() != "close"
                if request.method == "POST" and request.path.rstrip("/").endswith("/responses"):
                    self.requests.append(request)
                    request.index = len(self.requests)
                    self._request_arrived.set()
                    ok = await self._answer_model_request(request, reader, writer)
                    keep_alive = keep_alive and ok
                else:
                    self.other_requests.append(request)
                    await send_plain(writer, 404, {"error": {"message": f"mock has no {request.path}"}})
                if not keep_alive:
                    return
        except (ConnectionError, ClientGone, asyncio.IncompleteReadError, asyncio.TimeoutError):
            return
        finally:
            self._conn_tasks.discard(task)
            writer.close()

    async def _read_request(self, head: bytes, reader: asyncio.StreamReader) -> RecordedRequest:
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ", 2)
        except ValueError:
            raise BadRequest(f"malformed request line {lines[0]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                raw = await read_chunked(reader)
            else:
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY_BYTES:
                    raise BadRequest(f"body of {length} bytes is over the {MAX_BODY_BYTES} limit")
                raw = await asyncio.wait_for(reader.readexactly(length), 30.0) if length else b""
            raw = decode_content(raw, headers.get("content-encoding", ""))
        except ValueError as exc:  # a bad length or chunk size
            raise BadRequest(f"{method} {path}: unreadable body ({exc})") from None
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self.errors.append(f"{method} {path}: body is not JSON ({len(raw)} bytes)")
        return RecordedRequest(0, method, path, headers, body, time.monotonic())

    # ------------------------------------------------------------ answering

    async def _answer_model_request(
        self, request: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer with the next script step. Returns False when the connection must close."""
        n = request.index
        if self._auto_compaction and request.kind == "compaction":
            step: Step = TextStep(COMPACTION_SUMMARY)
        elif self._next_step >= len(self._script):
            msg = f"mock model script exhausted: request {n} has no step left ({len(self._script)} scripted)"
            self.errors.append(msg)
            step = FailStep(kind="response_failed", message=msg)
        else:
            step = self._script[self._next_step]
            self._next_step += 1
        request.step = step

        if isinstance(step, FailStep) and step.kind == "http_500":
            await send_plain(
                writer, step.status, {"error": {"message": step.message, "type": "server_error", "code": None}}
            )
            return True

        stream = SseStream(reader, writer)
        try:
            await stream.start()
            await self._play_step(step, n, stream)
            await stream.finish()
            return True
        except ClientGone:
            request.disconnected = True
            self._disconnect_seen.set()
            return False
        finally:
            stream.stop_watching()

    async def _play_step(self, step: Step, n: int, s: "SseStream") -> None:
        resp_id = f"resp_{n}"
        await s.event("response.created", {"response": {"id": resp_id, "status": "in_progress"}})
        if isinstance(step, TextStep):
            await stream_message(s, f"msg_{n}", step.pieces(), step.delay)
            await completed(s, resp_id)
        elif isinstance(step, ShellStep):
            args: dict[str, Any] = {
                "cmd": step.cmd,
                "yield_time_ms": step.yield_time_ms,
                "sandbox_permissions": step.sandbox_permissions,
                "justification": step.justification,
            }
            if step.workdir is not None:
                args["workdir"] = step.workdir
            item = {
                "type": "function_call",
                "id": f"fc_{n}",
                "call_id": f"call_{n}",
                "name": "exec_command",
                "arguments": json.dumps(args),
                "status": "completed",
            }
            await s.event("response.output_item.done", {"output_index": 0, "item": item})
            await completed(s, resp_id)
        elif isinstance(step, PatchStep):
            item = {
                "type": "custom_tool_call",
                "id": f"ctc_{n}",
                "call_id": f"call_{n}",
                "name": "apply_patch",
                "input": step.patch,
                "status": "completed",
            }
            await s.event("response.output_item.done", {"output_index": 0, "item": item})
            await completed(s, resp_id)
        elif isinstance(step, GateStep):
            gate = self.gate(step.name)
            item_id = f"msg_{n}"
            await message_added(s, item_id)
            await deltas(s, item_id, split_text(step.before, None), 0.0)
            gate.reached.set()
            opened = await s.wait_or_gone(gate.opened.wait(), step.timeout)
            if not opened:
                msg = f"gate {step.name!r} was not opened within {step.timeout:g} s"
                self.errors.append(msg)
                await failed(s, resp_id, msg)
                return
            await deltas(s, item_id, split_text(step.after, None), 0.0)
            await message_done(s, item_id, step.before + step.after)
            await completed(s, resp_id)
        elif isinstance(step, FailStep):
            if step.kind == "response_failed":
                await failed(s, resp_id, step.message)
            else:  # stream_cut: a partial message, then the body ends without response.completed
                item_id = f"msg_{n}"
                await message_added(s, item_id)
                await deltas(s, item_id, ["Partial "], 0.0)
        else:  # pragma: no cover - the Step union is closed
            raise TypeError(f"unknown step {step!r}")


# ------------------------------------------------------------------ sync wrapper


class MockModelThread:
    """The mock running on its own event loop in a background thread, for
    synchronous callers: `with MockModelThread(steps) as mock: mock.base_url`."""

    def __init__(self, script: Sequence[Step] = (), **kwargs: Any) -> None:
        self._script = list(script)
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.mock: MockModel | None = None

    def start(self, timeout: float = 10.0) -> "MockModelThread":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self.mock = loop.run_until_complete(MockModel(self._script, **self._kwargs).start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.mock.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="mock-model", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise MockModelError(f"The mock model thread did not start within {timeout:g} s.")
        if failure:
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> "MockModelThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any, timeout: float) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout + 5.0)

    def _model(self) -> MockModel:
        if self.mock is None:
            raise MockModelError("The mock model thread is not running; call start() first.")
        return self.mock

    @property
    def base_url(self) -> str:
        return self._model().base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._model().requests)

    @property
    def errors(self) -> list[str]:
        return list(self._model().errors)

    def add_steps(self, steps: Sequence[Step]) -> None:
        mock = self._model()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(mock.add_steps, list(steps))

    def open_gate(self, name: str) -> None:
        mock = self._model()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(mock.open_gate, name)

    def wait_gate_reached(self, name: str, timeout: float = 10.0) -> None:
        self._call(self._model().wait_gate_reached(name, timeout), timeout)

    def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        self._call(self._model().wait_requests(count, timeout), timeout)

    def wait_disconnect(self, timeout: float = 10.0) -> None:
        self._call(self._model().wait_disconnect(timeout), timeout)
