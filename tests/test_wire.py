"""JSONL framing and the JSON codec under it."""

from __future__ import annotations

import json
from pathlib import Path

from harness.format.cassette import load_cassette
from harness.format.wire import Kind, Line, LineSplitter, classify, decode, encode

HUGE = 123456789012345678901234567890


def test_huge_integers_survive_parsing_exactly() -> None:
    # The fast parser would turn these into floats; they must come back exact.
    for value in (HUGE, 2**64, -(2**63) - 1, 10**19):
        assert decode(json.dumps({"id": value}).encode()) == {"id": value}
        assert type(decode(json.dumps([value]).encode())[0]) is int


def test_what_the_fast_parser_refuses_still_parses() -> None:
    assert Line(b'{"x": NaN}').parse()[1]
    assert decode(b'"\\ud800"') == "\ud800"
    assert Line(b"not json").parse() == (None, False)


def test_a_cassette_keeps_a_huge_id(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"codex_cassette": 1, "meta": {}}\n'
                    f'{{"i": 1, "from": "client", "t": 0, "msg": {{"id": {HUGE}, "method": "x"}}}}\n')
    assert load_cassette(path).events[0].msg["id"] == HUGE


def test_encode_is_one_compact_line() -> None:
    data = encode({"method": "a", "params": {"text": "é\n", "n": HUGE}})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"method": "a", "params": {"text": "é\n", "n": HUGE}}


def test_splitter_keeps_partial_lines_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b'{"a"') == []
    assert s.feed(b':1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert s.rest() == b'{"c"'


def test_classify() -> None:
    assert classify({"id": 1, "method": "m"}) is Kind.REQUEST
    assert classify({"method": "m"}) is Kind.NOTIFICATION
    assert classify({"id": "u", "result": {}}) is Kind.RESPONSE
    assert classify({"id": 1, "error": {"code": 1}}) is Kind.RESPONSE
    assert classify({"id": None, "method": "m"}) is Kind.NOTIFICATION
    assert classify([1]) is Kind.INVALID
