"""The replay engine, driven over an in-memory pipe by a scripted peer written
here (the peer is the test; the engine is the real thing), and the fake server
as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from fake_server import FakeCodexCommand, write_bin_dir
from harness.format.cassette import Cassette, load_cassette
from harness.format.load import open_cassette
from harness.replay.aio_channels import memory_pair
from harness.format.redact import Redactor
from harness.replay.engine import DIVERGENCE_CODE, ReplayEngine
from harness.replay.options import SERVER_CHOSEN
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport
from harness.format.wire import encode

WAIT = 5.0  # the longest any step here waits


# -- building cassettes ------------------------------------------------------------


def cl(msg: Any = None, t: float = 0.0, **payload: Any) -> dict[str, Any]:
    return _ev("client", msg, t, payload)


def sv(msg: Any = None, t: float = 0.0, **payload: Any) -> dict[str, Any]:
    return _ev("server", msg, t, payload)


def _ev(side: str, msg: Any, t: float, payload: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"from": side, "t": t}
    if msg is not None:
        out["msg"] = msg
    out.update(payload)
    return out


def make(tmp_path: Path, *events: dict[str, Any], meta: dict[str, Any] | None = None,
         name: str = "c.jsonl") -> Cassette:
    """Write a real cassette file (so reports can name file:line) and load it."""
    path = tmp_path / name
    lines = [json.dumps({"codex_cassette": 1, "meta": {"complete": True, **(meta or {})}})]
    lines += [json.dumps({"i": n, **e}) for n, e in enumerate(events, 1)]
    path.write_text("\n".join(lines) + "\n")
    return load_cassette(path)


def yaml_scenario(tmp_path: Path, text: str, name: str = "s.yaml") -> Cassette:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return open_cassette(path)


def line_of(cassette: Cassette, n: int) -> str:
    """file:line of the n-th event (0-based)."""
    return cassette.where(cassette.events[n])


# -- the scripted peer ---------------------------------------------------------------


class Peer:
    """The live side: writes JSON lines into the engine, reads what it plays."""

    def __init__(self, stdin: Any, stdout: Any) -> None:
        self.stdin = stdin
        self.stdout = stdout

    def send(self, msg: Any) -> None:
        self.stdin.write(encode(msg))

    def send_raw(self, data: bytes) -> None:
        self.stdin.write(data)

    async def line(self, timeout: float = WAIT) -> bytes:
        """The next line, newline kept; b"" at end of stream."""
        try:
            return await asyncio.wait_for(self.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the engine sent nothing in {timeout} s") from None

    async def recv(self, timeout: float = WAIT) -> Any:
        data = await self.line(timeout)
        return json.loads(data) if data else None

    async def silent_for(self, seconds: float) -> None:
        try:
            data = await asyncio.wait_for(self.stdout.readline(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"expected nothing yet, got {data!r}")

    def close(self) -> None:
        self.stdin.close()


async def play(cassette: Cassette, peer_script: Callable[[Peer], Awaitable[Any]],
               **options: Any) -> tuple[ReplayReport, Any]:
    options.setdefault("timeout", WAIT)
    options.setdefault("linger", WAIT)
    channel, stdin, stdout = memory_pair()
    engine = ReplayEngine(cassette, channel, ReplayOptions(**options))
    task = asyncio.create_task(engine.run())
    peer = Peer(stdin, stdout)
    try:
        result = await asyncio.wait_for(peer_script(peer), WAIT * 2)
        peer.close()
        report = await asyncio.wait_for(task, WAIT * 2)
    finally:
        if not task.done():
            task.cancel()
    return report, result


INIT = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "t"}}}
INIT_OK = {"id": 1, "result": {"userAgent": "codex/0.163.0"}}
INITIALIZED = {"method": "initialized"}


# -- causal order ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_causal_order(tmp_path: Path) -> None:
    c = make(tmp_path,
             sv({"method": "hello/beforeAnything"}),
             cl(INIT), sv(INIT_OK), sv({"method": "note/one"}),
             cl(INITIALIZED), sv({"method": "note/two"}))

    async def peer(p: Peer) -> None:
        # Everything before the first client message goes out at once.
        assert (await p.recv())["method"] == "hello/beforeAnything"
        await p.silent_for(0.1)
        p.send({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "t"}}})
        assert await p.recv() == INIT_OK
        assert await p.recv() == {"method": "note/one"}
        # note/two was recorded after `initialized`: it must wait for it.
        await p.silent_for(0.15)
        p.send(INITIALIZED)
        assert await p.recv() == {"method": "note/two"}

    report, _ = await play(c, peer)
    assert report.status == "ok", report.summary()
    assert (report.matched, report.played, report.total) == (2, 6, 6)
    assert not report.failed()


@pytest.mark.asyncio
async def test_consecutive_client_messages_match_as_a_set(tmp_path: Path) -> None:
    c = make(tmp_path,
             cl({"id": 1, "method": "a"}), cl({"id": 2, "method": "b"}), cl({"method": "c"}),
             sv({"id": 1, "result": "A"}), sv({"id": 2, "result": "B"}))

    async def peer(p: Peer) -> list[Any]:
        p.send({"method": "c"})
        p.send({"id": 20, "method": "b"})
        p.send({"id": 10, "method": "a"})
        return [await p.recv(), await p.recv()]

    report, got = await play(c, peer)
    assert report.status == "ok", report.summary()
    assert got == [{"id": 10, "result": "A"}, {"id": 20, "result": "B"}]
    assert report.matched == 3


@pytest.mark.asyncio
async def test_message_of_a_later_set_is_accepted_early(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT), sv(INIT_OK), cl(INITIALIZED), sv({"method": "after/initialized"}))

    async def peer(p: Peer) -> None:
        p.send(INITIALIZED)          # pipelined ahead of its turn
        p.send(INIT)
        assert await p.recv() == INIT_OK
        assert await p.recv() == {"method": "after/initialized"}

    report, _ = await play(c, peer)
    assert report.status == "ok", report.summary()
    assert report.matched == 2 and report.played == 4


# -- ids ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("recorded_id,live_id", [
    (1, 42),
    (1, "req-abc"),
    (str(uuid.uuid4()), str(uuid.uuid4())),
    ("7", 7),  # a string id and an int id are different ids; mapping keeps the live one
], ids=["int", "string", "uuid", "string-vs-int"])
async def test_request_ids_are_mapped_to_the_live_ones(tmp_path: Path, recorded_id: Any, live_id: Any) -> None:
    c = make(tmp_path,
             cl({"id": recorded_id, "method": "thread/start", "params": {}}),
             sv({"method": "thread/started"}),
             sv({"id": recorded_id, "result": {"thread": {"id": "thr"}}}),
             cl({"id": recorded_id, "method": "thread/read", "params": {}}),
             sv({"id": recorded_id, "error": {"code": -32600, "message": "nope"}}))

    async def peer(p: Peer) -> list[Any]:
        p.send({"id": live_id, "method": "thread/start", "params": {}})
        got = [await p.recv(), await p.recv()]
        p.send({"id": live_id, "method": "thread/read", "params": {}})
        got.append(await p.recv())
        return got

    report, got = await play(c, peer)
    assert report.status == "ok", report.summary()
    assert got[1] == {"id": live_id, "result": {"thread": {"id": "thr"}}}
    assert got[2] == {"id": live_id, "error": {"code": -32600, "message": "nope"}}


@pytest.mark.asyncio
async def test_server_request_ids_go_out_verbatim_and_must_come_back(tmp_path: Path) -> None:
    approval = {"id": 0, "method": "item/commandExecution/requestApproval", "params": {"itemId": "i1"}}
    c = make(tmp_path, cl(INIT), sv(INIT_OK), sv(approval), cl({"id": 0, "result": {"decision": "accept"}}),
             sv({"method": "item/completed"}))

    async def good(p: Peer) -> None:
        p.send({"id": 9, "method": "initialize", "params": {"clientInfo": {"name": "t"}}})
        assert (await p.recv())["id"] == 9
        assert await p.recv() == approval
        p.send({"id": 0, "result": {"decision": "accept"}})
        assert await p.recv() == {"method": "item/completed"}

    report, _ = await play(c, good)
    assert report.status == "ok", report.summary()

    async def wrong_id(p: Peer) -> None:
        p.send(INIT)
        await p.recv()
        await p.recv()
        p.send({"id": 1, "result": {"decision": "accept"}})
        assert await p.recv() is None  # the engine ends the session

    report, _ = await play(c, wrong_id)
    assert report.status == "diverged"
    assert report.divergence.matcher == "id"
    assert "expected a response to id 0, got one to id 1" in report.divergence.message


# -- placeholders ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_placeholders_bind_on_first_sight_inside_longer_strings(tmp_path: Path) -> None:
    c = make(tmp_path,
             cl({"id": 1, "method": "fs/read", "params": {"path": "{{cwd}}/src/main.py"}}),
             sv({"id": 1, "result": {"cwd": "{{cwd}}", "log": "{{cwd}}/.codex/log and {{home}}",
                                     "other": "{{not_a_known_name}}"}}),
             cl({"id": 2, "method": "thread/start", "params": {"cwd": "{{cwd}}"}}),
             sv({"id": 2, "result": {}}))
    live_cwd = "/live/work dir"

    async def peer(p: Peer) -> list[Any]:
        p.send({"id": 1, "method": "fs/read", "params": {"path": f"{live_cwd}/src/main.py"}})
        first = await p.recv()
        p.send({"id": 2, "method": "thread/start", "params": {"cwd": live_cwd}})
        return [first, await p.recv()]

    report, got = await play(c, peer)
    assert report.status == "ok", report.summary()
    # Bound values are substituted; a well-known marker the client never revealed
    # falls back to this machine's value, and an unknown one stays as it is.
    home = os.environ.get("HOME", str(Path.home()))
    assert got[0]["result"] == {"cwd": live_cwd, "log": f"{live_cwd}/.codex/log and {home}",
                                "other": "{{not_a_known_name}}"}
    assert report.bindings == {"cwd": live_cwd, "home": home}

    async def other_cwd(p: Peer) -> None:
        p.send({"id": 1, "method": "fs/read", "params": {"path": f"{live_cwd}/src/main.py"}})
        await p.recv()
        p.send({"id": 2, "method": "thread/start", "params": {"cwd": "/somewhere/else"}})
        reply = await p.recv()
        assert reply["error"]["code"] == DIVERGENCE_CODE

    report, _ = await play(c, other_cwd)
    assert report.status == "diverged"  # once bound, a placeholder must reproduce its value


@pytest.mark.asyncio
async def test_placeholders_bound_up_front(tmp_path: Path) -> None:
    c = make(tmp_path,
             sv({"method": "config/warning", "params": {"path": "{{codex_home}}/config.toml"}}),
             cl({"id": 1, "method": "thread/start", "params": {"cwd": "{{codex_home}}/w"}}),
             sv({"id": 1, "result": {}}))

    async def peer(p: Peer) -> Any:
        first = await p.recv()
        p.send({"id": 1, "method": "thread/start", "params": {"cwd": "/pre/bound/w"}})
        await p.recv()
        return first

    report, first = await play(c, peer, bindings={"codex_home": "/pre/bound"})
    assert report.status == "ok", report.summary()
    assert first["params"]["path"] == "/pre/bound/config.toml"

    async def mismatch(p: Peer) -> None:
        await p.recv()
        p.send({"id": 1, "method": "thread/start", "params": {"cwd": "/elsewhere/w"}})
        await p.recv()

    report, _ = await play(c, mismatch, bindings={"codex_home": "/pre/bound"})
    assert report.status == "diverged"


@pytest.mark.asyncio
async def test_redaction_markers_are_not_bound(tmp_path: Path) -> None:
    c = make(tmp_path,
             cl({"id": 1, "method": "account/login/start",
                 "params": {"type": "apiKey", "apiKey": "{{redacted:api_key}}"}}),
             sv({"id": 1, "result": {"echo": "{{redacted:api_key}}"}}))
    secret = "sk-" + "x" * 30

    async def peer(p: Peer) -> Any:
        p.send({"id": 1, "method": "account/login/start", "params": {"type": "apiKey", "apiKey": secret}})
        return await p.recv()

    # A header that names no rules (recorded before they were named): the secret is simply
    # different from the marker, and the report says so without saying the secret.
    report, reply = await play(c, peer)
    assert report.status == "diverged"
    assert report.bindings == {}
    assert secret not in json.dumps(report.to_json()) and secret not in json.dumps(reply)
    assert "only in secrets" in report.divergence.message

    # With it, the live secret becomes the marker before matching; nothing is bound
    # and the marker goes back out as it was recorded (the secret never does).
    report, reply = await play(c, peer, scrub=Redactor.default(env={}).scrub)
    assert report.status == "ok", report.summary()
    assert report.bindings == {}
    assert reply == {"id": 1, "result": {"echo": "{{redacted:api_key}}"}}

    # A header that names its rules: the engine scrubs the live message with them itself.
    rules = Redactor.default(env={}).rules_meta()
    c = make(tmp_path, cl({"id": 1, "method": "account/login/start",
                           "params": {"type": "apiKey", "apiKey": "{{redacted:api_key}}"}}),
             sv({"id": 1, "result": {"echo": "{{redacted:api_key}}"}}),
             meta={"redaction_rules": rules}, name="ruled.jsonl")
    report, reply = await play(c, peer)
    assert report.status == "ok", report.summary()
    assert reply == {"id": 1, "result": {"echo": "{{redacted:api_key}}"}}


# -- divergence ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_divergence_answers_the_offending_request(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT), sv(INIT_OK),
             cl({"id": 2, "method": "thread/start", "params": {"cwd": "/recorded", "model": "gpt-5.5"}}),
             sv({"id": 2, "result": {}}), sv({"method": "never/sent"}))

    async def peer(p: Peer) -> Any:
        p.send(INIT)
        await p.recv()
        p.send({"id": "live-2", "method": "thread/start", "params": {"cwd": "/live", "model": "gpt-5.5"}})
        reply = await p.recv()
        assert await p.recv() is None  # and then the session ends
        return reply

    report, reply = await play(c, peer)
    where = line_of(c, 2)
    assert where.endswith("c.jsonl:4")
    assert reply["id"] == "live-2"
    err = reply["error"]
    assert err["code"] == DIVERGENCE_CODE
    assert "thread/start" in err["message"] and where in err["message"]
    assert "/recorded" in err["message"] and "/live" in err["message"]
    assert err["data"] == {"expected": c.events[2].msg, "expectedAt": where}
    assert "\n" not in err["message"]
    d = report.divergence
    assert report.status == "diverged" and report.failed()
    assert (d.kind, d.matcher, d.expected_at) == ("mismatch", "body", where)
    assert "cwd" in d.diff and "/recorded" in d.diff and "/live" in d.diff
    assert [u["event"] for u in report.unplayed] == ["client thread/start (id 2)", "server response (id 2)",
                                                     "server never/sent"]
    summary = report.summary()
    assert "diverged" in summary and "diff (recorded -> live)" in summary


@pytest.mark.asyncio
async def test_divergence_names_the_nearest_candidate_of_a_set(tmp_path: Path) -> None:
    c = make(tmp_path,
             cl({"id": 1, "method": "thread/start", "params": {"cwd": "/w"}}),
             cl({"id": 2, "method": "model/list", "params": {"limit": 5, "includeHidden": False}}),
             cl({"id": 3, "method": "config/read", "params": {}}),
             sv({"id": 1, "result": {}}))

    async def peer(p: Peer) -> Any:
        p.send({"id": 1, "method": "thread/start", "params": {"cwd": "/w"}})
        p.send({"id": 2, "method": "model/list", "params": {"limit": 6, "includeHidden": False}})
        return await p.recv()

    report, reply = await play(c, peer)
    assert report.divergence.expected_at == line_of(c, 1)
    assert report.divergence.expected["method"] == "model/list"
    assert "model/list" in reply["error"]["message"] and "limit" in reply["error"]["message"]


@pytest.mark.asyncio
async def test_non_json_line_where_a_message_was_expected(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT), sv(INIT_OK))

    async def peer(p: Peer) -> None:
        p.send_raw(b"hello, not json\n")
        assert await p.recv() is None

    report, _ = await play(c, peer)
    assert report.status == "diverged"
    assert report.divergence.received == "hello, not json"


@pytest.mark.asyncio
async def test_timeout_when_the_peer_says_nothing(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT), sv(INIT_OK))
    started = time.monotonic()

    async def peer(p: Peer) -> None:
        assert await p.recv(timeout=WAIT) is None  # the engine gives up and closes

    report, _ = await play(c, peer, timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < WAIT
    d = report.divergence
    assert report.status == "diverged" and d.kind == "timeout"
    assert "nothing came in 0.2 s" in d.message
    assert "client initialize (id 1)" in d.message and line_of(c, 0) in d.message
    assert report.unplayed[0]["at"] == line_of(c, 0)


@pytest.mark.asyncio
async def test_peer_hangs_up_with_events_left(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT), sv(INIT_OK), cl(INITIALIZED),
             cl({"id": 2, "method": "thread/start", "params": {}}), sv({"id": 2, "result": {}}))

    async def peer(p: Peer) -> None:
        p.send(INIT)
        await p.recv()
        p.close()
        assert await p.recv() is None

    report, _ = await play(c, peer)
    assert report.status == "incomplete"
    assert report.failed(strict=True) and not report.failed(strict=False)
    assert [u["event"] for u in report.unplayed] == [
        "client initialized", "client thread/start (id 2)", "server response (id 2)"]
    assert report.unplayed[0]["at"] == line_of(c, 2)
    assert "3 events never played" in report.summary()


@pytest.mark.asyncio
async def test_message_after_the_end_is_unexpected(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT), sv(INIT_OK))

    async def peer(p: Peer) -> Any:
        p.send(INIT)
        await p.recv()
        p.send({"id": 2, "method": "thread/start", "params": {}})
        return await p.recv()

    report, reply = await play(c, peer)
    assert report.status == "diverged" and report.divergence.kind == "unexpected"
    assert reply["id"] == 2 and reply["error"]["code"] == DIVERGENCE_CODE
    assert "unexpected message from the client" in reply["error"]["message"]


@pytest.mark.asyncio
async def test_peer_eof_is_matched_when_recorded(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT), sv(INIT_OK), cl(eof=True), sv(exit=0))

    async def peer(p: Peer) -> None:
        p.send(INIT)
        await p.recv()
        p.close()
        assert await p.recv() is None

    report, _ = await play(c, peer)
    assert report.status == "ok", report.summary()
    assert report.played == 4 and report.exit_code == 0 and not report.failed()


# -- pace ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recorded_pace_is_respected_and_scaled(tmp_path: Path) -> None:
    c = make(tmp_path, cl(INIT, t=0.0), sv(INIT_OK, t=0.1),
             sv({"method": "delta", "params": {"n": 1}}, t=1.1),
             sv({"method": "delta", "params": {"n": 2}}, t=3.1))

    async def peer(p: Peer) -> list[float]:
        p.send(INIT)
        stamps = []
        for _ in range(3):
            await p.recv()
            stamps.append(time.monotonic())
        return stamps

    report, stamps = await play(c, peer, pace="recorded", pace_scale=0.1)
    assert report.status == "ok", report.summary()
    # Recorded gaps 1.0 s and 2.0 s, scaled by 0.1.
    assert stamps[1] - stamps[0] >= 0.09
    assert stamps[2] - stamps[1] >= 0.19

    _, stamps = await play(c, peer)  # instant: the default
    assert stamps[2] - stamps[0] < 0.2


# -- faults -----------------------------------------------------------------------------------------


FAULTS = """
    steps:
      - expect: initialize
        reply: {ok: true}
      - fault: {delay: 0.3}
      - notify: after/delay
      - fault: {garbage: "this is not json"}
      - fault: {stall: 0.3}
      - notify: after/stall
      - fault: {partial: '{"method": "cut'}
      - fault: {close_stdout: true}
      - expect_close: true
      - fault: {exit: 7}
    """


@pytest.mark.asyncio
async def test_faults_delay_garbage_stall_partial_close_and_exit(tmp_path: Path) -> None:
    c = yaml_scenario(tmp_path, FAULTS)

    async def peer(p: Peer) -> dict[str, Any]:
        p.send({"id": "x", "method": "initialize"})
        t0 = time.monotonic()
        assert await p.recv() == {"id": "x", "result": {"ok": True}}
        assert await p.recv() == {"method": "after/delay"}
        t1 = time.monotonic()
        assert await p.line() == b"this is not json\n"
        assert await p.recv() == {"method": "after/stall"}
        t2 = time.monotonic()
        tail = await p.line()
        eof = await p.line()
        p.close()
        return {"delay": t1 - t0, "stall": t2 - t1, "tail": tail, "eof": eof}

    report, got = await play(c, peer)
    assert got["delay"] >= 0.28
    assert got["stall"] >= 0.28
    assert got["tail"] == b'{"method": "cut'   # no newline, then the stream ends
    assert got["eof"] == b""
    assert report.status == "ok", report.summary()
    assert report.exit_code == 7
    assert report.played == report.total and not report.failed()


@pytest.mark.asyncio
async def test_stall_ends_when_the_peer_hangs_up(tmp_path: Path) -> None:
    c = yaml_scenario(tmp_path, """
        steps:
          - expect: initialize
            reply: {}
          - fault: {stall: 30}
          - notify: never/reached
        """)
    started = time.monotonic()

    async def peer(p: Peer) -> None:
        p.send(INIT)
        await p.recv()
        p.close()
        assert await p.recv() is None

    report, _ = await play(c, peer)
    assert time.monotonic() - started < WAIT  # not 30 s
    assert report.status == "incomplete"
    assert [u["event"] for u in report.unplayed] == ["server never/reached"]


@pytest.mark.asyncio
async def test_a_message_during_a_stall_is_unexpected(tmp_path: Path) -> None:
    c = yaml_scenario(tmp_path, """
        steps:
          - fault: {stall: 2}
          - expect: initialize
            reply: {}
        """)

    async def peer(p: Peer) -> Any:
        p.send(INIT)
        return await p.recv()

    report, reply = await play(c, peer)
    assert report.status == "diverged" and report.divergence.kind == "unexpected"
    assert reply["error"]["code"] == DIVERGENCE_CODE


@pytest.mark.asyncio
async def test_recorded_raw_lines_are_replayed_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "raw.jsonl"
    path.write_text("\n".join([
        '{"codex_cassette": 1, "meta": {"complete": true}}',
        '{"i": 1, "from": "server", "t": 0, "raw_b64": "//4gYmluYXJ5"}',
        '{"i": 2, "from": "server", "t": 0, "raw": "no newline", "nonl": true}',
        '{"i": 3, "from": "server", "t": 0, "eof": true}',
    ]) + "\n")
    c = load_cassette(path)

    async def peer(p: Peer) -> list[bytes]:
        return [await p.line(), await p.line(), await p.line()]

    report, lines = await play(c, peer)
    assert lines == [b"\xff\xfe binary\n", b"no newline", b""]
    assert report.status == "ok", report.summary()


@pytest.mark.asyncio
async def test_recorded_messages_go_out_as_the_recording_holds_them(tmp_path: Path) -> None:
    # A cassette in the writer's layout keeps each message's own bytes: the escapes, number
    # forms and key order codex used reach the client unchanged, not re-encoded. A line laid
    # out otherwise, and a message holding a placeholder, are encoded from the parsed message.
    path = tmp_path / "verbatim.jsonl"
    as_codex_wrote_it = '{"method":"note","params":{"text":"caf\\u00e9 \\/","n":1.50,"z":1,"a":2}}'
    path.write_text("\n".join([
        '{"codex_cassette":1,"meta":{"complete":true}}',
        '{"i":1,"from":"client","t":0.0,"msg":{"id":7,"method":"hello"}}',
        '{"i":2,"from":"server","t":0.001,"msg":' + as_codex_wrote_it + '}',
        '{"i":3,"from":"server","t":0.002,"msg":{"id":7,"result":{"x":1.50}}}',
        '{"msg":{"method":"other","params":{"n":2.50}},"i":4,"from":"server","t":0.003}',
        '{"i":5,"from":"server","t":0.004,"msg":{"method":"where","params":{"cwd":"{{cwd}}"}}}',
    ]) + "\n")
    c = load_cassette(path)
    assert c.events[1].wire == as_codex_wrote_it.encode() + b"\n"
    assert c.events[3].wire is None and c.events[4].wire is None

    async def peer(p: Peer) -> list[bytes]:
        p.send({"id": 70, "method": "hello"})
        return [await p.line() for _ in range(4)]

    report, lines = await play(c, peer, bindings={"cwd": "/work/here"})
    assert report.status == "ok", report.summary()
    assert lines == [as_codex_wrote_it.encode() + b"\n",
                     b'{"id":70,"result":{"x":1.5}}\n',  # a response: its id is the live one
                     b'{"method":"other","params":{"n":2.5}}\n',
                     b'{"method":"where","params":{"cwd":"/work/here"}}\n']


# -- the client role -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_client_role_maps_server_request_ids_and_learns_server_chosen_ids(tmp_path: Path) -> None:
    c = make(tmp_path,
             cl({"id": 1, "method": "initialize", "params": {}}),
             sv({"id": 1, "result": {"userAgent": "x"}}),
             cl({"id": 2, "method": "thread/start", "params": {"cwd": "/w"}}),
             sv({"id": 2, "result": {"thread": {"id": "thr_A"}}}),
             sv({"method": "thread/started", "params": {"thread": {"id": "thr_A"}}}),
             cl({"id": 3, "method": "turn/start", "params": {"threadId": "thr_A", "input": []}}),
             sv({"id": 0, "method": "item/commandExecution/requestApproval", "params": {"threadId": "thr_A"}}),
             cl({"id": 0, "result": {"decision": "accept"}}),
             sv({"id": 3, "result": {"turn": {"id": "turn_A"}}}),
             cl({"id": 4, "method": "turn/interrupt", "params": {"threadId": "thr_A", "turnId": "turn_A"}}),
             sv({"id": 4, "result": {}}))

    async def server(p: Peer) -> list[Any]:
        seen = [await p.recv()]
        p.send({"id": 1, "result": {"userAgent": "x"}})
        seen.append(await p.recv())
        p.send({"id": 2, "result": {"thread": {"id": "thr_B"}}})
        p.send({"method": "thread/started", "params": {"thread": {"id": "thr_B"}}})
        seen.append(await p.recv())                       # turn/start must carry thr_B
        p.send({"id": 55, "method": "item/commandExecution/requestApproval", "params": {"threadId": "thr_B"}})
        seen.append(await p.recv())                       # the decision, for id 55
        p.send({"id": 3, "result": {"turn": {"id": "turn_B"}}})
        seen.append(await p.recv())
        p.send({"id": 4, "result": {}})
        p.close()                                         # the server hangs up
        assert await p.recv() is None
        return seen

    report, seen = await play(c, server, role="client", learn=SERVER_CHOSEN)
    assert report.status == "ok", report.summary()
    assert report.role == "client"
    assert seen[0] == {"id": 1, "method": "initialize", "params": {}}   # our own ids go out verbatim
    assert seen[2] == {"id": 3, "method": "turn/start", "params": {"threadId": "thr_B", "input": []}}
    assert seen[3] == {"id": 55, "result": {"decision": "accept"}}
    assert seen[4]["params"] == {"threadId": "thr_B", "turnId": "turn_B"}
    assert report.matched == 6 and not report.failed()


@pytest.mark.asyncio
async def test_client_role_without_learning_sees_a_new_thread_id_as_divergence(tmp_path: Path) -> None:
    c = make(tmp_path,
             cl({"id": 1, "method": "thread/start", "params": {}}),
             sv({"id": 1, "result": {"thread": {"id": "thr_A"}}}))

    async def server(p: Peer) -> None:
        await p.recv()
        p.send({"id": 1, "result": {"thread": {"id": "thr_B"}}})
        assert await p.recv() is None

    report, _ = await play(c, server, role="client")
    assert report.status == "diverged" and "thr_A" in report.divergence.diff


def test_engine_refuses_an_unknown_role(tmp_path: Path) -> None:
    channel, _, _ = memory_pair()
    with pytest.raises(ValueError):
        ReplayEngine(make(tmp_path, cl(INIT)), channel, ReplayOptions(role="proxy"))


# -- the fake server as a real subprocess --------------------------------------------------------------

SIMPLE = (Path(__file__).parent / "data" / "simple_session.yaml").read_text()


def fake(tmp_path: Path, *args: str, scenario: str = SIMPLE, input_msgs: list[Any] | None = None,
         timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(scenario).lstrip("\n"))
    data = "".join(encode(m).decode() for m in (input_msgs or []))
    return subprocess.run([sys.executable, "-m", "fake_server", "--cassette", str(path), *args],
                          input=data, capture_output=True, text=True, timeout=timeout,
                          env=FakeCodexCommand(path).env())


SESSION = [
    {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "x"}}},
    {"method": "initialized"},
    {"id": 2, "method": "thread/start", "params": {"cwd": "/tmp/live"}},
]


def test_fake_server_subprocess_plays_a_session_and_accepts_codex_flags(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = fake(tmp_path, "--report", str(report), "--timeout", "3", "app-server", "--listen", "stdio://",
                "-c", "model_provider=mock", "--config", "features.apps=false",
                "--enable", "x", "--disable", "y", input_msgs=SESSION)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert out == [{"id": 1, "result": {"userAgent": "codex_cli_rs/0.163.0"}},
                   {"id": 2, "result": {"thread": {"id": "thr_1", "cwd": "/tmp/live"}}}]
    data = ReplayReport.read(report)
    assert data.status == "ok" and data.bindings == {"cwd": "/tmp/live"}


def test_fake_server_refuses_a_listen_url_codex_would_not_take(tmp_path: Path) -> None:
    # ws:// and unix:// are served (tests/test_socket_fake.py); anything else is refused, said plainly.
    proc = fake(tmp_path, "app-server", "--listen", "tcp://127.0.0.1:4000")
    assert proc.returncode == 2
    assert "tcp://127.0.0.1:4000" in proc.stderr and "ws://IP:PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fake_server_refuses_a_bad_config_flag(tmp_path: Path) -> None:
    proc = fake(tmp_path, "app-server", "-c", "no_equals_sign")
    assert proc.returncode == 2 and "NAME=VALUE" in proc.stderr


def test_fake_server_missing_cassette(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    report = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "fake_server", "--cassette", str(missing), "--report", str(report),
                           "app-server"], capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL,
                          env=FakeCodexCommand(missing).env())
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "cannot read the cassette" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(report.read_text())["status"] == "error"

    proc = subprocess.run([sys.executable, "-m", "fake_server", "app-server"], capture_output=True, text=True,
                          timeout=WAIT, stdin=subprocess.DEVNULL,
                          env={**FakeCodexCommand(missing).env(), "CODEX_CASSETTE": ""})
    assert proc.returncode == 2 and "no cassette" in proc.stderr


def test_fake_server_bad_scenario_is_reported_with_file_and_line(tmp_path: Path) -> None:
    proc = fake(tmp_path, scenario="steps:\n  - expect: initialize\n    match: fuzzy\n")
    assert proc.returncode == 2
    assert f"{tmp_path / 'scenario.yaml'}:2:" in proc.stderr


def test_fake_server_divergence_exit_code_and_stderr(tmp_path: Path) -> None:
    wrong = SESSION[:2] + [{"id": 2, "method": "thread/start", "params": {"cwd": "/tmp/live", "extra": 1}}]
    proc = fake(tmp_path, "app-server", input_msgs=wrong)
    assert proc.returncode == 3
    assert "expected client thread/start (id 2)" in proc.stderr
    assert "extra" in proc.stderr                       # what was actually sent
    assert "scenario.yaml:6" in proc.stderr             # where it was expected
    last = json.loads(proc.stdout.splitlines()[-1])
    assert last["id"] == 2 and last["error"]["code"] == DIVERGENCE_CODE


def test_fake_server_version(tmp_path: Path) -> None:
    proc = fake(tmp_path, "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "codex-cli 0.163.0"


def test_fake_server_writes_its_report_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""
        steps:
          - notify: hello
          - expect: initialize
            reply: {}
        """).lstrip("\n"))
    report = tmp_path / "report-{pid}.json"
    cmd = FakeCodexCommand(path, report=report, timeout=30)
    proc = subprocess.Popen(cmd.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cmd.env())
    try:
        assert proc.stdout.readline() == b'{"method":"hello"}\n'  # the engine is running
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        proc.stdin.close()
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    written = tmp_path / f"report-{proc.pid}.json"
    assert written.is_file(), stderr
    data = ReplayReport.read(written)
    assert data.played == 1 and data.total == 3
    assert data.failed(strict=True)
    assert "1 of 3 events played" in stderr  # the fake says why it failed, too


