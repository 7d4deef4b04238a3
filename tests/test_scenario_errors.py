"""YAML scenarios: every kind of mistake is a ScenarioError naming file:line,
and the good shapes compile into the events a recording would have."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.format.load import open_cassette
from harness.errors import CassetteError, ScenarioError
from harness.format.scenario import load_scenario
from harness.format.writer import dump_cassette


def scenario(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


BAD = {
    "invalid-yaml": ("""
        steps:
          - expect: initialize
            reply: {userAgent: "x"
          - expect: initialized
        """, 4, "not valid yaml"),
    "not-a-mapping": ("""
        - expect: initialize
        """, 1, "mapping with a 'steps' list"),
    "no-steps": ("""
        name: nothing here
        """, 1, "non-empty 'steps'"),
    "empty-steps": ("""
        name: nothing here
        steps: []
        """, 1, "non-empty 'steps'"),
    "two-kinds": ("""
        steps:
          - expect: initialize
            reply: {}
          - notify: thread/started
            expect: turn/start
        """, 4, "expect and notify"),
    "unknown-kind": ("""
        steps:
          - expect: initialize
            reply: {}
          - frobnicate: thread/started
        """, 4, "has none"),
    "bad-match-mode": ("""
        steps:
          - expect: initialize
            params: {clientInfo: {name: x}}
            match: fuzzy
            reply: {}
        """, 2, "'fuzzy'"),
    "bad-top-level-match": ("""
        name: x
        match: fuzzy
        steps:
          - expect: initialize
        """, 1, "'match' must be one of"),
    "bad-ignore": ("""
        steps:
          - expect: initialize
            params: {}
            ignore: params.cwd
            reply: {}
        """, 2, "'ignore' takes a list of dotted paths"),
    "reply-to-unknown-label": ("""
        steps:
          - expect: turn/start
            as: turn
          - reply_to: trun
            result: {}
          - reply_to: turn
            result: {}
        """, 4, "names no earlier 'expect' with 'as: trun'"),
    "label-never-answered": ("""
        steps:
          - expect: initialize
            reply: {}
          - expect: turn/start
            as: turn
          - notify: turn/started
        """, 4, "never answered"),
    "label-answered-twice": ("""
        steps:
          - expect: turn/start
            as: turn
          - reply_to: turn
            result: {}
          - reply_to: turn
            result: {}
        """, 6, "answered twice"),
    "label-used-twice": ("""
        steps:
          - expect: turn/start
            as: turn
          - expect: turn/start
            as: turn
          - reply_to: turn
            result: {}
        """, 4, "used twice"),
    "label-with-reply": ("""
        steps:
          - expect: turn/start
            as: turn
            reply: {}
        """, 2, "drop 'reply'"),
    "reply-to-without-result": ("""
        steps:
          - expect: turn/start
            as: turn
          - reply_to: turn
        """, 4, "needs a 'result' or an 'error'"),
    "bad-error-shape": ("""
        steps:
          - expect: turn/start
            error: "went wrong"
        """, 2, "an integer 'code', a string 'message'"),
    "request-without-expect-reply": ("""
        steps:
          - expect: initialize
            reply: {}
          - request: item/commandExecution/requestApproval
            params: {threadId: t, turnId: u, itemId: i}
        """, 4, "needs 'expect_reply'"),
    "expect-without-method": ("""
        steps:
          - expect: {params: {a: 1}}
        """, 2, "needs a method name"),
    "fault-unknown-kind": ("""
        steps:
          - expect: initialize
            reply: {}
          - fault: {explode: true}
        """, 4, "'fault' must be a mapping"),
    "fault-not-mapping": ("""
        steps:
          - fault: delay
        """, 2, "'fault' must be a mapping"),
    "fault-negative-delay": ("""
        steps:
          - expect: initialize
            reply: {}
          - fault: {delay: -1}
        """, 4, "number of seconds"),
    "fault-bad-stall": ("""
        steps:
          - fault: {stall: soon}
        """, 2, "number of seconds"),
    "fault-bad-exit": ("""
        steps:
          - fault: {exit: crash}
        """, 2, "exit code"),
    "unknown-top-level-key": ("""
        name: x
        stpes:
          - expect: initialize
        """, 1, "unknown top-level key(s) ['stpes']"),
}


@pytest.mark.parametrize("text,line,words", list(BAD.values()), ids=list(BAD))
def test_bad_scenario_is_a_scenario_error_with_file_and_line(tmp_path: Path, text: str, line: int,
                                                              words: str) -> None:
    path = scenario(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        open_cassette(path)  # the way users reach it: by suffix
    err = info.value
    assert isinstance(err, CassetteError)
    assert err.line == line, str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    assert words.lower() in str(err).lower()
    assert "\n" not in str(err)


def test_non_mapping_step_names_its_line(tmp_path: Path) -> None:
    path = scenario(tmp_path, """
        steps:
          - expect: initialize
            reply: {}
          - just a string
        """)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line == 4
    assert "must be a mapping" in str(info.value)


def test_missing_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.yaml"
    with pytest.raises(ScenarioError) as info:
        open_cassette(path)
    assert str(info.value).startswith(f"{path}: cannot read the scenario")


# -- good shapes ---------------------------------------------------------------


def test_ids_and_match_modes(tmp_path: Path) -> None:
    path = scenario(tmp_path, """
        name: ids
        meta: {codex_version: "0.163.0"}
        steps:
          - expect: initialize
            reply: {userAgent: x}
          - expect: initialized
          - expect: thread/start
            params: {cwd: "{{cwd}}"}
            reply: {thread: {id: thr_1}}
          - expect: {method: thread/list, id: "custom-7"}
            reply: {data: []}
          - expect: turn/start
            params: {threadId: thr_1}
            match: subset
            ignore: [params.input]
            reply: {turn: {id: turn_1}}
          - expect: {method: config/read, request: true}
          - notify: turn/started
            params: {threadId: thr_1}
          - notify: {method: item/started, params: {threadId: thr_1}, emittedAtMs: 5}
        """)
    c = load_scenario(path)
    assert c.meta == {"codex_version": "0.163.0", "scenario": "ids", "complete": True, "source": "scenario"}
    msgs = [(e.side, e.msg) for e in c.events]
    assert msgs[0] == ("client", {"id": 1, "method": "initialize"})
    assert msgs[1] == ("server", {"id": 1, "result": {"userAgent": "x"}})
    assert msgs[2] == ("client", {"method": "initialized"})          # a notification: no id
    assert msgs[3] == ("client", {"id": 2, "method": "thread/start", "params": {"cwd": "{{cwd}}"}})
    assert msgs[5] == ("client", {"id": "custom-7", "method": "thread/list"})
    assert msgs[6] == ("server", {"id": "custom-7", "result": {"data": []}})
    request_ids = [m["id"] for side, m in msgs if side == "client" and "id" in m]
    assert len(set(request_ids)) == len(request_ids) == 5            # an explicit id never collides
    assert all(isinstance(i, int) for i in request_ids if i != "custom-7")
    assert msgs[9][1]["method"] == "config/read" and "id" in msgs[9][1]  # request: true, no reply yet
    assert msgs[11] == ("server", {"method": "item/started", "params": {"threadId": "thr_1"}, "emittedAtMs": 5})
    # No params means "the method is enough"; params mean exact unless told otherwise.
    assert c.events[0].match == {"mode": "method"}
    assert c.events[3].match is None
    assert c.events[7].match == {"mode": "subset", "ignore": ["params.input"]}
    # Every event points at its YAML step.
    assert [e.line for e in c.events] == [4, 4, 6, 7, 7, 10, 10, 12, 12, 17, 18, 20]
    assert c.where(c.events[7]) == f"{path}:12"
    assert [e.index for e in c.events] == list(range(1, 13))
    assert all(k != "__line__" for e in c.events for k in (e.msg or {}))


def test_top_level_match_sets_the_default(tmp_path: Path) -> None:
    path = scenario(tmp_path, """
        match: subset
        steps:
          - expect: thread/start
            params: {cwd: /w}
            reply: {}
          - expect: turn/start
            params: {threadId: t}
            match: exact
            reply: {}
        """)
    c = load_scenario(path)
    assert c.events[0].match == {"mode": "subset"}
    assert c.events[2].match is None


def test_labels_answer_later(tmp_path: Path) -> None:
    path = scenario(tmp_path, """
        steps:
          - expect: turn/start
            as: turn
          - notify: turn/started
          - expect: turn/interrupt
            as: stop
          - reply_to: stop
            result: {}
          - reply_to: turn
            error: {code: -32000, message: interrupted}
        """)
    c = load_scenario(path)
    assert [(e.side, e.msg) for e in c.events] == [
        ("client", {"id": 1, "method": "turn/start"}),
        ("server", {"method": "turn/started"}),
        ("client", {"id": 2, "method": "turn/interrupt"}),
        ("server", {"id": 2, "result": {}}),
        ("server", {"id": 1, "error": {"code": -32000, "message": "interrupted"}}),
    ]


def test_server_requests_and_client_replies(tmp_path: Path) -> None:
    path = scenario(tmp_path, """
        steps:
          - request: item/commandExecution/requestApproval
            params: {itemId: i1}
            expect_reply: {decision: accept}
          - request: {method: item/fileChange/requestApproval, id: 77}
            expect_error: {code: -1}
          - request: item/tool/requestUserInput
            no_reply: true
          - request: item/permissions/requestApproval
            expect_reply: {decision: decline}
            match: method
        """)
    c = load_scenario(path)
    assert [(e.side, e.msg) for e in c.events] == [
        ("server", {"id": 0, "method": "item/commandExecution/requestApproval", "params": {"itemId": "i1"}}),
        ("client", {"id": 0, "result": {"decision": "accept"}}),
        ("server", {"id": 77, "method": "item/fileChange/requestApproval"}),
        ("client", {"id": 77, "error": {"code": -1}}),
        ("server", {"id": 1, "method": "item/tool/requestUserInput"}),
        ("server", {"id": 2, "method": "item/permissions/requestApproval"}),
        ("client", {"id": 2, "result": {"decision": "decline"}}),
    ]
    assert c.events[1].match is None
    assert c.events[3].match == {"mode": "subset"}   # an expected error is matched on what it names
    assert c.events[6].match == {"mode": "method"}


def test_faults_compile_to_events(tmp_path: Path) -> None:
    path = scenario(tmp_path, """
        steps:
          - expect: initialize
            reply: {}
          - fault: {delay: 0.25}
          - fault: {garbage: "not json"}
          - raw: "also not json"
          - fault: {partial: '{"id": 1, "res'}
          - fault: {stall: 2}
          - fault: {close_stdout: true}
          - close: true
          - expect_close: true
          - fault: {exit: 3}
          - exit: 0
        """)
    c = load_scenario(path)
    ev = c.events[2:]
    assert [(e.side, e.kind) for e in ev] == [
        ("server", "fault"), ("server", "raw"), ("server", "raw"), ("server", "raw"), ("server", "fault"),
        ("server", "eof"), ("server", "eof"), ("client", "eof"), ("server", "exit"), ("server", "exit")]
    assert ev[0].fault == {"delay": 0.25}
    assert ev[1].raw == b"not json" and ev[1].newline
    assert ev[2].raw == b"also not json"
    assert ev[3].raw == b'{"id": 1, "res' and ev[3].newline is False
    assert ev[4].fault == {"stall": 2}
    assert ev[8].exit == 3 and ev[9].exit == 0
    # A delay moves the scenario clock, so recorded pace replays it too.
    assert ev[0].t == 0.0 and ev[1].t == 0.25 and ev[-1].t == 0.25
    assert [e.line for e in ev] == list(range(4, 14))


def test_compiled_scenario_dumps_to_a_loadable_cassette(tmp_path: Path) -> None:
    from harness.format.cassette import load_cassette

    path = scenario(tmp_path, """
        steps:
          - expect: initialize
            reply: {}
          - fault: {partial: "tail"}
          - request: item/commandExecution/requestApproval
            expect_reply: {decision: accept}
        """)
    c = load_scenario(path)
    out = load_cassette(dump_cassette(c, tmp_path / "compiled.jsonl"))
    assert [e.to_json() for e in out.events] == [e.to_json() for e in c.events]
    assert out.complete
