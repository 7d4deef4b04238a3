"""Big cassettes are indexed, not parsed up front (harness.format.event_log): the same
events, the same errors at the same lines (only found when the play reaches them), and
a replay that goes on to the real driver as from a parsed cassette."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from optio_codex.conversation import CodexConversation

from fake_server import InProcessCodex
from harness.errors import CassetteError
from harness.format.cassette import LAZY_FROM, Cassette, load_cassette
from harness.format.event_log import EventLog
from harness.format.writer import dump_cassette
from harness.replay.options import ReplayOptions

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "cassettes").rglob("*.jsonl"))
WAIT = 10.0


def facts(cassette: Cassette) -> list[tuple]:
    return [(e.line, e.side, json.dumps(e.to_json(), sort_keys=True), e.wire) for e in cassette.events]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_shipped_cassette_reads_the_same_indexed(path: Path) -> None:
    parsed, indexed = load_cassette(path), load_cassette(path, lazy_from=0)
    assert isinstance(parsed.events, list) and isinstance(indexed.events, EventLog)
    assert len(indexed.events) == len(parsed.events)
    # Backwards first: a late event asked for first still has every earlier line checked.
    backwards = [indexed.events[p] for p in reversed(range(len(indexed.events)))]
    assert facts(indexed) == facts(parsed)
    assert [e.line for e in reversed(backwards)] == [e.line for e in parsed.events]
    assert [indexed.side_of(p) for p in range(len(parsed.events))] == [e.side for e in parsed.events]
    assert [indexed.position_of(e) for e in indexed.events] == list(range(len(parsed.events)))
    assert indexed.events[-1].line == parsed.events[-1].line
    assert [e.line for e in indexed.events[2:5]] == [e.line for e in parsed.events[2:5]]


# -- a corrupted cassette: the same first error, parsed or indexed ---------------

GOOD = [
    '{"i":%(i)d,"from":"client","t":%(t)s,"msg":{"id":%(i)d,"method":"turn/start"}}',
    '{"i":%(i)d,"from":"server","t":%(t)s,"msg":{"method":"item/agentMessage/delta","params":{"delta":"x"}}}',
    '{"i":%(i)d,"from":"server","t":%(t)s,"msg":{"id":%(i)d,"result":{}}}',
    '{"from": "server", "t": %(t)s, "msg": {"method": "a/b"}}',              # no i, not the writer's layout
    '{"t": %(t)s, "i": %(i)d, "from": "client", "raw": "not json"}',        # keys in another order
]
BAD = [
    '{broken',                                                                # not JSON
    '{"i":%(i)d,"from":"server","t":%(t)s,"msg":{"id":1,"res',               # torn
    '{"i":%(i)d,"from":"nobody","t":%(t)s,"msg":{}}',                         # unknown sender
    '{"i":%(i)d,"from":"server","t":%(t)s,"msg":{},"extra":1}',               # unknown field
    '{"i":0,"from":"server","t":%(t)s,"msg":{"method":"x"}}',                 # i goes back
    '{"i":%(i)d,"from":"server","t":0,"msg":{"method":"x"}}',                 # t goes back
    '{"i":%(i)d,"from":"client","t":%(t)s,"msg":{"method":"x"},"from":"server"}',  # two senders
    '',                                                                       # blank: passed over
    '   ',
]


def _text(complete: bool, picks: list[tuple[bool, int]], final_newline: bool, tail_blank: bool) -> str:
    lines = [json.dumps({"codex_cassette": 1, "meta": {"complete": complete}})]
    for n, (good, k) in enumerate(picks, start=1):
        template = GOOD[k % len(GOOD)] if good else BAD[k % len(BAD)]
        lines.append(template % {"i": n, "t": f"{n * 0.5:g}"})
    text = "\n".join(lines) + ("\n" if final_newline else "")
    return text + ("\n" if tail_blank else "")


def outcome(path: Path, lazy_from: int) -> tuple:
    try:
        cassette = load_cassette(path, lazy_from=lazy_from)
        return ("ok", [(e.line, json.dumps(e.to_json(), sort_keys=True), e.wire) for e in cassette.events])
    except CassetteError as exc:
        return ("error", exc.line, exc.message)


@settings(max_examples=300, deadline=None)
@given(complete=st.booleans(), final_newline=st.booleans(), tail_blank=st.booleans(),
       picks=st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=8))
def test_a_corrupted_cassette_fails_alike_parsed_or_indexed(tmp_path_factory, complete, final_newline,
                                                            tail_blank, picks) -> None:
    path = tmp_path_factory.mktemp("c") / "c.jsonl"
    path.write_text(_text(complete, picks, final_newline, tail_blank), encoding="utf-8")
    assert outcome(path, lazy_from=0) == outcome(path, lazy_from=1 << 40)


def test_an_indexed_cassette_keeps_only_a_window_of_decoded_events(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    lines = ['{"codex_cassette":1,"meta":{"complete":true}}']
    lines += ['{"i":%d,"from":"server","t":0,"msg":{"method":"a/b","params":{"n":%d}}}' % (n, n)
              for n in range(1, 20001)]
    path.write_text("\n".join(lines) + "\n")
    events = load_cassette(path, lazy_from=0).events
    assert sum(1 for _ in events) == 20000
    assert len(events._cache) <= 4096
    assert events[12345].msg["params"]["n"] == 12346


# -- a big cassette, played ----------------------------------------------------

def big_text_turn(path: Path, fillers: int) -> Path:
    """optio's recorded text turn, its stream padded with empty deltas to a size that is indexed."""
    recorded = load_cassette(ROOT / "cassettes" / "optio" / "text_turn.jsonl")
    events = list(recorded.events)
    at = next(n for n, e in enumerate(events) if e.msg and e.msg.get("method") == "item/agentMessage/delta")
    filler = events[at].with_msg({**events[at].msg, "params": {**events[at].msg["params"], "delta": ""}})
    events[at:at] = [dataclasses.replace(filler) for _ in range(fillers)]
    for n, event in enumerate(events, start=1):
        event.index, event.line = n, 0
    return dump_cassette(Cassette(path=None, meta=recorded.meta, events=events), path)


