"""JSONL framing and the JSON codec under it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


FAST_SWITCH = """
import json, sys
from harness.format import wire
small = json.dumps({"x": "a" * 100}).encode()
assert wire.decode(small) == {"x": "a" * 100} and wire.encode({"n": 1}) == b'{"n":1}\\n'
assert "orjson" not in sys.modules, "loaded for a few bytes"
wire.decode(json.dumps({"x": "a" * wire.FAST_AFTER}).encode())
assert wire.decode(small) == {"x": "a" * 100}
assert "orjson" in sys.modules, "not loaded past FAST_AFTER"
for value in (%d, 2**64, -(2**63) - 1, 10**19):
    assert wire.decode(json.dumps({"id": value}).encode()) == {"id": value}
    assert json.loads(wire.encode({"n": value})) == {"n": value}
print("ok")
""" % HUGE


def test_orjson_comes_in_only_once_it_pays_and_keeps_huge_integers_exact() -> None:
    # A fresh interpreter: in this one something else may have imported orjson already.
    env = {k: v for k, v in os.environ.items() if k != "CODEX_CASSETTE_NO_ORJSON"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", FAST_SWITCH], capture_output=True, timeout=60, env=env)
    assert done.stdout == b"ok\n", done.stderr.decode()
