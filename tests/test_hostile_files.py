"""Hostile cassettes and scenarios (issue 13): each is a one-paragraph error naming file
and line, never a traceback, never a silent acceptance; `show` prints what loads without
a terminal escape; an alias bomb is refused before it expands."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fake_server.commands import FakeCodexCommand
from harness.errors import CassetteError, ERROR_CAP
from harness.format.load import open_cassette
from harness.show import render

HEADER = b'{"codex_cassette": 1, "meta": {"complete": true}}\n'
EVENT = b'{"i": 1, "from": "client", "t": 0.0, "msg": {"method": "a"}}\n'


def ev(**fields: object) -> bytes:
    return json.dumps({"i": 1, "from": "client", "t": 0.0, "msg": {"method": "a"}, **fields}).encode() + b"\n"


CASSETTES = {
    "invalid-utf8-in-an-event": (HEADER + b'{"i": 1, "from": "client", "t": 0, "msg": {"method": "a\xff"}}\n',
                                 2, "not UTF-8 (byte 0xff)"),
    "invalid-utf8-in-the-header": (b'{"codex_cassette": 1, "meta": {"x": "\xc3"}}\n', 1, "not UTF-8"),
    "nested-too-deep": (HEADER + b'{"i": 1, "from": "client", "t": 0, "msg": {"params": ' + b"[" * 5000
                        + b"]" * 5000 + b"}}\n", 2, "nested deeper than 100 levels"),
    "blank-lines-only": (b"\n\n\n", 1, "line 1 is blank"),
    "blank-line-hiding-no-header": (b"\n" + EVENT, 1, "line 1 is blank"),
    "whitespace-only": (b"  \n\t\n", 1, "line 1 is blank"),
    "no-header": (EVENT, 1, "cassette header"),
    "i-backwards": (HEADER + ev(i=2) + ev(i=1), 3, "'i' goes backwards: 1 after 2 at line 2"),
    "i-repeated": (HEADER + ev(i=2) + ev(i=2), 3, "'i' goes backwards"),
    "t-backwards-on-one-side": (HEADER + ev(i=1, t=5) + ev(i=2, t=1), 3, "'t' goes backwards on the client side"),
    "i-not-a-number": (HEADER + ev(i="x"), 2, "'i' takes the event's number"),
    "i-a-list": (HEADER + ev(i=[1]), 2, "'i' takes the event's number"),
    "i-a-float": (HEADER + b'{"i": 1e400, "from": "client", "t": 0, "msg": {}}\n', 2, "'i' takes"),
    "t-nan": (HEADER + b'{"i": 1, "from": "client", "t": NaN, "msg": {}}\n', 2, "'t' takes a number"),
    "t-infinite": (HEADER + b'{"i": 1, "from": "client", "t": Infinity, "msg": {}}\n', 2, "'t' takes a number"),
    "t-negative": (HEADER + ev(t=-1), 2, "'t' takes a number of seconds (0 or more)"),
    "match-a-list": (HEADER + ev(match=[1]), 2, "'match' must be an object"),
    "match-mode-unknown": (HEADER + ev(match={"mode": "fuzzy"}), 2, "'match.mode' must be one of"),
    "nonl-a-string": (HEADER + ev(nonl="yes"), 2, "'nonl' takes true or false"),
    "fault-delay-a-word": (HEADER + b'{"i": 1, "from": "server", "t": 0, "fault": {"delay": "soon"}}\n', 2,
                           "fault delay takes a number of seconds"),
    "fault-exit-a-word": (HEADER + b'{"i": 1, "from": "server", "t": 0, "fault": {"exit": "x"}}\n', 2,
                          "fault exit takes an exit code"),
    "huge-unknown-field": (HEADER + ev(**{"x" * 100_000: 1}), 2, "unknown event field(s)"),
    "escape-in-sender": (HEADER + b'{"i": 1, "from": "\\u001b]0;t\\u0007", "t": 0, "msg": {}}\n', 2,
                         "unknown sender"),
}

SCENARIOS = {
    "not-utf8": ("steps:\n  - notify: caf\xe9\n".encode("latin-1"), 2, "not UTF-8 (byte 0xe9)"),
    "nested-too-deep-flow": (b"steps:\n  - notify: x\n    params: " + b"[" * 20000 + b"]" * 20000 + b"\n", 3,
                             "nested deeper than 100 levels"),
    "nested-too-deep-block": (b"steps:\n  - notify: x\n    params:\n" + b"".join(
        b"  " * (n + 3) + b"k:\n" for n in range(3000)) + b"  " * 3003 + b"v\n", 100, "nested deeper than 100"),
    "deep-through-aliases": (b"meta:\n  a: &a " + b"[" * 60 + b"]" * 60 + b"\n  b: &b " + b"[" * 50 + b"*a"
                             + b"]" * 50 + b"\nsteps:\n  - notify: x\n    params: {v: *b}\n", 3,
                             "nested deeper than 100 levels (through aliases)"),
    "duplicate-key-in-a-step": (b"steps:\n  - expect: initialize\n    params: {a: 1}\n    params: {a: 2}\n"
                                b"    reply: {}\n", 4, "duplicate key 'params' (first at line 3)"),
    "duplicate-top-level-key": (b"steps:\n  - expect: x\nsteps:\n  - expect: y\n", 3, "duplicate key 'steps'"),
    "recursive-alias": (b"steps:\n  - notify: x\n    params: &p {self: *p}\n", 3, "recursive alias"),
    "nul-character": (b"steps:\n  - notify: x\x00\n", 2, "special characters are not allowed"),
    "boolean-key": (b"steps:\n  - notify: x\n    params: {on: 1}\n", 3, "quote the key"),
    "binary-value": (b"steps:\n  - notify: x\n    params: {d: !!binary aGVsbG8=}\n", 3, "'binary' values have no JSON"),
    "set-value": (b"steps:\n  - notify: x\n    params: !!set {a, b}\n", 3, "'set' values have no JSON"),
    "nan-value": (b"steps:\n  - notify: x\n    params: {v: .nan}\n", 3, "is not a number JSON can carry"),
    "label-a-list": (b"steps:\n  - expect: x\n    as: [1]\n", 2, "'as' takes a label"),
    "reply-to-a-list": (b"steps:\n  - expect: x\n    as: t\n  - reply_to: [t]\n    result: {}\n", 4,
                        "'reply_to' takes a label"),
    "meta-a-list": (b"meta: [1]\nsteps:\n  - expect: x\n", 1, "'meta' takes a mapping, not [1]"),
    "delay-a-boolean": (b"steps:\n  - fault: {delay: true}\n", 2, "fault delay takes a number of seconds"),
    "python-tag": (b"steps: !!python/object/apply:os.system ['true']\n", 1, "could not determine a constructor"),
}


def check_error(path: Path, line: int, words: str) -> None:
    with pytest.raises(CassetteError) as info:
        open_cassette(path)
    text = info.value.headline  # the paragraph; a line that is not JSON is shown under it
    assert info.value.line == line, text
    assert text.startswith(f"{path}:{line}: ") and words in text, text
    assert "\n" not in text and "\x1b" not in str(info.value) and len(text) <= ERROR_CAP + 64


@pytest.mark.parametrize("data,line,words", list(CASSETTES.values()), ids=list(CASSETTES))
def test_a_hostile_cassette_is_a_file_and_line_error(tmp_path: Path, data: bytes, line: int, words: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(data)
    check_error(path, line, words)


@pytest.mark.parametrize("data,line,words", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_a_hostile_scenario_is_a_file_and_line_error(tmp_path: Path, data: bytes, line: int, words: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(data)
    check_error(path, line, words)


def test_blank_lines_after_the_header_are_passed_over(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(HEADER + b"\n  \n" + EVENT + b"\n")
    assert [e.line for e in open_cassette(path).events] == [4]


def test_a_date_in_a_scenario_stays_a_string(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("steps:\n  - notify: x\n    params: {day: 2024-01-01, at: 2024-01-01T10:00:00Z}\n")
    assert open_cassette(path).events[0].msg["params"] == {"day": "2024-01-01", "at": "2024-01-01T10:00:00Z"}


def test_a_shared_anchor_stays_one_shared_value(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""
        meta: {big: &big {items: [1, 2, 3]}}
        steps:
          - notify: a
            params: {x: *big, y: *big}
        """))
    params = open_cassette(path).events[0].msg["params"]
    assert params == {"x": {"items": [1, 2, 3]}, "y": {"items": [1, 2, 3]}}
    assert params["x"] is params["y"]


