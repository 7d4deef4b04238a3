"""Fuzzing the fake (issue 13): generated hostile client streams against the engine
(in-process, over real pipes with the blocking stdio channel, and as a real fake
process), and generated broken cassettes and scenarios against the loader and `show`.

Whatever comes in: no traceback, no hang (every run is bounded), nothing out beyond
the caps, no control character in anything printed for a person. Hypothesis runs a
fixed, derandomized number of examples, so CI spends the same ~20 s every time and a
failure reproduces.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import subprocess
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_server.commands import FakeCodexCommand
from fake_server.forkserver import ForkServer, launcher_argv
from harness.errors import ERROR_CAP, HarnessError
from harness.format.cassette import Cassette
from harness.format.load import open_cassette
from harness.format.wire import encode
from harness.replay.aio_channels import memory_pair
from harness.replay.channel import StdioChannel, run_sync, write_within
from harness.replay.engine import DIVERGED_EXIT, ReplayEngine
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport
from harness.safe_text import CAP
from harness.show import render


def fuzz(examples: int) -> Any:
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example, HealthCheck.filter_too_much])


WAIT = 10.0
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # what a person's terminal must never get raw
SCENARIO = """
    steps:
      - notify: hello
        params: {cwd: "{{cwd}}"}
      - expect: initialize
        reply: {userAgent: "codex_cli_rs/0.163.0", codexHome: "{{codex_home}}"}
      - notify: configWarning
        params: {text: BIG}
      - expect: initialized
      - expect: thread/start
        params: {cwd: "{{cwd}}"}
        reply: {thread: {id: thr_1, cwd: "{{cwd}}"}}
      - expect: turn/start
        params: {threadId: thr_1}
        match: subset
        as: turn
      - notify: turn/started
        params: {threadId: thr_1}
      - request: item/commandExecution/requestApproval
        params: {threadId: thr_1, command: ["ls"]}
        expect_reply: {decision: accept}
      - notify: item/agentMessage/delta
        params: {delta: "Hel"}
      - notify: item/agentMessage/delta
        params: {delta: "lo"}
      - reply_to: turn
        result: {turn: {id: turn_1}}
      - expect: turn/interrupt
        reply: {}
    """

# -- generated client streams ----------------------------------------------------------------------

METHODS = ["initialize", "initialized", "thread/start", "turn/start", "turn/interrupt", "model/list", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=10)
ids = st.one_of(st.integers(-1, 4), st.sampled_from(["1", "a", ""]), values)
params = st.one_of(values, st.sampled_from([{"cwd": "/w"}, {"clientInfo": {"name": "fuzz"}}, {"threadId": "thr_1"},
                                            {"threadId": "thr_1", "input": [{"type": "text", "text": "hi"}]}]))
messages = st.one_of(
    st.builds(lambda i, m, p: {"id": i, "method": m, "params": p}, ids, st.sampled_from(METHODS), params),
    st.builds(lambda m, p: {"method": m, "params": p}, st.sampled_from(METHODS), params),
    st.builds(lambda i, r: {"id": i, "result": r}, ids, st.one_of(values, st.just({"decision": "accept"}))),
    st.builds(lambda i: {"id": i, "error": {"code": -1, "message": "no"}}, ids),
    values)
HOSTILE = [
    b"[" * 3000 + b"]" * 3000,                                        # nesting
    b'{"id": 1, "method": "initialize", "params": ' + b"{\"a\":" * 150 + b"1" + b"}" * 151,
    b'{"id": 1, "method": "initialize\xff\xfe"}',                      # not UTF-8
    b'{"id": "\\ud800", "method": "initialize", "params": {"x": "\\udfff"}}',  # lone surrogates
    b"\x1b]0;retitled\x07\x1b[2J\x9b31m",                              # terminal escapes
    b"\x00" * 16, b"NaN", b'{"id": 1e999, "method": "x"}', b'{"id": 123456789012345678901234567890, "method": "x"}',
    b'{"id": 1, "method": "thread/start", "params": {"cwd": "' + b"y" * 300_000 + b'"}}',  # big
    b'{"id": 2, "method": "thread/start", "params": {"cwd": "/w"}}',
    b'{"id": 2, "method": "turn/start", "params": {"threadId": "thr_1"}}',
    b'{"id": 0, "result": {"decision": "accept"}}',
]
line = st.one_of(messages.map(lambda m: encode(m)[:-1]), st.binary(max_size=40), st.sampled_from(HOSTILE))
# (line, its ending, sent in two pieces, a pause in ms before it)
endings = st.sampled_from([b"\n", b"\n", b"\r\n", b""])
chunks = st.tuples(line, endings, st.booleans(), st.integers(0, 2))
# The session the scenario expects, so that mutations of it reach the later states too
# (an approval waiting for its answer, a turn in flight, the end).
GOOD = [b'{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "fuzz"}}}', b'{"method": "initialized"}',
        b'{"id": 2, "method": "thread/start", "params": {"cwd": "/w"}}',
        b'{"id": 3, "method": "turn/start", "params": {"threadId": "thr_1", "input": []}}',
        b'{"id": 0, "result": {"decision": "accept"}}', b'{"id": 4, "method": "turn/interrupt"}']


@st.composite
def mutated_sessions(draw: st.DrawFn) -> list[tuple[bytes, bytes, bool, int]]:
    out = []
    for good in GOOD:
        action = draw(st.sampled_from(["keep", "keep", "keep", "drop", "replace", "twice", "then-other"]))
        if action == "drop":
            continue
        if action == "replace":
            out.append(draw(chunks))
            continue
        out.append((good, b"\n", draw(st.booleans()), draw(st.integers(0, 2))))
        if action == "twice":
            out.append((good, b"\n", False, 0))
        elif action == "then-other":
            out.append(draw(chunks))
    if draw(st.booleans()) and len(out) > 1:  # one pair sent the other way round
        at = draw(st.integers(0, len(out) - 2))
        out[at], out[at + 1] = out[at + 1], out[at]
    return out


streams = st.one_of(st.lists(chunks, max_size=7), mutated_sessions())


def pieces(stream: list[tuple[bytes, bytes, bool, int]]) -> Iterator[tuple[bytes, float]]:
    for data, ending, split, pause in stream:
        data += ending
        if split and len(data) > 1:
            yield data[:len(data) // 2], pause / 1000
            yield data[len(data) // 2:], 0.0
        else:
            yield data, pause / 1000


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Cassette:
    path = tmp_path_factory.mktemp("fuzz") / "session.yaml"
    # More than a pipe holds, early on: a client that does not read stalls the fake.
    path.write_text(textwrap.dedent(SCENARIO).lstrip().replace("BIG", "x" * 70_000))
    return open_cassette(path)


def check_report(report: ReplayReport) -> None:
    assert report.status in ("ok", "diverged", "incomplete"), report.status
    summary = report.summary()
    assert not UNSAFE.search(summary), summary
    assert len(summary.encode()) <= 4 * CAP
    assert len(json.dumps(report.to_json(), default=str)) <= 8 * CAP


def check_output(data: bytes) -> None:
    """Everything the fake said is JSON lines, none beyond the caps."""
    for out in data.splitlines():
        assert len(out) <= 3 * CAP
        json.loads(out)


def options(**extra: Any) -> ReplayOptions:
    return ReplayOptions(timeout=0.05, linger=0.05, **extra)


@fuzz(800)
@given(stream=streams)
def test_hostile_streams_against_the_engine_in_process(cassette: Cassette, stream: list[Any]) -> None:
    async def session() -> tuple[ReplayReport, bytes]:
        channel, stdin, stdout = memory_pair()
        task = asyncio.create_task(ReplayEngine(cassette, channel, options()).run())
        for data, pause in pieces(stream):
            stdin.write(data)
            await asyncio.sleep(pause)
        stdin.close()
        report = await asyncio.wait_for(task, WAIT)
        said = b""
        while chunk := await asyncio.wait_for(stdout.read(), WAIT):
            said += chunk
        return report, said

    report, said = asyncio.run(session())
    check_report(report)
    check_output(said)


@fuzz(80)
@given(stream=streams, reads=st.booleans())
def test_hostile_streams_against_the_stdio_channel_over_pipes(cassette: Cassette, stream: list[Any],
                                                             reads: bool) -> None:
    # The fake's own channel on real pipes, in a thread; a client that does not read
    # until the fake is done must end it by the write deadline, not hang it.
    to_fake_r, to_fake_w = os.pipe()
    from_fake_r, from_fake_w = os.pipe()
    inbound, outbound = os.fdopen(to_fake_r, "rb"), os.fdopen(from_fake_w, "wb")
    channel = StdioChannel(stdin=inbound, stdout=outbound, write_timeout=0.1)
    done: dict[str, Any] = {}
    engine = ReplayEngine(cassette, channel, options())
    thread = threading.Thread(target=lambda: done.setdefault("report", run_sync(engine.run())), daemon=True)
    thread.start()
    said = b""
    try:
        for data, pause in pieces(stream):
            if write_within(to_fake_w, data, 0.5):
                break  # the fake stopped reading us (it ended): so does this client
            time.sleep(pause)
            if reads:
                while select.select([from_fake_r], [], [], 0)[0] and (chunk := os.read(from_fake_r, 1 << 16)):
                    said += chunk
        os.close(to_fake_w)
        to_fake_w = -1
        if not reads:
            thread.join(WAIT)
        deadline, ended = time.monotonic() + WAIT, False
        while not ended and select.select([from_fake_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(from_fake_r, 1 << 16)
            said += chunk
            ended = not chunk
        assert ended, "the fake never ended its output"
        thread.join(WAIT)
        assert not thread.is_alive(), "the engine hung"
    finally:
        for fd in (to_fake_w, from_fake_r):
            if fd >= 0:
                os.close(fd)
        inbound.close()
    report = done["report"]
    check_report(report)
    if reads:
        check_output(said)
    elif report.divergence is not None and report.divergence.kind == "stalled":
        assert "the client stopped reading at" in report.divergence.message




@fuzz(30)
@given(stream=streams)
def test_hostile_streams_against_a_fake_process(cassette: Cassette, server: ForkServer, stream: list[Any]) -> None:
    command = FakeCodexCommand(cassette.path, timeout=0.1, extra=["--linger=0.1"])
    argv = launcher_argv(command.fake_args("app-server"), server)
    assert argv is not None
    data = b"".join(piece for piece, _ in pieces(stream))
    proc = subprocess.run(argv, input=data, capture_output=True, timeout=WAIT, env=command.env())
    assert proc.returncode in (0, DIVERGED_EXIT), proc.stderr
    assert b"Traceback" not in proc.stderr
    assert not UNSAFE.search(proc.stderr.decode("utf-8", "replace"))
    assert len(proc.stderr) <= 4 * CAP
    check_output(proc.stdout)


# -- generated broken cassettes and scenarios -----------------------------------------------------

GOOD_CASSETTE = [
    b'{"codex_cassette": 1, "meta": {"complete": true, "codex_version": "0.163.0"}}',
    b'{"i": 1, "from": "client", "t": 0.0, "msg": {"id": 1, "method": "initialize", "params": {"cwd": "{{cwd}}"}}}',
    b'{"i": 2, "from": "server", "t": 0.1, "msg": {"id": 1, "result": {"userAgent": "codex"}}}',
    b'{"i": 3, "from": "server", "t": 0.2, "raw": "not json"}',
    b'{"i": 4, "from": "server", "t": 0.3, "fault": {"delay": 0.01}}',
    b'{"i": 5, "from": "client", "t": 0.4, "eof": true}',
    b'{"i": 6, "from": "server", "t": 0.5, "exit": 0}',
]
FRAGMENTS = [b"", b"   ", b"\xff\xfe", b"\x1b]0;t\x07", b"[" * 200, b"{", b"}", b'"i": -1', b'"t": -5',
             b'"from": "nobody"', b'{"i": 0, "from": "server", "t": 99, "msg": {"method": 5}}', b"NaN",
             b'{"i": 2, "from": "client", "t": 0, "msg": []}', b'{"i": 9, "from": "server", "t": 1, "match": 3}',
             b'{"codex_cassette": 2}', b'\\ud800', b'"' + b"x" * 20_000 + b'"']


@st.composite
def broken_cassettes(draw: st.DrawFn) -> bytes:
    lines = list(GOOD_CASSETTE)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(lines)))
        action = draw(st.sampled_from(["insert", "replace", "cut", "swap", "splice", "flip"]))
        fragment = draw(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=30)))
        if action == "insert" or not lines:
            lines.insert(where, fragment)
        elif action == "replace":
            lines[min(where, len(lines) - 1)] = fragment
        elif action == "cut":
            del lines[min(where, len(lines) - 1)]
        elif action == "swap" and len(lines) > 1:
            a, b = min(where, len(lines) - 1), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
        elif action == "splice":
            target = lines[min(where, len(lines) - 1)]
            at = draw(st.integers(0, len(target)))
            lines[min(where, len(lines) - 1)] = target[:at] + fragment + target[at:]
        else:
            target = bytearray(lines[min(where, len(lines) - 1)])
            if target:
                target[draw(st.integers(0, len(target) - 1))] ^= draw(st.integers(1, 255))
            lines[min(where, len(lines) - 1)] = bytes(target)
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))


GOOD_SCENARIO = textwrap.dedent(SCENARIO).lstrip().splitlines()
YAML_FRAGMENTS = ["  - expect: x", "    params: &a {k: [1, 2]}", "    params: *a", "    params: *nowhere",
                  "    reply: !!binary aGk=", "    params: {on: 1}", "    as: [1]", "  - reply_to: {x: 1}",
                  "    params: " + "[" * 150 + "]" * 150, "\t- tab", "steps:", "---", "    params: {d: .nan}",
                  "    params: !!python/object:os.system {}", "  - fault: {delay: -1}", "    params: &r [*r]",
                  "    reply: {userAgent: \x1b]0;t\x07}", "    match: fuzzy", "meta: [1]", "    " + "x" * 5000]


@st.composite
def broken_scenarios(draw: st.DrawFn) -> bytes:
    lines = list(GOOD_SCENARIO)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(lines)))
        fragment = draw(st.one_of(st.sampled_from(YAML_FRAGMENTS), st.text(max_size=20)))
        if draw(st.booleans()) or not lines:
            lines.insert(where, fragment)
        else:
            lines[min(where, len(lines) - 1)] = fragment
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        data += b"\n  - notify: caf\xe9"  # not UTF-8
    return data


def check_load(path: Path) -> None:
    try:
        cassette = open_cassette(path)
    except HarnessError as exc:
        text = str(exc)
        assert text.startswith(str(path)), text
        # One paragraph; a line that is not JSON is shown under it (two lines: an excerpt and a caret).
        headline = getattr(exc, "headline", text)
        assert text == headline + (f"\n{exc.excerpt}" if getattr(exc, "excerpt", "") else ""), text
        assert "\n" not in headline and text.count("\n") in (0, 2), text
        assert not UNSAFE.search(text.replace("\n", "")) and len(text) <= ERROR_CAP + 64, text
        return
    out = io.StringIO()
    render(cassette, out, width=100)
    assert not UNSAFE.search(out.getvalue().replace("\n", ""))


@fuzz(800)
@given(data=broken_cassettes())
def test_broken_cassettes_against_the_loader_and_show(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed.jsonl"
    path.write_bytes(data)
    check_load(path)


@fuzz(500)
@given(data=broken_scenarios())
def test_broken_scenarios_against_the_loader_and_show(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed.yaml"
    path.write_bytes(data)
    check_load(path)