@pytest.fixture(scope="module")
def big_cassette(tmp_path_factory) -> Path:
    path = big_text_turn(tmp_path_factory.mktemp("big") / "text_turn.jsonl", fillers=20000)
    assert path.stat().st_size >= LAZY_FROM
    return path


@pytest.mark.asyncio
async def test_a_big_cassette_plays_to_optio_as_recorded(big_cassette: Path) -> None:
    handle = InProcessCodex(big_cassette, ReplayOptions(timeout=WAIT, linger=WAIT))
    assert isinstance(handle.engine.cassette.events, EventLog)
    conv = CodexConversation(cwd="/work/project")
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    done = asyncio.get_running_loop().create_future()
    conv.on_message(done.set_result)
    try:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
        await conv.send("Say hello")
        assert await asyncio.wait_for(done, WAIT) == "Hello from the mock"
    finally:
        handle.stdin.close()
        await handle.wait(WAIT)
        await asyncio.wait_for(reader, WAIT)
    assert handle.report.status == "ok" and not handle.report.failed(), handle.report.summary()
    assert handle.report.played == len(handle.engine.cassette.events)


def test_a_bad_line_in_a_big_cassette_is_said_when_the_play_reaches_it(big_cassette: Path,
                                                                      tmp_path: Path) -> None:
    """The fake answers at once (nothing is parsed ahead), then stops at the bad line (here the
    answer to turn/start): the request waiting for it gets an error naming file:line, and the
    report and stderr say the same."""
    lines = big_cassette.read_bytes().split(b"\n")
    start = next(n for n, line in enumerate(lines) if b'"method":"turn/start"' in line)
    bad = start + 1
    assert b'"result"' in lines[bad]
    lines[bad] = lines[bad][:60]  # torn in the middle of a complete cassette
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b"\n".join(lines))
    report = tmp_path / "report.json"
    said = [json.loads(line.replace(b"{{cwd}}", b"/work/project")) for line in lines[1:start + 1]]
    client = [e["msg"] for e in said if e["from"] == "client" and "msg" in e]
    proc = subprocess.Popen([sys.executable, "-m", "fake_server", "--cassette", str(path), "--report", str(report),
                             "--timeout", "5", "--linger", "5", "app-server"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(b"".join(json.dumps(m).encode() + b"\n" for m in client), timeout=30)
    finally:
        proc.kill()
    answers = [json.loads(line) for line in out.splitlines()]
    assert answers[0]["id"] == client[0]["id"] and "result" in answers[0]  # initialize, answered
    errors = [a for a in answers if a.get("id") == client[-1]["id"]]
    where = f"{path}:{bad + 1}"
    assert len(errors) == 1 and where in errors[0]["error"]["message"], (err, report.read_text())
    assert "not valid JSON" in errors[0]["error"]["message"]
    assert proc.returncode != 0
    written = json.loads(report.read_text())
    assert written["status"] == "error" and where in written["divergence"]["message"], written
    assert where in err.decode()


@pytest.mark.parametrize("lazy_from", [0, 1 << 40], ids=["indexed", "parsed"])
def test_a_line_naming_two_senders_is_refused(tmp_path: Path, lazy_from: int) -> None:
    """The index reads the sender from a line's head, JSON keeps the last of two: refused, so
    the replay and the index never disagree on whose turn it is."""
    path = tmp_path / "two.jsonl"
    path.write_text('{"codex_cassette":1,"meta":{"complete":true}}\n'
                    '{"i":1,"from":"client","t":0,"msg":{"id":1,"method":"initialize"},"from":"server"}\n')
    with pytest.raises(CassetteError) as info:
        list(load_cassette(path, lazy_from=lazy_from).events)
    assert info.value.line == 2 and "'from' is given twice" in info.value.message


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
MESSAGES = st.fixed_dictionaries({}, optional={"id": st.integers(0, 99) | st.text(max_size=4),
                                               "method": st.sampled_from(["a/b", "{{x}}", "turn/start"]),
                                               "params": JSON_VALUES, "result": JSON_VALUES})


@settings(max_examples=400, deadline=None)
@given(msg=MESSAGES, i=st.integers(0, 10 ** 12), side=st.sampled_from(["client", "server"]),
       t=st.one_of(st.integers(0, 10 ** 6), st.floats(0, 1e6, allow_nan=False), st.just(1e-05)))
def test_a_line_in_the_writers_layout_reads_as_the_same_line_laid_out_otherwise(msg, i, side, t) -> None:
    """read_event takes a shortcut for the writer's layout (msg decoded alone): the event must be
    the one the full parse gives for the same JSON with other spacing."""
    from harness.format.cassette import read_event

    body = json.dumps(msg, separators=(",", ":")).encode()
    raw = b'{"i":%d,"from":"%s","t":%s,"msg":%s}' % (i, side.encode(), json.dumps(t).encode(), body)
    spaced = json.dumps(json.loads(raw)).encode()
    fast, has_i = read_event(Path("c.jsonl"), 7, raw)
    slow, _ = read_event(Path("c.jsonl"), 7, spaced)
    assert has_i and slow.wire is None
    assert dataclasses.replace(fast, wire=None) == slow
    kept = side == "server" and "method" in msg and b"{{" not in raw
    assert fast.wire == (body + b"\n" if kept else None)


@pytest.mark.asyncio
@pytest.mark.parametrize("lazy_from", [0, 1 << 40], ids=["indexed", "parsed"])
async def test_what_a_client_left_unplayed_is_listed_alike(lazy_from: int) -> None:
    """optio bootstraps and hangs up before its turn: the report lists the same unplayed events,
    at the same lines, whether the cassette was indexed or parsed."""
    path = ROOT / "cassettes" / "optio" / "text_turn.jsonl"
    cassette = load_cassette(path, lazy_from=lazy_from)
    handle = InProcessCodex(cassette, ReplayOptions(timeout=WAIT, linger=WAIT))
    conv = CodexConversation(cwd="/work/project")
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    try:
        await asyncio.wait_for(conv.bootstrap(), WAIT)
    finally:
        handle.stdin.close()
        await handle.wait(WAIT)
        await asyncio.wait_for(reader, WAIT)
    report = handle.report
    assert report.status == "incomplete" and report.failed()
    first = next(e for e in load_cassette(path).events if e.msg and e.msg.get("method") == "turn/start")
    assert report.unplayed[0] == {"at": f"{path}:{first.line}", "event": first.describe()}
    assert len(report.unplayed) == len(load_cassette(path).events) - load_cassette(path).events.index(first)
