"""`drift rerecord`: re-record live cassettes against the real codex and compare.

The `live` tests are the CI drift check (issue 5.6): every live cassette under
cassettes/ is played again (its client side, by the replay engine) against the
pinned codex and must come out the same. A cassette recorded here first makes
sure the check never runs on nothing. The tamper tests show it catches drift.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.format.cassette import Cassette, Event, load_cassette
from harness.replay.aio_channels import ProcessChannel, memory_pair
from harness.cli import main as cli_main
from harness.live.record_live import record_live
from harness.replay.engine import ReplayEngine
from harness.replay.options import ReplayOptions
from harness.drift.compare import Change, FieldChange, compare_cassettes
from harness.drift.rerecord import check_all, check_cassette, check_session, find_sessions
from harness.drift.rerecord_report import DriftResult, Invocation, render_markdown, render_text
from harness.drift.snapshot import load_snapshot
from harness.drift.validate import validate_paths

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
SCHEMAS = CASSETTES / "schema"
SHIPPED_SESSIONS = find_sessions([CASSETTES]) if CASSETTES.is_dir() else []
# cassettes/faults/ holds fault variants (docs/faults.md): off-schema and off-script by design.
SHIPPED_ALL = sorted(p for p in CASSETTES.rglob("*.jsonl") if "faults" not in p.relative_to(CASSETTES).parts) \
    if CASSETTES.is_dir() else []

T1 = "01a20ab8-6b47-7f21-a946-9a0a60c0030b"
T2 = "11111111-2222-7333-8444-555555555555"
U1 = "01a20ab8-6b65-7831-b468-dda1f2ac840b"
U2 = "99999999-8888-7777-8666-555555555555"


def cassette(*events: tuple[str, dict]) -> Cassette:
    evs = [Event(side=side, msg=msg, index=n, line=n + 1) for n, (side, msg) in enumerate(events, start=1)]
    evs += [Event(side="client", eof=True, index=len(evs) + 1, line=len(evs) + 2),
            Event(side="server", eof=True, index=len(evs) + 2, line=len(evs) + 3),
            Event(side="server", exit=0, index=len(evs) + 3, line=len(evs) + 4)]
    return Cassette(path=Path("x.jsonl"), meta={"complete": True}, events=evs)


def session(thread: str, turn: str, *, warn_first: bool = True, started_early: bool = True,
            status: str = "completed", wall: str = "0.0012", t: int = 1795476188) -> list[tuple[str, dict]]:
    warn = ("server", {"method": "configWarning", "params": {"summary": "no bubblewrap"}, "emittedAtMs": t})
    start_result = ("server", {"id": 2, "result": {"thread": {"id": thread, "createdAt": t}}})
    started = ("server", {"method": "thread/started", "params": {"thread": {"id": thread, "createdAt": t}}})
    head = [("client", {"id": 1, "method": "initialize", "params": {}})]
    head += [warn] if warn_first else []
    head += [("server", {"id": 1, "result": {"userAgent": f"x/{t}"}}),
             ("client", {"id": 2, "method": "thread/start", "params": {"cwd": "{{cwd}}"}}), start_result]
    head += [started] if started_early else []
    head += [] if warn_first else [warn]
    head += [("client", {"id": 3, "method": "turn/start", "params": {"threadId": thread}})]
    head += [] if started_early else [started]
    return head + [
        ("server", {"id": 3, "result": {"turn": {"id": turn, "startedAt": None}}}),
        ("server", {"method": "turn/started", "params": {"threadId": thread, "turn": {"id": turn, "startedAt": t}}}),
        ("server", {"method": "item/completed", "params": {"item": {
            "type": "commandExecution", "id": "call_1", "processId": str(t % 9999),
            "aggregatedOutput": f"Chunk ID: {t % 777:x}\nWall time: {wall} seconds\nhi\n"}}}),
        ("server", {"method": "turn/completed", "params": {"threadId": thread, "turn": {
            "id": turn, "status": status, "durationMs": t % 500}}, "emittedAtMs": t}),
    ]


# -- the structural comparison (no codex needed) --------------------------------------


def test_volatile_values_ids_and_concurrent_order_are_not_drift():
    old = cassette(*session(T1, U1))
    new_events = session(T2, U2, warn_first=False, wall="1.5", t=1795476999)
    # codex emits a run of notifications concurrently: their order inside the run does not count
    new_events[-3], new_events[-2] = new_events[-2], new_events[-3]
    assert compare_cassettes(old, cassette(*new_events)) == []


def test_a_notification_that_came_earlier_than_the_client_is_a_race_not_drift():
    changes = compare_cassettes(cassette(*session(T1, U1, started_early=False)), cassette(*session(T1, U1)))
    assert [(c.kind, c.label, c.note, c.counts) for c in changes] == [("moved", "thread/started", "earlier", False)]
    # the other way round the client had waited for it, and it came late: that counts
    changes = compare_cassettes(cassette(*session(T1, U1)), cassette(*session(T1, U1, started_early=False)))
    assert [(c.kind, c.note, c.counts) for c in changes] == [("moved", "later", True)]


def test_changed_added_and_removed_messages_are_named_with_paths():
    old_events = session(T1, U1)
    new_events = session(T2, U2, status="interrupted")
    new_events.insert(-1, ("server", {"method": "thread/status/changed", "params": {"threadId": T2}}))
    del new_events[-3]  # item/completed
    new_events[1] = ("server", {"method": "configWarning", "params": {"summary": "other", "details": None},
                                "emittedAtMs": 5})
    changes = compare_cassettes(cassette(*old_events), cassette(*new_events))
    got = {(c.kind, c.label, c.floating): [(f.path, f.kind, f.old, f.new) for f in c.fields] for c in changes}
    assert got == {
        ("changed", "turn/completed", False): [("params.turn.status", "changed", "completed", "interrupted")],
        ("added", "thread/status/changed", False): [],
        ("removed", "item/completed", False): [],
        ("changed", "configWarning", True): [("params.details", "added", None, None),
                                             ("params.summary", "changed", "no bubblewrap", "other")],
    }


def test_responses_are_labelled_by_their_request_and_exit_codes_compared():
    old, new = cassette(*session(T1, U1)), cassette(*session(T1, U1))
    new.events[2].msg = {"id": 1, "error": {"code": -32600, "message": "nope"}}
    new.events[-1].exit = 1
    labels = {(c.kind, c.label) for c in compare_cassettes(old, new)}
    assert labels == {("removed", "result of initialize"), ("added", "error for initialize"), ("changed", "exit")}


def _catalogue(*ids: str, upgrade: str = "gpt-6") -> dict:
    return {"id": 3, "result": {"data": [{"id": i, "model": i, "upgrade": upgrade if i == "gpt-5" else None,
                                          "efforts": [{"effort": "low"}, {"effort": "high"}]} for i in ids]}}


def _with_catalogue(msg: dict, version: str = "0.163.0") -> Cassette:
    events = session(T1, U1)
    events.insert(3, ("client", {"id": 3, "method": "model/list", "params": {}}))
    events.insert(4, ("server", msg))
    events[6] = ("server", {"id": 2, "result": {"thread": {"id": T1, "createdAt": 1, "cliVersion": version}}})  # thread/start
    return cassette(*events)


def test_arrays_of_named_objects_are_lined_up_by_name_and_the_cli_version_is_volatile():
    old = _with_catalogue(_catalogue("gpt-5", "gpt-4"))
    new = _with_catalogue(_catalogue("gpt-6", "gpt-5", "gpt-4", upgrade="gpt-7"), version="0.169.0")
    [change] = compare_cassettes(old, new)
    assert (change.kind, change.label) == ("changed", "result of model/list")
    assert [(f.path, f.kind, f.new) for f in change.fields] == [
        ("result.data[id=gpt-5].upgrade", "changed", "gpt-7"),
        ("result.data[id=gpt-6]", "added", {"id": "gpt-6", "model": "gpt-6", "upgrade": None,
                                             "efforts": [{"effort": "low"}, {"effort": "high"}]}),
    ]  # not gpt-5 -> gpt-6 at [0] and gpt-4 -> gpt-5 at [1]; cliVersion 0.163.0 -> 0.169.0 is no drift
    # the entries both sides have, in another order: one change for the array
    [change] = compare_cassettes(old, _with_catalogue(_catalogue("gpt-4", "gpt-5")))
    assert [(f.path, f.old, f.new) for f in change.fields] == [
        ("result.data (order)", ["[id=gpt-5]", "[id=gpt-4]"], ["[id=gpt-4]", "[id=gpt-5]"])]


def test_ignored_paths_are_not_drift():
    old = _with_catalogue(_catalogue("gpt-5", "gpt-4"))
    new = _with_catalogue(_catalogue("gpt-6", "gpt-5", "gpt-4", upgrade="gpt-7"))
    assert compare_cassettes(old, new, ignore=["result.data"]) == []
    [change] = compare_cassettes(old, new, ignore=["*.upgrade"])
    assert [f.path for f in change.fields] == ["result.data[id=gpt-6]"]


def _result(name: str, *changes: Change) -> DriftResult:
    return DriftResult(cassette=name, status="changed", old_version="0.163.0", new_version="0.169.0",
                       replay="ok", changes=list(changes))


def test_a_change_seen_in_several_cassettes_is_listed_once():
    user_id = FieldChange("result.userId", "added", None, None)
    common = Change("changed", "server", "result of account/read", "a:8", "a:8", [user_id])
    own = Change("changed", "server", "turn/completed", "b:30", "b:30",
                 [FieldChange("params.turn.status", "changed", "completed", "failed")])
    gone = Change("removed", "server", "warning", old_at="a:42")
    md = render_markdown([_result("a.jsonl", common, gone), _result("b.jsonl", common, own, gone)],
                         Invocation(codex_bin="/opt/codex 0.169/codex"))
    assert md.count("result.userId") == 1 and md.count("warning") == 1
    assert "- `~ changed server result of account/read: result.userId: added null` — 2 cassettes" in md
    assert "- `- removed server warning` — 2 cassettes" in md
    assert "### `b.jsonl`" in md and "params.turn.status: 'completed' -> 'failed'" in md
    assert "### `a.jsonl`" not in md  # nothing of its own left to say
    assert md.rstrip().endswith("To accept: `codex-cassette drift rerecord a.jsonl b.jsonl "
                                "--codex-bin '/opt/codex 0.169/codex' --update`")


# -- the engine's client role: floating notifications and tolerant play -------------------


async def _play_both(server_cassette: Cassette, client_cassette: Cassette, **client_opts):
    """The engine as a fake server against the engine as client, over an in-memory pipe."""
    engine_side, stdin, stdout = memory_pair()
    server = ReplayEngine(server_cassette, engine_side, ReplayOptions(role="server", timeout=2, linger=2))
    client = ReplayEngine(client_cassette, ProcessChannel(SimpleNamespace(stdin=stdin, stdout=stdout)).start(),
                          ReplayOptions(role="client", timeout=0.5, linger=1, **client_opts))
    s_report, c_report = await asyncio.wait_for(asyncio.gather(server.run(), client.run()), 20)
    return s_report, c_report


@pytest.mark.asyncio
async def test_floating_notifications_are_no_barrier_and_match_anywhere():
    # The live server says configWarning after thread/start's answer; the cassette had it before initialize's.
    live = cassette(*session(T1, U1, warn_first=False))
    recorded = cassette(*session(T1, U1))
    _, strict = await _play_both(copy.deepcopy(live), copy.deepcopy(recorded))
    assert strict.status == "diverged"
    _, report = await _play_both(copy.deepcopy(live), copy.deepcopy(recorded), floating=["configWarning"])
    assert report.status == "ok" and not report.failed() and report.matched == 10


@pytest.mark.asyncio
async def test_tolerant_play_notes_changed_unexpected_and_missing_and_goes_on():
    live = session(T1, U1)
    live.insert(-1, ("server", {"method": "thread/status/changed", "params": {"threadId": T1}}))
    live[-1] = ("server", {"method": "turn/completed", "params": {"threadId": T1, "turn": {
        "id": U1, "status": "failed", "durationMs": 1}}})
    recorded = session(T1, U1)
    recorded.insert(-1, ("server", {"method": "item/never", "params": {}}))
    recorded.append(("client", {"id": 4, "method": "thread/read", "params": {"threadId": T1}}))
    live.append(("client", {"id": 4, "method": "thread/read", "params": {"threadId": T1}}))
    server, report = await _play_both(cassette(*live), cassette(*recorded), tolerant=True)
    kinds = sorted((n["kind"], n["expected"] or n["received"][:40]) for n in report.notes)
    assert kinds == [("changed", "server turn/completed"), ("missing", "server item/never"),
                     ("unexpected", '{"method": "thread/status/changed", "par')]
    assert report.played == report.total - 1  # everything but the missing one; the client went on
    assert server.status == "ok" and not server.failed()


# -- live: the CI drift check -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, Path]:
    """Live cassettes recorded here, so the check never runs on nothing."""
    out = tmp_path_factory.mktemp("fresh")
    return {name: asyncio.run(record_live(CASSETTES / "live" / f"{name}.yaml", out / f"{name}.jsonl")).path
            for name in ("approval", "interrupt")}


def _assert_same(result) -> None:
    assert result.status == "same", (
        f"\n{render_text([result])}\nIf the change is expected, update the cassette with:\n"
        f"  {Invocation().accept_command([result.cassette])}")


@pytest.mark.live
@pytest.mark.parametrize("name", ["approval", "interrupt"])
def test_a_fresh_recording_rerecords_the_same(fresh, name):
    result = asyncio.run(check_cassette(fresh[name]))
    _assert_same(result)
    assert result.notes == [] and result.replay == "ok"


@pytest.mark.live
@pytest.mark.parametrize("session", SHIPPED_SESSIONS,
                         ids=[str(s[0].relative_to(CASSETTES)) for s in SHIPPED_SESSIONS])
def test_shipped_live_cassette_has_not_drifted(session):
    """Every live cassette under cassettes/ (a resume's parts together) against the pinned codex."""
    for result in asyncio.run(check_session(session)):
        _assert_same(result)


def _tampered(src: Path, dst: Path) -> Path:
    """A copy whose recording says what codex does not: a changed output, a dropped notification."""
    lines = src.read_text().splitlines()
    out = []
    for line in lines:
        obj = json.loads(line)
        msg = obj.get("msg") or {}
        if msg.get("method") == "serverRequest/resolved":
            continue
        item = (msg.get("params") or {}).get("item") or {}
        if msg.get("method") == "item/completed" and item.get("type") == "commandExecution":
            item["aggregatedOutput"] = "bye\n"
            line = json.dumps(obj)
        out.append(line)
    dst.write_text("\n".join(out) + "\n")
    return dst


def _codex_bin() -> str:
    import codex_cli_bin
    return str(codex_cli_bin.bundled_codex_path())


@pytest.mark.live
def test_drift_is_caught_reported_and_updated(fresh, tmp_path, capsys):
    tampered = _tampered(fresh["approval"], tmp_path / "approval.jsonl")
    # the invocation's own options come back in the accept command, so running it re-records the same way
    argv = ["drift", "rerecord", str(tampered), "--codex-bin", _codex_bin(), "--timeout", "2.5",
            "--floating", "account/rateLimits/updated", "--ignore", "*.cliVersion"]
    assert cli_main(argv) == 1
    report = capsys.readouterr().out
    assert f"{tampered}: changed" in report
    assert "~ changed server item/completed" in report
    assert "params.item.aggregatedOutput: 'bye\\n' -> 'hi\\n'" in report
    assert "+ added server serverRequest/resolved" in report
    accept = report.rsplit("to accept the new recordings: ", 1)[1].strip()
    assert shlex.split(accept) == ["codex-cassette", *argv, "--update"]

    assert cli_main([*argv, "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == {"cassettes": 1, "same": 0, "changed": 1, "updated": 0, "error": 0, "exit_code": 1}
    assert data["accept"] == accept
    [result] = data["results"]
    assert sorted({n["kind"] for n in result["notes"]}) == ["changed", "unexpected"]
    assert result["drift"] == 2

    assert cli_main(shlex.split(accept)[1:]) == 0  # the printed command, as printed
    assert "updated" in capsys.readouterr().out
    # codex's own recording again: only races (a notification earlier than the client's next message) may differ
    assert [c for c in compare_cassettes(load_cassette(fresh["approval"]), load_cassette(tampered)) if c.counts] == []
    assert cli_main(["drift", "rerecord", str(tampered), "--format", "markdown"]) == 0
    assert "| same |" in capsys.readouterr().out


@pytest.mark.live
def test_out_dir_keeps_cassettes_of_one_name_apart(fresh, tmp_path, monkeypatch):
    for sub in ("a", "b"):
        (tmp_path / "cassettes" / sub).mkdir(parents=True)
        (tmp_path / "cassettes" / sub / "x.jsonl").write_bytes(fresh["approval"].read_bytes())
    monkeypatch.chdir(tmp_path)
    results = asyncio.run(check_all(["cassettes"], out_dir="out"))
    assert [r.status for r in results] == ["same", "same"]
    assert sorted(r.new_cassette for r in results) == ["out/cassettes/a/x.jsonl", "out/cassettes/b/x.jsonl"]
    for r in results:
        assert load_cassette(tmp_path / r.new_cassette).meta["rerecorded_from"]


@pytest.mark.live
def test_a_message_codex_no_longer_sends_is_missing_not_a_hang(fresh, tmp_path):
    src = load_cassette(fresh["approval"])
    lines = fresh["approval"].read_text().splitlines()
    eof = next(n for n, e in enumerate(src.events) if e.side == "client" and e.eof) + 1  # +1: the header
    # No "i" (it could only go backwards here) and the time of its neighbour: the loader refuses disorder.
    ghost = {"from": "server", "t": src.events[eof - 1].t, "msg": {"method": "item/ghost", "params": {}}}
    lines.insert(eof, json.dumps(ghost))
    path = tmp_path / "ghost.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = asyncio.run(check_cassette(path, timeout=0.5))
    assert result.status == "changed"
    assert [(c.kind, c.label) for c in result.drift] == [("removed", "item/ghost")], render_text([result])
    assert [n["kind"] for n in result.notes] == ["missing"]
    assert result.seconds < 10


def test_a_cassette_not_recorded_live_is_refused(tmp_path, capsys):
    path = tmp_path / "plain.jsonl"
    path.write_text('{"codex_cassette":1,"meta":{"complete":true}}\n'
                    '{"i":1,"from":"client","t":0,"msg":{"id":1,"method":"initialize","params":{}}}\n')
    assert cli_main(["drift", "rerecord", str(path)]) == 2
    assert "cannot be re-recorded" in capsys.readouterr().out
    assert cli_main(["drift", "rerecord", str(tmp_path)]) == 2  # a directory without live cassettes
    assert "no live cassettes" in capsys.readouterr().err


# -- every shipped cassette fits the schema of its codex ----------------------------------------


@pytest.mark.parametrize("path", SHIPPED_ALL, ids=[str(p.relative_to(CASSETTES)) for p in SHIPPED_ALL])
def test_shipped_cassette_validates_against_its_schema(path):
    version = load_cassette(path).meta.get("codex_version") or "0.163.0"
    schema = SCHEMAS / version if (SCHEMAS / version).is_dir() else SCHEMAS / "0.163.0"
    problems = validate_paths([path], load_snapshot(schema))
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.live
def test_fresh_recordings_validate_against_0_163_0(fresh):
    problems = validate_paths(list(fresh.values()), load_snapshot(SCHEMAS / "0.163.0"))
    assert not problems, "\n".join(map(str, problems))
