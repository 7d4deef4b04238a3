"""The built-in scripted client: drives a codex app-server through a live scenario.

It speaks the protocol plainly (integer ids from 1, no jsonrpc field) and does
what the scenario's ``client`` list says:

```yaml
client:
  - turn: "Run echo hi"              # turn/start; waits for turn/completed
    approvals: [accept]              # decisions for this turn's approval requests, in order
    model: gpt-5.4                   # optional per-turn model (it sticks, as in codex)
    interrupt: {after_deltas: 1}     # send turn/interrupt after N agentMessage deltas
    expect: completed                # completed | interrupted | failed (checked)
  - request: {method: model/list, params: {}}   # any other request, answered before going on
```

Before the actions: initialize, initialized, thread/start (cwd, sandbox and
approval policy from the scenario's ``codex`` part), and the check that codex
really talks to the mock model. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from harness import __version__
from harness.errors import HarnessError, ScenarioError
from harness.live.codex_home import check_mock_provider

DECISIONS = ("accept", "acceptForSession", "decline", "cancel")
APPROVAL_METHODS = ("item/commandExecution/requestApproval", "item/fileChange/requestApproval")
TURN_END = ("completed", "interrupted", "failed")


class LiveClientError(HarnessError):
    """The live codex did not do what the scenario needs (or did not answer in time)."""


@dataclass
class TurnState:
    approvals: list[str]
    deltas: int = 0
    interrupt_after: int | None = None
    interrupted: bool = False
    turn_id: str | None = None
    done: asyncio.Future | None = None


@dataclass
class ScriptedClient:
    handle: Any                    # .stdin (write, drain, close) and .stdout (async iterator of lines)
    timeout: float = 30.0
    source: str = "<scenario>"
    thread_id: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    _next_id: int = 0
    _pending: dict[int, asyncio.Future] = field(default_factory=dict)
    _turn: TurnState | None = None
    _reader: asyncio.Task | None = None
    _closed: bool = False

    # -- wire ------------------------------------------------------------------

    async def _send(self, msg: dict[str, Any]) -> None:
        self.handle.stdin.write((json.dumps(msg) + "\n").encode("utf-8"))
        drain = getattr(self.handle.stdin, "drain", None)
        if drain is not None:
            await asyncio.wait_for(drain(), self.timeout)

    async def request(self, method: str, params: Any = None) -> Any:
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        msg: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        await self._send(msg)
        try:
            reply = await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError:
            raise LiveClientError(f"codex did not answer {method} within {self.timeout:g} s") from None
        if "error" in reply:
            raise LiveClientError(f"codex answered {method} with an error: {reply['error']}")
        return reply.get("result")

    async def _read(self) -> None:
        try:
            async for raw in self.handle.stdout:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(msg, dict):
                    self.log.append(msg)
                    await self._route(msg)
        finally:
            self._closed = True
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(LiveClientError("codex closed its stdout"))
            if self._turn and self._turn.done and not self._turn.done.done():
                self._turn.done.set_exception(LiveClientError("codex closed its stdout mid-turn"))

    async def _route(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method is None:
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if "id" in msg:
            await self._answer_server_request(msg)
            return
        turn = self._turn
        if turn is None:
            return
        params = msg.get("params") or {}
        if method == "turn/started":
            turn.turn_id = (params.get("turn") or {}).get("id") or turn.turn_id
        elif method == "item/agentMessage/delta":
            turn.deltas += 1
            if turn.interrupt_after is not None and not turn.interrupted and turn.deltas >= turn.interrupt_after:
                turn.interrupted = True
                asyncio.ensure_future(self._interrupt(turn))
        elif method == "turn/completed" and turn.done is not None and not turn.done.done():
            turn.done.set_result((params.get("turn") or {}).get("status"))

    async def _interrupt(self, turn: TurnState) -> None:
        try:
            await self.request("turn/interrupt", {"threadId": self.thread_id, "turnId": turn.turn_id})
        except LiveClientError as exc:
            if turn.done is not None and not turn.done.done():
                turn.done.set_exception(exc)

    async def _answer_server_request(self, msg: dict[str, Any]) -> None:
        method = msg["method"]
        if method in APPROVAL_METHODS:
            approvals = self._turn.approvals if self._turn else []
            decision = approvals.pop(0) if approvals else "decline"
            await self._send({"id": msg["id"], "result": {"decision": decision}})
        else:
            await self._send({"id": msg["id"], "error": {"code": -32601,
                                                         "message": f"the scripted client does not handle {method}"}})

    # -- the script ------------------------------------------------------------

    async def start(self, codex: dict[str, Any], cwd: str) -> None:
        self._reader = asyncio.ensure_future(self._read())
        await self.request("initialize", {"clientInfo": {"name": "codex_cassette", "title": "codex-cassette",
                                                         "version": __version__}})
        await self._send({"method": "initialized"})
        params = {"cwd": cwd, "sandbox": codex.get("sandbox_mode", "read-only"),
                  "approvalPolicy": codex.get("approval_policy", "on-request")}
        result = await self.request("thread/start", params)
        check_mock_provider(result or {})
        self.thread_id = ((result or {}).get("thread") or {}).get("id")

    async def run(self, actions: list[Any]) -> None:
        for n, action in enumerate(actions, start=1):
            if not isinstance(action, dict):
                raise ScenarioError(self.source, None, f"client action {n} must be a mapping, not {action!r}")
            if "turn" in action:
                await self._run_turn(n, action)
            elif "request" in action:
                spec = action["request"]
                if not isinstance(spec, dict) or not isinstance(spec.get("method"), str):
                    raise ScenarioError(self.source, None, f"client action {n}: 'request' needs a method")
                await self.request(spec["method"], spec.get("params", {}))
            else:
                raise ScenarioError(self.source, None, f"client action {n}: expected 'turn' or 'request', "
                                    f"got {sorted(action)}")

    async def _run_turn(self, n: int, action: dict[str, Any]) -> None:
        approvals = list(action.get("approvals") or [])
        bad = [d for d in approvals if d not in DECISIONS]
        if bad:
            raise ScenarioError(self.source, None, f"client action {n}: unknown decision(s) {bad}; "
                                f"use {', '.join(DECISIONS)}")
        interrupt = action.get("interrupt")
        after = None
        if interrupt:
            after = int(interrupt.get("after_deltas", 1)) if isinstance(interrupt, dict) else 1
        expect = action.get("expect", "interrupted" if interrupt else "completed")
        if expect not in TURN_END:
            raise ScenarioError(self.source, None, f"client action {n}: expect must be one of {TURN_END}")
        turn = TurnState(approvals=approvals, interrupt_after=after,
                         done=asyncio.get_running_loop().create_future())
        self._turn = turn
        params: dict[str, Any] = {"threadId": self.thread_id, "input": [{"type": "text", "text": str(action["turn"])}]}
        if action.get("model"):
            params["model"] = action["model"]
        result = await self.request("turn/start", params)
        turn.turn_id = ((result or {}).get("turn") or {}).get("id")
        try:
            status = await asyncio.wait_for(turn.done, self.timeout)
        except asyncio.TimeoutError:
            raise LiveClientError(f"turn {action['turn']!r} did not complete within {self.timeout:g} s") from None
        finally:
            self._turn = None
        if status != expect:
            raise LiveClientError(f"turn {action['turn']!r} ended {status!r}, the scenario expects {expect!r}")

    async def close(self) -> None:
        """Close codex's stdin (codex exits 0 on that) and let the reader finish."""
        self.handle.stdin.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, self.timeout)
            except asyncio.TimeoutError:
                self._reader.cancel()
