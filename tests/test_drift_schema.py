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
    assert capsys.readouterr().out == \
        "validated 8 message(s) in 1 file(s) against schema 0.163.0: no problem\n"


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
    assert out[3:] == ["validated 8 message(s) in 1 file(s) against schema 0.163.0: 3 problem(s) in 1 file(s)"]
    assert len(out) == 4, out


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


def test_yaml_scenarios_are_validated_too(tmp_path: Path, capsys) -> None:
    """A scenario's replies are what the fake says (checked whole); its expectations may be
    partial (a method alone, or a subset of the params)."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: partial expectations, one bad reply\n"
        "steps:\n"
        "  - expect: initialize\n"
        "    reply: {userAgent: x, codexHome: /h, platformFamily: unix, platformOs: linux}\n"
        "  - expect: initialized\n"
        "  - expect: turn/start\n"
        "    params: {threadId: t}\n"
        "    match: subset\n"
        "    reply: {turn: {id: u, items: [], status: inProgress, error: null}}\n"
        "  - expect: account/read\n"
        "    reply: {account: 7, requiresOpenaiAuth: true}\n")
    (tmp_path / "live.yaml").write_text("name: a live scenario, not a replay one\nclient: []\n")
    assert run_cli(["validate", str(tmp_path), "--schema", str(COMMITTED)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{scenario}:10: $.result.account: 7 is not"), out
    assert out[-1] == "validated 7 message(s) in 1 file(s) against schema 0.163.0: 1 problem(s) in 1 file(s)"
    assert len(out) == 2, out


def test_validate_refuses_zero_inputs_and_missing_paths(tmp_path: Path, capsys) -> None:
    from harness.cli import main
    (tmp_path / "empty").mkdir()
    assert main(["validate", str(tmp_path / "empty"), "--schema", str(COMMITTED)]) == 2
    assert "nothing to validate" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "nope.jsonl"), "--schema", str(COMMITTED)]) == 2
    assert "nope.jsonl: no such file or directory" in capsys.readouterr().err


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