def test_write_bin_dir_puts_a_codex_on_path(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SIMPLE).lstrip("\n"))
    cmd = FakeCodexCommand(path, report=tmp_path / "report.json")
    bin_dir = write_bin_dir(tmp_path / "bin", cmd)
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}
    env.pop("PYTHONPATH", None)  # the script sets what it needs
    data = "".join(encode(m).decode() for m in SESSION)
    proc = subprocess.run(["codex", "app-server", "--listen", "stdio://"], input=data, capture_output=True,
                          text=True, timeout=WAIT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[1])["result"]["thread"]["cwd"] == "/tmp/live"
    assert ReplayReport.read(tmp_path / "report.json").status == "ok"
    version = subprocess.run(["codex", "--version"], capture_output=True, text=True, timeout=WAIT, env=env)
    assert version.stdout.strip() == "codex-cli 0.163.0"


def test_fake_server_subprocess_faults_and_exit_code(tmp_path: Path) -> None:
    big = "x" * 300_000  # far beyond asyncio's 64 KiB readline limit
    proc = fake(tmp_path, scenario="""
        steps:
          - expect: initialize
            params: {clientInfo: {name: "{{client}}"}}
            reply: {echo: "{{client}}"}
          - fault: {garbage: "not json at all"}
          - fault: {partial: '{"method": "cut'}
          - exit: 7
        """, input_msgs=[{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": big}}}])
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == json.dumps({"id": 1, "result": {"echo": big}}, separators=(",", ":")) + "\n" \
        + "not json at all\n" + '{"method": "cut'


@pytest.mark.asyncio
async def test_unplayed_list_leaves_out_what_already_matched(tmp_path: Path) -> None:
    c = make(tmp_path, cl({"method": "a"}), cl({"method": "b"}), cl({"method": "c"}), sv({"method": "done"}))

    async def peer(p: Peer) -> None:
        p.send({"method": "b"})
        p.send({"jsonrpc": "2.0", "method": "c"})  # a transport field says nothing; it is ignored
        p.close()
        assert await p.recv() is None

    report, _ = await play(c, peer)
    assert report.status == "incomplete"
    assert [u["event"] for u in report.unplayed] == ["client a", "server done"]

    async def silent_after_b(p: Peer) -> None:
        p.send({"method": "b"})
        assert await p.recv() is None

    report, _ = await play(c, silent_after_b, timeout=0.2)
    assert report.divergence.kind == "timeout"
    assert [u["event"] for u in report.unplayed] == ["client a", "client c", "server done"]


@pytest.mark.asyncio
async def test_a_scripted_delay_is_not_doubled_by_recorded_pace(tmp_path: Path) -> None:
    # A delay step also moves the scenario clock; replaying the recorded gaps must
    # not sleep it a second time.
    c = yaml_scenario(tmp_path, """
        steps:
          - expect: initialize
            reply: {}
          - fault: {delay: 0.5}
          - notify: after/delay
        """)

    async def peer(p: Peer) -> float:
        p.send(INIT)
        await p.recv()
        t0 = time.monotonic()
        await p.recv()
        return time.monotonic() - t0

    report, waited = await play(c, peer, pace="recorded")
    assert report.status == "ok", report.summary()
    assert 0.48 <= waited < 0.9, waited


def test_fake_server_close_stdout_over_real_pipes(tmp_path: Path) -> None:
    path = Path(__file__).parent / "data" / "close_stdout.yaml"
    cmd = FakeCodexCommand(path, timeout=WAIT)
    proc = subprocess.Popen(cmd.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cmd.env())
    try:
        proc.stdin.write(encode(INIT))
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"id": 1, "result": {}}
        assert proc.stdout.readline() == b""     # stdout closed ...
        assert proc.poll() is None               # ... while the server still waits for us
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        proc.stdout.close()
        proc.stderr.close()
