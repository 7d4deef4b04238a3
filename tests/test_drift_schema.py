"""Drift checks: schema snapshots of the real binary, diffs, validation, coverage."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.live import make_codex_home

from harness.drift import cli as drift_cli
from harness.format.writer import CassetteWriter
from harness.drift.schema_diff import diff_snapshots
from harness.drift.validate import validate_paths
from harness.format.cassette import load_cassette
from harness.drift.snapshot import (BUNDLE, INDEX, SchemaError, dumps, load_snapshot,
                                     normalise, snapshot)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "cassettes" / "schema" / "0.163.0"
OLDER = ROOT / "cassettes" / "schema" / "0.144.4"


def run_cli(argv: list[str]) -> int:
    """The drift commands through their real argparse wiring."""
    parser = argparse.ArgumentParser(prog="codex-cassette")
    drift_cli.cli_register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def codex_bin() -> str:
    import codex_cli_bin
    return str(codex_cli_bin.bundled_codex_path())


# ---------------------------------------------------------------- snapshots

def test_snapshot_of_installed_codex_matches_committed(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    res = snapshot(codex_bin(), out, timeout=60)
    assert res.version == "0.163.0", "the pinned codex changed: snapshot it under its version"
    regen = (f"{shlex.quote(sys.executable)} -m harness drift schema-snapshot "
             f"--codex-bin {shlex.quote(codex_bin())} -o cassettes/schema/0.163.0")
    fresh = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    kept = {p.relative_to(COMMITTED): p.read_bytes() for p in COMMITTED.rglob("*") if p.is_file()}
    missing = sorted(map(str, set(fresh) - set(kept)))
    extra = sorted(map(str, set(kept) - set(fresh)))
    changed = sorted(str(k) for k in set(fresh) & set(kept) if fresh[k] != kept[k])
    assert not (missing or extra or changed), (
        f"cassettes/schema/0.163.0 is stale (not in it: {missing[:5]}, only in it: {extra[:5]}, "
        f"differing: {changed[:5]}). Regenerate it with:\n  {regen}")
    assert res.methods == {"client_requests": 105, "client_notifications": 1,
                           "server_requests": 10, "server_notifications": 85}


def test_snapshot_writes_index_and_normalised_files() -> None:
    index = json.loads((COMMITTED / INDEX).read_text())
    assert index["codex_version"] == "0.163.0"
    start = index["client_requests"]["thread/start"]
    assert start["params_type"] == "ThreadStartParams"
    assert start["response"] == {"$ref": "#/definitions/v2/ThreadStartResponse"}
    # pairs the schema does not name FooParams/FooResponse are guessed, and say so
    assert index["client_requests"]["config/value/write"]["response_type"] == "ConfigWriteResponse"
    assert index["client_requests"]["config/value/write"]["response_match"] == "guess"
    assert "item/commandExecution/requestApproval" in index["server_requests"]
    assert list(index["client_notifications"]) == ["initialized"]
    for path in (COMMITTED / "v2" / "ThreadStartParams.json", COMMITTED / BUNDLE):
        text = path.read_text()
        assert text == dumps(json.loads(text)), f"{path} is not in normal form"


def test_normalise_sorts_set_keywords_but_not_data() -> None:
    node = {"required": ["b", "a"], "enum": ["z", "y"], "type": ["null", "string"],
            "default": ["b", "a"], "oneOf": [{"enum": ["2", "1"]}, {"type": "integer"}],
            "properties": {"required": {"type": "string"}}}
    out = normalise(node)
    assert out["required"] == ["a", "b"] and out["enum"] == ["y", "z"]
    assert out["type"] == ["null", "string"]
    assert out["default"] == ["b", "a"]          # instance data keeps its order
    assert out["oneOf"][0]["enum"] == ["1", "2"]  # order of alternatives is kept
    assert out["properties"] == {"required": {"type": "string"}}


def test_snapshot_fails_readably_on_a_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as exc:
        snapshot(str(tmp_path / "no-codex"), tmp_path / "o")
    assert "no such file" in str(exc.value)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- diff

def _union(methods: dict[str, str | None], with_id: bool) -> dict[str, Any]:
    variants = []
    for m, ptype in methods.items():
        props: dict[str, Any] = {"method": {"enum": [m], "type": "string"}}
        req = ["method"]
        if with_id:
            props["id"] = {"type": "integer"}
            req.append("id")
        if ptype:
            props["params"] = {"$ref": f"#/definitions/{ptype}"}
            req.append("params")
        variants.append({"properties": props, "required": req, "type": "object"})
    return {"oneOf": variants}


def make_snapshot(path: Path, types: dict[str, Any], *, client_requests: dict[str, str | None],
                  server_notifications: dict[str, str | None] | None = None,
                  server_requests: dict[str, str | None] | None = None) -> Path:
    defs = dict(types)
    defs["ClientRequest"] = _union(client_requests, True)
    defs["ClientNotification"] = _union({"initialized": None}, False)
    defs["ServerRequest"] = _union(server_requests or {}, True)
    defs["ServerNotification"] = _union(server_notifications or {}, False)
    path.mkdir(parents=True)
    (path / BUNDLE).write_text(dumps({"definitions": defs}))
    return path


def obj(props: dict[str, Any], required: list[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


STR = {"type": "string"}
OPT_STR = {"type": ["string", "null"]}


def base_types() -> dict[str, Any]:
    return {
        "GoParams": obj({"name": STR, "mode": {"$ref": "#/definitions/Mode"}}, ["name"]),
        "GoResponse": obj({"id": STR, "count": {"type": "integer"}}, ["id", "count"]),
        "Mode": {"enum": ["fast", "slow"], "type": "string"},
        "DoneNotification": obj({"status": {"$ref": "#/definitions/Status"}, "note": STR},
                                ["status", "note"]),
        "Status": {"enum": ["ok", "failed"], "type": "string"},
        "AskParams": obj({"question": STR}, ["question"]),
        "AskResponse": obj({"answer": STR}, ["answer"]),
    }


def two_snapshots(tmp_path: Path, new_types: dict[str, Any], **new_methods: Any) -> tuple[Path, Path]:
    old = make_snapshot(tmp_path / "old", base_types(),
                        client_requests={"go": "GoParams", "stop": None},
                        server_notifications={"done": "DoneNotification"},
                        server_requests={"ask": "AskParams"})
    methods = {"client_requests": {"go": "GoParams", "stop": None},
               "server_notifications": {"done": "DoneNotification"},
               "server_requests": {"ask": "AskParams"}}
    methods.update(new_methods)
    new = make_snapshot(tmp_path / "new", new_types, **methods)
    return old, new


def changes(old: Path, new: Path) -> dict[tuple[str, str], str]:
    d = diff_snapshots(load_snapshot(old), load_snapshot(new))
    return {(c.kind, c.where): c.severity for c in d.changes}


def test_identical_snapshots_have_no_change_and_exit_0(tmp_path: Path, capsys) -> None:
    old, new = two_snapshots(tmp_path, base_types())
    assert changes(old, new) == {}
    assert run_cli(["drift", "schema", str(old), str(new)]) == 0
    assert "0 breaking, 0 risky, 0 additive" in capsys.readouterr().out


def test_method_changes_by_direction(tmp_path: Path) -> None:
    old, new = two_snapshots(
        tmp_path, {**base_types(), "PingNotification": obj({})},
        client_requests={"go": "GoParams", "fly": None},                 # stop removed, fly added
        server_notifications={"done": "DoneNotification", "ping": "PingNotification"},
        server_requests={"ask": "AskParams", "confirm": None})           # new server request
    got = changes(old, new)
    assert got[("method-removed", "stop")] == "breaking"
    assert got[("method-added", "fly")] == "additive"
    assert got[("method-added", "ping")] == "additive"
    assert got[("method-added", "confirm")] == "risky"  # a client must answer it


def test_field_changes_depend_on_who_sends_the_type(tmp_path: Path) -> None:
    t = base_types()
    # client-sent params: a new required field breaks, a new optional one does not
    t["GoParams"] = obj({"name": STR, "mode": {"$ref": "#/definitions/Mode"}, "cwd": STR,
                         "tag": OPT_STR}, ["name", "cwd", "mode"])
    # server-sent result: a new required field is fine, required -> optional is not
    t["GoResponse"] = obj({"id": STR, "count": {"type": "integer"}, "extra": STR},
                          ["id", "extra"])
    # server-sent notification: a field removed, a field renamed (same type)
    t["DoneNotification"] = obj({"status": {"$ref": "#/definitions/Status"}, "remark": STR},
                                ["status", "remark"])
    got = changes(*two_snapshots(tmp_path, t))
    assert got[("field-added-required", "GoParams.cwd")] == "breaking"
    assert got[("field-added-optional", "GoParams.tag")] == "additive"
    assert got[("became-required", "GoParams.mode")] == "breaking"
    assert got[("field-added-required", "GoResponse.extra")] == "additive"
    assert got[("became-optional", "GoResponse.count")] == "breaking"
    assert got[("field-renamed", "DoneNotification.note")] == "breaking"
    assert ("field-removed", "DoneNotification.note") not in got


def test_enum_and_type_changes(tmp_path: Path) -> None:
    t = base_types()
    t["Mode"] = {"enum": ["fast"], "type": "string"}                        # client sends: removal breaks
    t["Status"] = {"enum": ["ok", "failed", "paused"], "type": "string"}    # server sends: risky
    t["AskParams"] = obj({"question": {"type": "integer"}}, ["question"])   # type change
    t["AskResponse"] = obj({"answer": STR, "why": STR}, ["answer"])
    got = changes(*two_snapshots(tmp_path, t))
    assert got[("enum-value-removed", "Mode")] == "breaking"
    assert got[("enum-value-added", "Status")] == "risky"
    assert got[("type-changed", "AskParams.question")] == "breaking"
    assert got[("field-added-optional", "AskResponse.why")] == "additive"


def test_nullability_and_removed_field(tmp_path: Path) -> None:
    t = base_types()
    t["DoneNotification"] = obj({"status": {"anyOf": [{"$ref": "#/definitions/Status"},
                                                      {"type": "null"}]}}, ["status"])
    got = changes(*two_snapshots(tmp_path, t))
    assert got[("became-nullable", "DoneNotification.status")] == "breaking"
    assert got[("field-removed", "DoneNotification.note")] == "breaking"


def test_exit_codes_and_formats(tmp_path: Path, capsys) -> None:
    t = base_types()
    t["Status"] = {"enum": ["ok", "failed", "paused"], "type": "string"}  # risky only
    old, new = two_snapshots(tmp_path, t)
    assert run_cli(["drift", "schema", str(old), str(new)]) == 0
    assert run_cli(["drift", "schema", str(old), str(new), "--fail-on", "risky"]) == 1
    capsys.readouterr()
    assert run_cli(["drift", "schema", str(old), str(new), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == {"breaking": 0, "risky": 1, "additive": 0}
    # a value removed from an enum the client sends is breaking: exit 1
    t2 = base_types()
    t2["Mode"] = {"enum": ["fast"], "type": "string"}
    old2, new2 = two_snapshots(tmp_path / "b", t2)
    assert run_cli(["drift", "schema", str(old2), str(new2), "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert md.startswith("## Codex app-server schema:")
    assert "| breaking | 1 |" in md and "`Mode`" in md


def test_real_versions_diff_names_known_changes() -> None:
    d = diff_snapshots(load_snapshot(OLDER), load_snapshot(COMMITTED))
    got = {(c.kind, c.where): c.severity for c in d.changes}
    assert got[("method-removed", "thread/rollback")] == "breaking"
    assert got[("enum-value-removed", "ReviewDecision")] == "breaking"
    assert got[("method-added", "thread/revert")] == "additive"          # client request
    assert got[("method-added", "thread/reverted")] == "additive"        # server notification
    assert got[("variant-added", "UserInput")] == "risky"                # new input kinds
    # an alias swap (AbsolutePathBuf -> LegacyAppPathString, both strings) is no change
    assert not any(k == "type-changed" and "LegacyAppPathString" in w for (k, w) in got)
    assert d.breaking


# ---------------------------------------------------------------- validate

def write_cassette(path: Path, events: list[dict[str, Any]]) -> Path:
    lines = [{"codex_cassette": 1, "meta": {"codex_version": "0.163.0", "complete": True}}]
    for i, e in enumerate(events, start=1):
        lines.append({"i": i, "t": i / 10, **e})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def C(msg: dict[str, Any]) -> dict[str, Any]:
    return {"from": "client", "msg": msg}


def S(msg: dict[str, Any]) -> dict[str, Any]:
    return {"from": "server", "msg": msg}


SESSION = [
    C({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "1"}}}),
    S({"id": 1, "result": {"userAgent": "x", "codexHome": "{{codex_home}}",
                           "platformFamily": "unix", "platformOs": "linux"}}),
    C({"method": "initialized"}),
    C({"id": 2, "method": "thread/start", "params": {"cwd": "{{cwd}}", "sandbox": "read-only"}}),
    S({"method": "configWarning", "params": {"summary": "w"}, "emittedAtMs": 1700000000000}),
    S({"id": 0, "method": "item/fileChange/requestApproval",
       "params": {"threadId": "t", "turnId": "u", "itemId": "i", "startedAtMs": 1}}),
    C({"id": 0, "result": {"decision": "accept"}}),
    S({"id": 2, "error": {"code": -32600, "message": "nope"}}),
    {"from": "client", "eof": True},
]


def test_valid_session_has_no_problem(tmp_path: Path, capsys) -> None:
    path = write_cassette(tmp_path / "ok.jsonl", SESSION)
    assert run_cli(["validate", str(path), "--schema", str(COMMITTED)]) == 0
    assert capsys.readouterr().out == ""


def test_invalid_messages_are_located_by_line_and_json_path(tmp_path: Path, capsys) -> None:
    events = list(SESSION)
    # line 5 (event 4): an input item with a wrong field, one of an unknown type
    events[3] = C({"id": 2, "method": "turn/start",
                   "params": {"threadId": "t", "input": [{"type": "text", "text": "hi"},
                                                         {"type": "text", "text": 5},
                                                         {"type": "bogus"}]}})
    # line 8 (event 7): the client's reply to a server request, with a bad decision
    events[6] = C({"id": 0, "result": {"decision": "maybe"}})
    path = write_cassette(tmp_path / "bad.jsonl", events)
    assert run_cli(["validate", str(tmp_path), "--schema", str(COMMITTED)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{path}:5: $.params.input[1].text: 5 is not of type 'string'" in out
    assert any(line.startswith(f"{path}:5: $.params.input[2].type: 'bogus' is not one of "
                               "['text', 'image'") for line in out), out
    assert f"{path}:8: $.result.decision: 'maybe' is not one of ['accept', 'acceptForSession', " \
        "'decline', 'cancel'] (result of item/fileChange/requestApproval)" in out
    assert len(out) == 3, out


def test_responses_are_checked_against_the_request_they_answer(tmp_path: Path, capsys) -> None:
    events = [
        C({"id": "a", "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "1"}}}),
        S({"id": "a", "result": {"userAgent": 7}}),   # wrong: initialize's result
        S({"id": 99, "result": {}}),                  # answers nothing
        S({"method": "no/such/notification", "params": {}}),
    ]
    path = write_cassette(tmp_path / "r.jsonl", events)
    assert run_cli(["validate", str(path), "--schema", str(COMMITTED)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:3: $.result" in out and "(result of initialize)" in out
    assert f"{path}:4: $.id: a response to id 99" in out
    assert f"{path}:5: $.method: 'no/such/notification' is not a server notification" in out


# ---------------------------------------------------------------- coverage

def test_coverage_lists_exercised_and_missing_methods(tmp_path: Path, capsys) -> None:
    write_cassette(tmp_path / "ok.jsonl", SESSION)
    assert run_cli(["drift", "coverage", str(tmp_path), "--schema", str(COMMITTED),
                    "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cassettes"] == 1
    assert set(data["client_requests"]["exercised"]) == {"initialize", "thread/start"}
    assert "turn/start" in data["client_requests"]["never"]
    assert data["client_notifications"]["exercised"] == {"initialized": 1}
    assert data["server_requests"]["exercised"] == {"item/fileChange/requestApproval": 1}
    assert data["server_notifications"]["exercised"] == {"configWarning": 1}
    assert len(data["server_notifications"]["never"]) == 84
    run_cli(["drift", "coverage", str(tmp_path), "--schema", str(COMMITTED)])
    assert "client requests: 2/105 exercised" in capsys.readouterr().out


# ---------------------------------------------------------------- live

@pytest.mark.live
@pytest.mark.asyncio
async def test_real_codex_session_validates_against_its_snapshot(tmp_path: Path) -> None:
    """Everything the real codex says (no model turn needed) fits the committed schema."""
    # Offline config pointing at a closed loopback port: no turn runs, nothing leaves the machine.
    env = make_codex_home("http://127.0.0.1:9/v1", tmp_path / "codex-root", approval_policy="never").env
    proc = await asyncio.create_subprocess_exec(
        codex_bin(), "app-server", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=tmp_path)
    writer = CassetteWriter(tmp_path / "live.jsonl", {"codex_version": "0.163.0"})
    requests = [
        {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "drift", "version": "0"}}},
        {"method": "initialized"},
        {"id": 2, "method": "account/read", "params": {"refreshToken": False}},
        {"id": 3, "method": "model/list", "params": {}},
        {"id": 4, "method": "thread/start", "params": {"cwd": str(tmp_path), "sandbox": "read-only",
                                                       "approvalPolicy": "never"}},
    ]
    try:
        answered: dict[int, Any] = {}
        for req in requests:
            writer.record("client", msg=req)
            proc.stdin.write((json.dumps(req) + "\n").encode())
            await proc.stdin.drain()
            while "id" in req and req["id"] not in answered:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
                assert line, "codex closed its stdout"
                msg = json.loads(line)
                writer.record("server", msg=msg)
                if "id" in msg and "method" not in msg:
                    answered[msg["id"]] = msg
        assert answered[4]["result"]["modelProvider"] == "mock"
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
    path = writer.finish()
    assert len(list(load_cassette(path).messages("server"))) >= 4
    problems = validate_paths([path], load_snapshot(COMMITTED))
    assert problems == [], "\n".join(map(str, problems))


def test_unclassified_constraint_change_is_risky_and_described(tmp_path: Path) -> None:
    t = base_types()
    t["GoResponse"] = obj({"id": STR, "count": {"type": "integer", "minimum": 0}},
                          ["id", "count"])
    old, new = two_snapshots(tmp_path, t)
    d = diff_snapshots(load_snapshot(old), load_snapshot(new))
    [c] = d.changes
    assert (c.severity, c.kind, c.where) == ("risky", "other", "GoResponse.count")
    assert "minimum" in c.detail
