"""The replay engine never lies and never hangs (issue 13), driven in-process by a
scripted client over the real in-memory channel: matching binds nothing until a
message is accepted, early acceptance is named, duplicate ids and hostile lines are
divergences, timeouts name their limit, reports are capped and escaped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from harness.format.cassette import Cassette, load_cassette
from harness.format.placeholders import Placeholders
from harness.format.wire import encode
from harness.replay.aio_channels import memory_pair
from harness.replay.engine import DIVERGENCE_CODE, ReplayEngine
from harness.replay.matching import MatchContext, compare
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport
from harness.safe_text import CAP

WAIT = 5.0


def make(tmp_path: Path, *events: dict[str, Any], name: str = "c.jsonl") -> Cassette:
    path = tmp_path / name
    lines = [json.dumps({"codex_cassette": 1, "meta": {"complete": True}})]
    lines += [json.dumps({"i": n, "t": 0.0, **e}) for n, e in enumerate(events, 1)]
    path.write_text("\n".join(lines) + "\n")
    return load_cassette(path)


def cl(msg: Any) -> dict[str, Any]:
    return {"from": "client", "msg": msg}


def sv(msg: Any) -> dict[str, Any]:
    return {"from": "server", "msg": msg}


class Client:
    def __init__(self, stdin: Any, stdout: Any) -> None:
        self.stdin, self.stdout = stdin, stdout

    def send(self, msg: Any) -> None:
        self.stdin.write(encode(msg))

    def send_raw(self, data: bytes) -> None:
        self.stdin.write(data)

    async def recv(self) -> Any:
        line = await asyncio.wait_for(self.stdout.readline(), WAIT)
        return json.loads(line) if line else None

    async def all(self) -> list[Any]:
        """Everything until the engine closes its side."""
        out = []
        while (msg := await self.recv()) is not None:
            out.append(msg)
        return out


async def play(cassette: Cassette, script: Callable[[Client], Awaitable[Any]], **options: Any) -> tuple[ReplayReport, Any]:
    options.setdefault("timeout", WAIT)
    options.setdefault("linger", 0.2)
    channel, stdin, stdout = memory_pair()
    task = asyncio.create_task(ReplayEngine(cassette, channel, ReplayOptions(**options)).run())
    try:
        result = await asyncio.wait_for(script(Client(stdin, stdout)), WAIT * 2)
        stdin.close()
        report = await asyncio.wait_for(task, WAIT * 2)
    finally:
        if not task.done():
            task.cancel()
    return report, result


# -- 1. matching is a pure function ------------------------------------------------------------

REORDERED = (cl({"method": "a", "params": {"cwd": "{{cwd}}", "n": 1}}),
             cl({"method": "a", "params": {"cwd": "{{cwd}}/sub", "n": 2}}),
             sv({"method": "done", "params": {"cwd": "{{cwd}}"}}))


@pytest.mark.asyncio
async def test_a_concurrent_set_in_another_order_matches(tmp_path: Path) -> None:
    # The second message, sent first, is compared with the first candidate before its own:
    # that comparison must not bind cwd to "/w/sub" and so fail the message's own match.
    async def client(c: Client) -> Any:
        c.send({"method": "a", "params": {"cwd": "/w/sub", "n": 2}})
        c.send({"method": "a", "params": {"cwd": "/w", "n": 1}})
        return await c.recv()

    report, done = await play(make(tmp_path, *REORDERED), client)
    assert report.status == "ok", report.summary()
    assert done == {"method": "done", "params": {"cwd": "/w"}}
    assert report.bindings == {"cwd": "/w"}


def test_comparing_a_candidate_binds_nothing(tmp_path: Path) -> None:
    cassette = make(tmp_path, *REORDERED)
    ctx = MatchContext(placeholders=Placeholders({}))
    live = {"method": "a", "params": {"cwd": "/w/sub", "n": 2}}
    assert compare(cassette.events[0], live, ctx) is not None  # would bind cwd=/w/sub, then fail on n
    assert ctx.placeholders.values == {}
    assert compare(cassette.events[1], live, ctx) is None      # so its own candidate still matches (cwd=/w)
    assert ctx.placeholders.values == {}


# -- 2. early acceptance never hides the cause ---------------------------------------------------

SESSION = (cl({"id": 1, "method": "initialize", "params": {}}), sv({"id": 1, "result": {}}),
           cl({"id": 2, "method": "thread/start", "params": {"cwd": "/w"}}),
           sv({"id": 2, "result": {"thread": {"id": "thr"}}}),
           cl({"id": 3, "method": "turn/start", "params": {"threadId": "thr"}}), sv({"id": 3, "result": {}}))


@pytest.mark.asyncio
async def test_a_message_sent_ahead_of_the_one_awaited_is_named_with_both_lines(tmp_path: Path) -> None:
    cassette = make(tmp_path, *SESSION)

    async def client(c: Client) -> Any:
        c.send({"id": 1, "method": "initialize", "params": {}})
        await c.recv()
        c.send({"id": 2, "method": "turn/start", "params": {"threadId": "thr"}})  # before thread/start
        return await c.recv()

    report, answer = await play(cassette, client, timeout=0.3)
    message = report.divergence.message
    assert report.divergence.kind == "timeout"
    assert f"expected client thread/start (id 2) at {cassette.where(cassette.events[2])}" in message
    assert "nothing came in 0.3 s (the replay timeout)" in message
    assert f"client turn/start (id 3), which the cassette has later, at {cassette.where(cassette.events[4])}" in message
    # The client waits on its turn/start: it gets the cause as that request's answer.
    assert answer["id"] == 2 and answer["error"]["code"] == DIVERGENCE_CODE
    assert answer["error"]["message"] == message


@pytest.mark.asyncio
async def test_a_mismatch_names_what_was_accepted_ahead_too(tmp_path: Path) -> None:
    cassette = make(tmp_path, *SESSION)

    async def client(c: Client) -> Any:
        c.send({"id": 1, "method": "initialize", "params": {}})
        await c.recv()
        c.send({"id": 2, "method": "turn/start", "params": {"threadId": "thr"}})
        c.send({"id": 3, "method": "thread/start", "params": {"cwd": "/elsewhere"}})
        return await c.all()

    report, answers = await play(cassette, client)
    assert report.divergence.kind == "mismatch"
    assert "turn/start (id 3), which the cassette has later" in report.divergence.message
    assert sorted(a["id"] for a in answers) == [2, 3]  # both requests answered with the error
    assert all(a["error"]["code"] == DIVERGENCE_CODE for a in answers)


# -- 4. hostile input on the wire: divergences, never tracebacks -----------------------------------

@pytest.mark.asyncio
async def test_a_request_id_already_in_flight_is_a_divergence(tmp_path: Path) -> None:
    cassette = make(tmp_path, cl({"id": 1, "method": "a", "params": {}}), cl({"id": 2, "method": "b", "params": {}}),
                    sv({"id": 1, "result": "A"}), sv({"id": 2, "result": "B"}))

    async def client(c: Client) -> Any:
        c.send({"id": 7, "method": "a", "params": {}})
        c.send({"id": 7, "method": "b", "params": {}})
        return await c.all()

    report, answers = await play(cassette, client)
    assert report.divergence.kind == "duplicate_id"
    assert "the client sent id 7 while its request client a (id 1)" in report.divergence.message
    assert cassette.where(cassette.events[1]) in report.divergence.message
    assert [a["error"]["code"] for a in answers] == [DIVERGENCE_CODE]


@pytest.mark.asyncio
async def test_an_id_the_recording_reused_the_same_way_is_no_divergence(tmp_path: Path) -> None:
    # A recording of a client that reused an id in flight replays as recorded.
    cassette = make(tmp_path, cl({"id": 1, "method": "a", "params": {}}), cl({"id": 1, "method": "b", "params": {}}),
                    sv({"id": 1, "result": "A"}))

    async def client(c: Client) -> Any:
        c.send({"id": 5, "method": "a", "params": {}})
        c.send({"id": 5, "method": "b", "params": {}})
        return await c.recv()

    report, answer = await play(cassette, client)
    assert report.status == "ok", report.summary()
    assert answer == {"id": 5, "result": "A"}


@pytest.mark.asyncio
@pytest.mark.parametrize("line,words", [
    (b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than 100 levels"),
    (b'{"id": 1, "method": "a", "params": {"x": ' + b"[" * 101 + b"]" * 101 + b"}}\n", "nested deeper than 100"),
    (b'{"id": 1, "method": "a\xff"}\n', "not UTF-8 (byte 0xff)"),
    (b'{"id": 1, "method": "a", "params": {"x": "\\ud800"}}\n', "params differ"),
    (b'{"id": "\\udfff", "method": "b"}\n', "expected method 'a', got 'b'"),
    (b"\x1b]0;retitled\x07\x1b[2J not json\n", "not a JSON-RPC message"),
], ids=["deep-array", "deep-params", "invalid-utf8", "lone-surrogate-param", "lone-surrogate-id", "escapes"])
async def test_hostile_lines_are_divergences(tmp_path: Path, line: bytes, words: str) -> None:
    cassette = make(tmp_path, cl({"id": 1, "method": "a", "params": {}}), sv({"id": 1, "result": "A"}))

    async def client(c: Client) -> Any:
        c.send_raw(line)
        return await c.all()

    report, answers = await play(cassette, client)
    assert report.status == "diverged"
    assert words in report.divergence.message, report.divergence.message
    assert "\x1b" not in report.summary() and "\x07" not in report.summary()
    for answer in answers:  # a request among them is answered, encodable whatever its id
        assert answer["error"]["code"] == DIVERGENCE_CODE


# -- 5. reports are bounded and safe ----------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_huge_diverging_value_gives_a_capped_report_and_error(tmp_path: Path) -> None:
    cassette = make(tmp_path, cl({"id": 1, "method": "a", "params": {"v": "recorded"}}), sv({"id": 1, "result": "A"}))
    huge = "\x1b[2J" + "y" * 5_000_000

    async def client(c: Client) -> Any:
        c.send({"id": 1, "method": "a", "params": {"v": huge}})
        return await c.all()

    report, [answer] = await play(cassette, client)
    div = report.divergence
    assert len(div.message.encode()) <= CAP + 64 and len(div.diff.encode()) <= CAP + 64
    assert len(json.dumps(div.received)) <= CAP * 2
    assert len(encode(answer)) <= 3 * CAP  # message and data, each capped
    assert "\x1b" not in div.message + div.diff + report.summary()
    assert "\\u001b[2J" in div.diff  # escaped, still readable
    assert len(report.summary().encode()) <= 3 * CAP


@pytest.mark.asyncio
async def test_a_big_value_is_diffed_by_its_top_level_keys(tmp_path: Path) -> None:
    recorded = {"items": [{"k": i} for i in range(20_000)], "same": 1}
    live = {"items": [{"k": i + 1} for i in range(20_000)], "same": 1, "extra": True}
    cassette = make(tmp_path, cl({"id": 1, "method": "a", "params": recorded}), sv({"id": 1, "result": "A"}))

    async def client(c: Client) -> Any:
        c.send({"id": 1, "method": "a", "params": live})
        return await c.all()

    report, _ = await play(cassette, client)
    diff = report.divergence.diff
    assert "Value of params['items'] changed from" in diff and "bytes)" in diff
    assert "Item params['extra'] added to dictionary." in diff
    assert "same" not in diff


# -- 6. timeouts say which wait expired -------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_timeout_names_the_start_up_limit_when_that_one_expired(tmp_path: Path) -> None:
    cassette = make(tmp_path, cl({"id": 1, "method": "initialize"}), sv({"id": 1, "result": {}}),
                    cl({"method": "initialized"}))

    async def silent(c: Client) -> Any:
        return await c.all()

    report, _ = await play(cassette, silent, timeout=0.1, startup_timeout=0.4)
    assert "nothing came in 0.4 s (the start-up limit, before the first message)" in report.divergence.message

    async def then_silent(c: Client) -> Any:
        c.send({"id": 1, "method": "initialize"})
        return await c.all()

    report, _ = await play(cassette, then_silent, timeout=0.1, startup_timeout=0.4)
    assert "nothing came in 0.1 s (the replay timeout)" in report.divergence.message
