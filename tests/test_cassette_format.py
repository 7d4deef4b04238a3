"""Cassette format v1: every kind of bad file gets one readable file:line error,
and the writer leaves a loadable cassette behind at every moment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.format.writer import CassetteWriter, dump_cassette

from harness.format.cassette import Event, load_cassette

from harness.format.load import open_cassette
from harness.errors import CassetteError, HarnessError

HEADER = '{"codex_cassette": 1, "meta": {"complete": true}}'
GOOD_EVENT = '{"i": 1, "from": "client", "t": 0.0, "msg": {"id": 1, "method": "initialize"}}'


def write(tmp_path: Path, *lines: str, name: str = "c.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def load_error(path: Path) -> CassetteError:
    with pytest.raises(CassetteError) as info:
        load_cassette(path)
    err = info.value
    assert isinstance(err, HarnessError)
    text = str(err)
    assert "\n" not in err.headline, "an error is one paragraph"
    assert text == err.headline + (f"\n{err.excerpt}" if err.excerpt else "")  # a broken line shown under it
    assert "Traceback" not in text
    return err


BAD_CASES = [
    # (id, lines, line of the error, words the message must carry)
    ("bad-json", [HEADER, GOOD_EVENT, '{"i": 2, "from": "server", "msg": {'], 3, "not valid json"),
    ("bad-json-header", ["{codex_cassette: 1}"], 1, "not valid json"),
    ("missing-header", [GOOD_EVENT], 1, "header"),
    ("header-not-object", ['[1, 2]'], 1, "header"),
    ("wrong-version", ['{"codex_cassette": 2, "meta": {}}'], 1, "version 2"),
    ("unknown-version", ['{"codex_cassette": "v1", "meta": {}}'], 1, "version 'v1'"),
    ("meta-not-object", ['{"codex_cassette": 1, "meta": [1]}'], 1, "meta must be an object"),
    ("unknown-from", [HEADER, '{"i": 1, "from": "proxy", "t": 0, "msg": {"method": "x"}}'], 2, "'proxy'"),
    ("missing-from", [HEADER, '{"i": 1, "t": 0, "msg": {"method": "x"}}'], 2, "unknown sender"),
    ("no-payload", [HEADER, '{"i": 1, "from": "client", "t": 0}'], 2, "has none"),
    ("two-payloads", [HEADER, '{"i": 1, "from": "client", "t": 0, "msg": {"method": "x"}, "eof": true}'],
     2, "msg and eof"),
    ("unknown-fault", [HEADER, '{"i": 1, "from": "server", "t": 0, "fault": {"explode": 1}}'], 2, "explode"),
    ("fault-not-object", [HEADER, '{"i": 1, "from": "server", "t": 0, "fault": "delay"}'], 2, "'fault' must"),
    ("bad-raw-b64", [HEADER, '{"i": 1, "from": "server", "t": 0, "raw_b64": "***not base64***"}'], 2,
     "raw_b64"),
    ("event-not-object", [HEADER, GOOD_EVENT, '"just a string"'], 3, "json object"),
    ("msg-not-object", [HEADER, '{"i": 1, "from": "client", "t": 0, "msg": [1]}'], 2, "'msg' takes a JSON-RPC message object, not [1]"),
    ("bad-eof", [HEADER, '{"i": 1, "from": "client", "t": 0, "eof": false}'], 2, "'eof' takes true, not False"),
    ("bad-exit", [HEADER, '{"i": 1, "from": "server", "t": 0, "exit": true}'], 2,
     "'exit' takes an exit code 0-255, the name of a signal"),
    ("bad-t", [HEADER, '{"i": 1, "from": "server", "t": "soon", "exit": 0}'], 2, "'t' takes a number of seconds (0 or more), not 'soon'"),
    ("unknown-field", [HEADER, '{"i": 1, "from": "server", "t": 0, "exit": 0, "colour": "red"}'], 2, "colour"),
]


@pytest.mark.parametrize("lines,line,words", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_cassette_names_file_and_line(tmp_path: Path, lines: list[str], line: int, words: str) -> None:
    path = write(tmp_path, *lines)
    err = load_error(path)
    assert err.line == line
    assert str(err).startswith(f"{path}:{line}: ")
    assert words.lower() in str(err).lower()


def test_torn_line_in_a_complete_cassette_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    path.write_text(HEADER + "\n" + GOOD_EVENT + "\n" + '{"i": 2, "from": "ser', encoding="utf-8")
    err = load_error(path)
    assert err.line == 3


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    err = load_error(path)
    assert err.line is None
    assert str(err).startswith(f"{path}: ")
    assert "empty" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    err = load_error(path)
    assert str(err).startswith(f"{path}: cannot read the cassette")


def test_unreadable_file(tmp_path: Path) -> None:
    # A directory cannot be read as a file even by root (chmod 000 would not stop root).
    path = tmp_path / "a_directory.jsonl"
    path.mkdir()
    err = load_error(path)
    assert "cannot read the cassette" in str(err)
    assert "directory" in str(err).lower()


def test_open_cassette_dispatches_on_suffix(tmp_path: Path) -> None:
    jsonl = write(tmp_path, HEADER, GOOD_EVENT)
    assert open_cassette(jsonl).events[0].msg["method"] == "initialize"
    yaml_path = tmp_path / "s.yaml"
    yaml_path.write_text("steps:\n  - expect: initialize\n    reply: {}\n")
    cassette = open_cassette(yaml_path)
    assert [e.side for e in cassette.events] == ["client", "server"]
    assert cassette.meta["source"] == "scenario"


def test_good_cassette_loads_every_event_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"codex_cassette": 1, "meta": {"complete": true, "codex_version": "0.163.0"}}',
        GOOD_EVENT,
        '{"i": 2, "from": "server", "t": 0.131, "msg": {"id": 1, "result": {}}}',
        '{"i": 3, "from": "server", "t": 0.14, "raw": "a line that was not JSON"}',
        '',  # blank lines are skipped
        '{"i": 4, "from": "server", "t": 0.2, "fault": {"delay": 0.5}}',
        '{"i": 5, "from": "client", "t": 2.5, "eof": true}',
        '{"i": 6, "from": "server", "t": 2.6, "exit": "SIGKILL", "nonl": true}',
    )
    c = load_cassette(path)
    assert c.complete and c.meta["codex_version"] == "0.163.0"
    assert [e.kind for e in c.events] == ["msg", "msg", "raw", "fault", "eof", "exit"]
    assert [e.line for e in c.events] == [2, 3, 4, 6, 7, 8]
    assert c.events[2].raw == b"a line that was not JSON"
    assert c.events[5].exit == "SIGKILL" and c.events[5].newline is False
    assert c.where(c.events[1]) == f"{path}:3"


def test_torn_last_line_of_an_incomplete_cassette_loads(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text('{"codex_cassette": 1, "meta": {"complete": false}}\n' + GOOD_EVENT + "\n"
                    + '{"i": 2, "from": "server", "t": 0.1, "msg": {"id": 1, "res', encoding="utf-8")
    c = load_cassette(path)
    assert not c.complete
    assert len(c.events) == 1
    # ...but a bad line in the middle of an incomplete cassette is still an error.
    path.write_text('{"codex_cassette": 1, "meta": {"complete": false}}\n{broken\n' + GOOD_EVENT + "\n")
    assert load_error(path).line == 2


# -- the writer ------------------------------------------------------------------


def test_writer_partial_is_loadable_mid_recording_and_finish_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "rec.jsonl"
    ticks = iter([100.0, 100.5, 101.25])
    writer = CassetteWriter(target, {"codex_version": "0.163.0"}, clock=lambda: next(ticks))
    assert writer.partial == tmp_path / "sub" / "rec.jsonl.partial"
    assert not target.exists()
    writer.record("client", msg={"id": 1, "method": "initialize"})
    writer.record("server", msg={"id": 1, "result": {}})

    # While the writer is still open: the partial file is a complete:false cassette.
    mid = load_cassette(writer.partial)
    assert mid.meta["complete"] is False
    assert mid.meta["codex_version"] == "0.163.0"
    assert [e.msg for e in mid.events] == [{"id": 1, "method": "initialize"}, {"id": 1, "result": {}}]
    assert [e.t for e in mid.events] == [0.0, 0.5]
    assert not target.exists()

    # Append-only: what was on disk stays a prefix of what comes later.
    before = writer.partial.read_bytes()
    writer.record("client", eof=True)
    assert writer.partial.read_bytes().startswith(before)
    assert writer.count == 3

    out = writer.finish(exit_code=0)
    assert out == target
    assert not writer.partial.exists()
    assert not target.with_name("rec.jsonl.tmp").exists()
    done = load_cassette(target)
    assert done.complete is True and done.meta["exit_code"] == 0
    assert [e.index for e in done.events] == [1, 2, 3]
    assert done.events[2].eof and done.events[2].t == 1.25
    header = json.loads(target.read_text().splitlines()[0])
    assert header["codex_cassette"] == 1
    assert writer.finish() == target  # idempotent
    with pytest.raises(RuntimeError):
        writer.write(Event("client", eof=True))


def test_writer_finish_can_say_incomplete(tmp_path: Path) -> None:
    writer = CassetteWriter(tmp_path / "x.jsonl")
    writer.record("server", exit="SIGKILL")
    path = writer.finish(complete=False)
    c = load_cassette(path)
    assert c.complete is False and c.events[0].exit == "SIGKILL"


def test_raw_bytes_round_trip(tmp_path: Path) -> None:
    binary = b"\xff\xfe not utf-8 \x80"
    text = "plain non-JSON line, caf\u00e9"
    writer = CassetteWriter(tmp_path / "raw.jsonl")
    writer.record("server", raw=binary)
    writer.record("server", raw=text.encode("utf-8"))
    writer.record("server", raw=b"partial tail", newline=False)
    path = writer.finish()
    lines = [json.loads(s) for s in path.read_text(encoding="utf-8").splitlines()[1:]]
    assert "raw_b64" in lines[0] and "raw" not in lines[0]
    assert lines[1]["raw"] == text
    assert lines[2]["nonl"] is True and "nonl" not in lines[1]
    c = load_cassette(path)
    assert c.events[0].raw == binary
    assert c.events[1].raw == text.encode("utf-8")
    assert c.events[2].raw == b"partial tail" and c.events[2].newline is False
    assert c.events[0].newline is True


def test_cassette_dump_round_trips(tmp_path: Path) -> None:
    src = write(tmp_path, HEADER, GOOD_EVENT, '{"i": 2, "from": "server", "t": 0.1, "fault": {"stall": 2}}',
                '{"i": 3, "from": "client", "t": 0.2, "msg": {"method": "x"}, "match": {"mode": "method"}}')
    c = load_cassette(src)
    out = dump_cassette(c, tmp_path / "copy.jsonl")
    again = load_cassette(out)
    assert [e.to_json() for e in again.events] == [e.to_json() for e in c.events]
    assert again.events[2].match == {"mode": "method"}


def test_event_describe() -> None:
    assert Event("client", msg={"id": 3, "method": "turn/start"}).describe() == "client turn/start (id 3)"
    assert Event("server", msg={"id": "a", "error": {}}).describe() == "server error response (id 'a')"
    assert Event("client", eof=True).describe() == "client closes its stream"
    assert Event("server", exit=2).describe() == "server exits with 2"
