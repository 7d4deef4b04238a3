"""Values in scenarios and cassettes are checked for type and range at load, never coerced
(issue 21.6): a wrong value is a file:line error saying which key, what it got and what it
takes; a death by a signal replays as that death, cold, warm (fork server) and in-process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from fake_server import FakeCodexCommand
from fake_server.forkserver import ForkServer, launcher_argv
from fake_server.inprocess import InProcessCodex
from harness.errors import CassetteError
from harness.format.cassette import load_cassette
from harness.format.load import open_cassette
from harness.format.values import MAX_SECONDS
from harness.format.writer import dump_cassette
from harness.replay.options import ReplayOptions

WAIT = 10.0
HEADER = '{"codex_cassette": 1, "meta": {"complete": true}}\n'


def scenario(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def refused(path: Path, line: int, *words: str) -> str:
    with pytest.raises(CassetteError) as info:
        open_cassette(path)
    text = str(info.value)
    assert info.value.line == line and text.startswith(f"{path}:{line}: "), text
    assert all(w in text for w in words), text
    assert "\n" not in text and "Traceback" not in text
    return text


# (step text, the line of the error, words the error holds: the key, what it got, what it takes)
BAD_STEPS = {
    "delay-1e300": ("- fault: {delay: 1.0e+300}", "fault delay", "1e+300", "from 0 to 3600"),
    "stall-huge-int": ("- fault: {stall: 99999999999999999999}", "fault stall", "99999999999999999999"),
    "delay-negative": ("- fault: {delay: -0.5}", "fault delay", "-0.5"),
    "delay-a-string": ("- fault: {delay: '1'}", "fault delay", "'1'"),
    "exit-256": ("- exit: 256", "'exit'", "256", "0-255"),
    "exit-minus-256": ("- exit: -256", "'exit'", "-256"),
    "exit-minus-9": ("- exit: -9", "'exit'", "SIGKILL for 9"),
    "fault-exit-256": ("- fault: {exit: 256}", "fault exit", "256"),
    "exit-a-stopping-signal": ("- exit: SIGSTOP", "'exit'", "'SIGSTOP'"),
    "exit-an-unknown-signal": ("- exit: SIGNOPE", "'exit'", "'SIGNOPE'"),
    "exit-a-float": ("- exit: 1.0", "'exit'", "1.0"),
    "raw-a-list": ("- raw: [a, b]", "'raw'", "['a', 'b']", "a string"),
    "garbage-a-mapping": ("- fault: {garbage: {k: 1}}", "fault garbage", "{'k': 1}"),
    "partial-a-list": ("- fault: {partial: [1]}", "fault partial", "[1]"),
    "close-5": ("- close: 5", "'close'", "5", "true"),
    "close-false": ("- close: false", "'close'", "False"),
    "close-stdout-no": ("- fault: {close_stdout: 'no'}", "fault close_stdout", "'no'"),
    "expect-close-no": ("- expect_close: 'no'", "'expect_close'", "'no'", "a quoted word is a string"),
    "error-code-a-string": ("- expect: x\n  error: {code: 'x', message: 1}", "'error'", "integer 'code'"),
    "error-message-a-number": ("- expect: x\n  error: {code: 1, message: 1}", "'error'", "string 'message'"),
    "error-stray-key": ("- expect: x\n  error: {code: 1, message: m, why: w}", "'error'", "'why'"),
    "reply-to-error": ("- expect: x\n  as: a\n- reply_to: a\n  error: {code: 1.5, message: m}", "'error'"),
    "expect-error-code-a-string": ("- request: r\n  expect_error: {code: 'x'}", "'expect_error'", "'x'"),
    "no-reply-a-word": ("- request: r\n  no_reply: 'yes'", "'no_reply'", "'yes'"),
    "request-flag-a-word": ("- expect: {method: x, request: 'yes'}", "'request'", "'yes'"),
    "request-false-with-a-reply": ("- expect: {method: x, request: false}\n  reply: {}", "'request: false'", "'reply'"),
    "id-a-list": ("- expect: {method: x, id: [1]}\n  reply: {}", "'id'", "[1]"),
    "id-a-boolean": ("- request: {method: r, id: true}\n  no_reply: true", "'id'", "True"),
    "method-empty": ("- notify: ''", "'method'", "''"),
    "params-a-number": ("- notify: x\n  params: 5", "'params'", "5"),
    "label-a-float": ("- expect: x\n  as: 1.5", "'as'", "1.5"),
    "label-empty": ("- expect: x\n  as: ''", "'as'", "''"),
    "expect-mapping-misspelt": ("- expect: {method: x, parms: {}}", "'parms'"),
}


@pytest.mark.parametrize("step,words", [(v[0], v[1:]) for v in BAD_STEPS.values()], ids=list(BAD_STEPS))
def test_a_wrong_value_in_a_step_is_refused_naming_key_value_and_what_it_takes(
        tmp_path: Path, step: str, words: tuple[str, ...]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("steps:\n" + textwrap.indent(step, "  ") + "\n")
    with pytest.raises(CassetteError) as info:
        open_cassette(path)
    text = str(info.value)
    assert text.startswith(f"{path}:") and info.value.line in range(2, 3 + step.count("\n")), text
    assert all(w in text for w in words), text
    assert "\n" not in text


@pytest.mark.parametrize("top,words", [
    ("name: [1]", ("'name'", "[1]", "a string")),
    ("description: {a: 1}", ("'description'", "{'a': 1}")),
    ("meta: 5", ("'meta'", "5", "a mapping")),
    ("match: [exact]", ("'match' must be one of",)),
], ids=["name", "description", "meta", "match"])
def test_a_wrong_top_level_value_is_refused(tmp_path: Path, top: str, words: tuple[str, ...]) -> None:
    path = scenario(tmp_path, f"{top}\nsteps:\n  - expect: x\n")
    refused(path, 1, *words)


BAD_EVENTS = {
    "delay-1e300": ({"from": "server", "fault": {"delay": 1e300}}, "fault delay", "1e+300"),
    "stall-over-the-cap": ({"from": "server", "fault": {"stall": MAX_SECONDS + 1}}, "fault stall"),
    "exit-256": ({"from": "server", "exit": 256}, "'exit'", "256"),
    "exit-minus-256": ({"from": "server", "exit": -256}, "'exit'", "-256"),
    "exit-sigstop": ({"from": "server", "exit": "SIGSTOP"}, "'exit'", "'SIGSTOP'"),
    "exit-a-word": ({"from": "server", "exit": "crash"}, "'exit'", "'crash'"),
    "fault-exit-a-signal-number-out-of-range": ({"from": "server", "fault": {"exit": "SIG99"}}, "fault exit"),
    "fault-garbage-an-object": ({"from": "server", "fault": {"garbage": {"k": 1}}}, "fault garbage"),
    "fault-close-stdout-5": ({"from": "server", "fault": {"close_stdout": 5}}, "fault close_stdout", "5"),
    "note-a-number": ({"from": "server", "note": 5, "exit": 0}, "'note'", "5"),
    "binary-false": ({"from": "server", "raw": "x", "binary": False}, "'binary'", "False"),
}


@pytest.mark.parametrize("event,words", [(v[0], v[1:]) for v in BAD_EVENTS.values()], ids=list(BAD_EVENTS))
def test_a_wrong_value_in_a_cassette_event_is_refused(tmp_path: Path, event: dict, words: tuple[str, ...]) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(HEADER + json.dumps({"i": 1, "t": 0, **event}) + "\n")
    refused(path, 2, *words)


@pytest.mark.parametrize("meta,words", [
    ({"complete": "no"}, ("'meta.complete'", "'no'", "true or false")),
    ({"complete": 1}, ("'meta.complete'", "1")),
    ({"complete": True, "codex_version": [0, 163]}, ("'meta.codex_version'", "[0, 163]")),
], ids=["complete-a-word", "complete-a-number", "version-a-list"])
def test_a_wrong_value_in_the_header_is_refused(tmp_path: Path, meta: dict, words: tuple[str, ...]) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"codex_cassette": 1, "meta": meta}) + "\n")
    refused(path, 1, *words)
    yaml_path = scenario(tmp_path, f"meta: {json.dumps(meta)}\nsteps:\n  - expect: x\n")
    if "codex_version" in meta:  # a scenario's header is complete by definition; its version is read
        refused(yaml_path, 1, *words)


def test_the_delay_cap_is_inclusive_and_documented(tmp_path: Path) -> None:
    path = scenario(tmp_path, f"steps:\n  - fault: {{delay: {MAX_SECONDS:g}}}\n  - fault: {{stall: 0}}\n")
    assert [e.fault for e in open_cassette(path).events] == [{"delay": MAX_SECONDS}, {"stall": 0}]
    docs = (Path(__file__).parents[1] / "docs" / "scenarios.md").read_text()
    assert f"{MAX_SECONDS:g} s" in docs


def test_a_big_cassette_checks_its_values_as_it_plays(tmp_path: Path) -> None:
    # Indexed (lazy) loading checks a line by the same rules when the play reaches it.
    path = tmp_path / "big.jsonl"
    path.write_text(HEADER + json.dumps({"i": 1, "from": "server", "t": 0, "fault": {"delay": 1e300}}) + "\n")
    events = load_cassette(path, lazy_from=0).events
    with pytest.raises(CassetteError, match=r"big.jsonl:2: fault delay takes"):
        events[0]


# -- death by a signal ---------------------------------------------------------------------------

KILLED = """
    steps:
      - expect: initialize
        reply: {}
      - exit: %s
    """
INITIALIZE = b'{"id":1,"method":"initialize"}\n'




@pytest.mark.parametrize("name", ["SIGKILL", "SIGTERM", "SIGSEGV"])
def test_a_scenario_that_dies_of_a_signal_replays_as_that_death(tmp_path: Path, server: ForkServer,
                                                                name: str) -> None:
    path = scenario(tmp_path, KILLED % name)
    command = FakeCodexCommand(path, timeout=WAIT, report=tmp_path / "report.json")
    warm = launcher_argv(command.fake_args(), server)
    assert warm is not None
    for argv in (command.cold_argv(), warm):
        proc = subprocess.run(argv, input=INITIALIZE, capture_output=True, timeout=WAIT * 2, env=command.env(),
                              cwd=tmp_path)
        assert proc.returncode == -signal.Signals[name], (argv, proc.returncode, proc.stderr)
        assert proc.stdout == b'{"id":1,"result":{}}\n' and b"Traceback" not in proc.stderr
        report = json.loads((tmp_path / "report.json").read_text())
        assert (report["status"], report["exit_code"]) == ("ok", name)
    assert not list(tmp_path.glob("core*"))  # a replayed crash leaves no core file


def test_a_recorded_death_by_signal_replays_from_a_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(HEADER + '{"i": 1, "from": "server", "t": 0, "fault": {"exit": "SIGKILL"}}\n')
    command = FakeCodexCommand(path, timeout=WAIT)
    proc = subprocess.run(command.cold_argv(), input=b"", capture_output=True, timeout=WAIT * 2, env=command.env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_an_ssh_recording_whose_connection_was_lost_replays_as_ssh_exits(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(HEADER + '{"i": 1, "from": "server", "t": 0, "exit": "connection lost"}\n')
    command = FakeCodexCommand(path, timeout=WAIT)
    proc = subprocess.run(command.cold_argv(), input=b"", capture_output=True, timeout=WAIT * 2, env=command.env())
    assert proc.returncode == 255, proc.stderr  # as ssh(1) and the recorder exited (docs/ssh.md)
    path.write_text(HEADER + '{"i": 1, "from": "server", "t": 0, "fault": {"exit": "connection lost"}}\n')
    refused(path, 2, "fault exit")  # a scenario's crash is a code or a signal


def test_an_in_process_fake_that_dies_of_a_signal_reads_as_killed(tmp_path: Path) -> None:
    path = scenario(tmp_path, KILLED % "SIGTERM")

    async def play() -> int | None:
        fake = InProcessCodex(path, ReplayOptions(timeout=WAIT))
        fake.stdin.write(INITIALIZE)
        await fake.wait(WAIT)
        return fake.returncode

    assert asyncio.run(play()) == -signal.SIGTERM


# -- the whole class: any value under any key loads as a file:line error or plays without a traceback

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=6)
ODD = st.sampled_from([-1, 256, -256, 1e300, 10 ** 20, MAX_SECONDS, "SIGKILL", "SIGSTOP", "SIG0", "SIG35",
                       "SIG99", "KILL", "no", "yes", "", "1.5"])
VALUES = ODD | JSON

# Where a value goes in a scenario: a step (or the document) with VALUE in one place.
V = object()
SCENARIO_SLOTS: dict[str, Any] = {
    "delay": [{"fault": {"delay": V}}], "stall": [{"fault": {"stall": V}}], "fault-exit": [{"fault": {"exit": V}}],
    "garbage": [{"fault": {"garbage": V}}], "partial": [{"fault": {"partial": V}}],
    "close_stdout": [{"fault": {"close_stdout": V}}], "raw": [{"raw": V}], "exit": [{"exit": V}],
    "close": [{"close": V}], "expect_close": [{"expect_close": V}], "expect": [{"expect": V}],
    "notify": [{"notify": V}], "request": [{"request": V, "no_reply": True}],
    "params": [{"expect": "x", "params": V}], "reply": [{"expect": "x", "reply": V}],
    "error": [{"expect": "x", "error": V}], "as": [{"expect": "x", "as": V}, {"reply_to": V, "result": {}}],
    "reply_to": [{"expect": "x", "as": "a"}, {"reply_to": V, "result": {}}],
    "result": [{"expect": "x", "as": "a"}, {"reply_to": "a", "result": V}],
    "expect_reply": [{"request": "r", "expect_reply": V}], "expect_error": [{"request": "r", "expect_error": V}],
    "no_reply": [{"request": "r", "no_reply": V}], "match": [{"expect": "x", "params": {}, "match": V}],
    "ignore": [{"expect": "x", "params": {}, "ignore": V}], "id": [{"expect": {"method": "x", "id": V}, "reply": {}}],
    "request-flag": [{"expect": {"method": "x", "request": V}}],
    "request-flag-answered": [{"expect": {"method": "x", "request": V}, "reply": {}}],
    "request-flag-labelled": [{"expect": {"method": "x", "request": V}, "as": "a"}, {"reply_to": "a", "result": 1}],
    "method": [{"notify": {"method": V}}], "notify-field": [{"notify": {"method": "x", "emittedAtMs": V}}],
}
TOP_SLOTS = ("name", "description", "meta", "match", "model", "client")
EVENT_SLOTS = ("i", "t", "nonl", "note", "binary", "msg", "raw", "raw_b64", "eof", "exit", "fault delay",
               "fault stall", "fault exit", "fault garbage", "fault partial", "fault close_stdout", "match", "close")


def _put(template: Any, value: Any) -> Any:
    if template is V:
        return value
    if isinstance(template, dict):
        return {k: _put(v, value) for k, v in template.items()}
    if isinstance(template, list):
        return [_put(v, value) for v in template]
    return template


def _plays_without_a_traceback(path: Path) -> None:
    """Load; a CassetteError must name file:line. Else the fake plays it through (the client
    hangs up at once), or is still at it after a moment (a valid delay): never a crash."""
    try:
        cassette = open_cassette(path)
        dump_cassette(cassette, path.with_suffix(".jsonl"))  # what a scenario compiles to loads as a cassette
        load_cassette(path.with_suffix(".jsonl"))
    except CassetteError as exc:
        assert str(exc).startswith(f"{path}:") or str(exc).startswith(f"{path.with_suffix('.jsonl')}:"), str(exc)
        assert exc.line is not None, str(exc)
        return

    async def play() -> None:
        fake = InProcessCodex(cassette, ReplayOptions(timeout=0.2, linger=0.2))
        fake.stdin.close()
        try:
            await fake.wait(0.3)
        except (TimeoutError, asyncio.TimeoutError):
            pass  # still playing (a valid delay, a stall): that is no crash
        fake.kill_if_running()
        outcome = (await asyncio.gather(fake._task, return_exceptions=True))[0]
        assert not isinstance(outcome, BaseException) or isinstance(outcome, asyncio.CancelledError), outcome

    asyncio.run(play())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(slot=st.sampled_from(sorted(SCENARIO_SLOTS) + [f"top:{k}" for k in TOP_SLOTS]), value=VALUES)
def test_any_value_in_any_scenario_key_is_an_error_or_plays(tmp_path: Path, slot: str, value: Any) -> None:
    if slot.startswith("top:"):
        doc = {slot[4:]: value, "steps": [{"expect": "x"}]}
    else:
        doc = {"steps": _put(SCENARIO_SLOTS[slot], value)}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    _plays_without_a_traceback(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(slot=st.sampled_from(EVENT_SLOTS), value=VALUES)
def test_any_value_in_any_cassette_field_is_an_error_or_plays(tmp_path: Path, slot: str, value: Any) -> None:
    event: dict[str, Any] = {"i": 1, "from": "server", "t": 0}
    if slot.startswith("fault "):
        event["fault"] = {slot[6:]: value}
    elif slot in ("msg", "raw", "raw_b64", "eof", "exit"):
        event[slot] = value
    else:
        event.update({slot: value, "raw": "x"} if slot in ("binary",) else {slot: value, "exit": 0})
        if slot == "close":
            event = {"i": 1, "from": "server", "t": 0, "eof": True, "close": value}
    path = tmp_path / "c.jsonl"
    path.write_text(HEADER + json.dumps(event) + "\n")
    _plays_without_a_traceback(path)


@pytest.mark.parametrize("flag,value", [("--timeout", "1e300"), ("--timeout", "nan"), ("--timeout", "-1"),
                                        ("--linger", "1e300"), ("--linger", "inf"), ("--pace-scale", "inf")])
def test_a_wait_on_the_fake_command_line_is_bounded_too(tmp_path: Path, flag: str, value: str) -> None:
    path = scenario(tmp_path, KILLED % "0")
    command = FakeCodexCommand(path, extra=[flag, value])
    proc = subprocess.run(command.cold_argv(), input=INITIALIZE.decode(), capture_output=True, text=True, timeout=WAIT * 2,
                          env=command.env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"argument {flag}: takes" in proc.stderr and repr(value) in proc.stderr
    env = {**command.env(), "CODEX_CASSETTE_TIMEOUT": "1e300"}
    proc = subprocess.run(FakeCodexCommand(path).cold_argv(), input=INITIALIZE.decode(), capture_output=True, text=True,
                          timeout=WAIT * 2, env=env)
    assert proc.returncode == 2 and "argument --timeout: takes" in proc.stderr, proc.stderr