BOMB = "meta:\n  a0: &a0 [" + ", ".join(["lol"] * 9) + "]\n" + "".join(
    f"  a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]\n" for n in range(1, 9)) + \
    "steps:\n  - notify: boom\n    params: {x: *a8}\n"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    # 9^9 strings behind ~500 bytes. Loaded in a child with 1 GiB of address space: a loader
    # that expanded it would die of MemoryError there, not eat the machine.
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from harness.format.load import open_cassette; from harness.errors import HarnessError\n"
            "try:\n    open_cassette(sys.argv[1])\nexcept HarnessError as exc:\n    print(exc)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          env=FakeCodexCommand(path).env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{path}:") and "alias bomb" in proc.stdout


def test_the_fake_reports_a_hostile_cassette_in_one_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(HEADER + b'{"i": 1, "from": "client", "t": 0, "msg": {"method": "a\xff"}}\n')
    command = FakeCodexCommand(path, report=tmp_path / "report.json")
    proc = subprocess.run(command.cold_argv(), capture_output=True, text=True, timeout=30, env=command.env(),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stderr.rstrip() == (f"fake codex: {path}:2: not valid JSON: not UTF-8 (byte 0xff) at column 56\n"
                                    '    ...: "client", "t": 0, "msg": {"method": "a\ufffd"}}\n'
                                    + " " * 47 + "^")
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "error"


SHOWN = [{"method": 5}, {"method": "turn/start", "params": {"input": [{"text": 5}]}},
         {"method": "error", "params": {"error": "x"}}, {"method": "thread/status/changed", "params": "s"},
         {"method": "item/agentMessage/delta", "params": []}, {"id": 1, "error": []},
         {"method": "x\u001b]0;retitled\u0007", "params": {"delta": "\u001b[2J"}}]


def test_show_survives_odd_shapes_and_prints_no_escape(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    meta = {"complete": True, "codex_version": "\u001b]0;t\u0007", "client": {"name": "\u009b31m"}}
    lines = [json.dumps({"codex_cassette": 1, "meta": meta})]
    lines += [json.dumps({"i": n, "from": "server", "t": 0, "msg": m}) for n, m in enumerate(SHOWN, 1)]
    lines.append(json.dumps({"i": 99, "from": "server", "t": 0, "raw": "\u001b[2Jraw\rline"}))
    path.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    render(open_cassette(path), out, width=120)
    text = out.getvalue()
    assert not any(c in text for c in "\x1b\x07\r\x9b"), text
    assert "\\x1b]0;retitled\\x07" in text and "\\x1b[2Jraw\\x0dline" in text
