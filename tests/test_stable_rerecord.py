"""Stable re-record (harness.format.stable): a recording written over an existing cassette
keeps every line whose meaning is unchanged, byte for byte.

The unit tests take the shipped cassettes (real codex 0.163.0 sessions) and make of each
what a re-record looks like (every UUID minted anew, consistently, in client and server
messages; times and token counts moved; another `t`), then change, reorder or break
single events. The end-to-end tests re-record with the real codex through the CLI and
the pytest plugin.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.format import stable
from harness.format.cassette import load_cassette
from harness.format.minted import MintedValues
from harness.format.stable import stable_bytes
from harness.format.writer import CassetteWriter

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "cassettes" / "optio").glob("*.jsonl")) + [ROOT / "cassettes" / "openai_sdk" / "approval.jsonl"]
DIFFLIB_UP_TO = stable.DIFFLIB_UP_TO
TEXT_TURN = ROOT / "cassettes" / "optio" / "text_turn.jsonl"
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMES_RE = re.compile(rb'"(emittedAtMs|startedAtMs|completedAtMs|createdAt|updatedAt|recencyAt|startedAt|'
                      rb'completedAt|durationMs|totalTokens|inputTokens)":(\d+)')
T_RE = re.compile(rb'^(\{"i":\d+,"from":"\w+","t":)([0-9.e-]+)')


def remint(data: bytes, seed: int = 0) -> bytes:
    """``data`` as a re-record of the same session would write it: new UUIDs (the same
    new one wherever an old one was), times and token counts moved, `t` stretched, and
    another recorded_at."""
    rng = random.Random(seed)
    names: dict[bytes, bytes] = {}
    shift = rng.randint(1, 10_000_000)
    stretch = 1 + rng.random()

    def new_uuid(m: re.Match[bytes]) -> bytes:
        return names.setdefault(m.group(0), str(uuid.UUID(int=rng.getrandbits(128))).encode())

    lines = data.splitlines(keepends=True)
    header = re.sub(rb'"recorded_at":"[^"]*"', b'"recorded_at":"2031-01-01T00:00:00Z"', lines[0])
    out = [header]
    for line in lines[1:]:
        line = UUID_RE.sub(new_uuid, line)
        line = TIMES_RE.sub(lambda m: b'"%s":%d' % (m.group(1), int(m.group(2)) + shift), line)
        line = T_RE.sub(lambda m: m.group(1) + repr(round(float(m.group(2)) * stretch, 6)).encode(), line)
        out.append(line)
    return b"".join(out)


def events(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()[1:]]


def write_events(header: bytes, evs: list[dict]) -> bytes:
    """Events renumbered and laid out as the writer lays them out."""
    out = [header]
    for n, ev in enumerate(evs, start=1):
        rest = {k: v for k, v in ev.items() if k not in ("i", "from", "t")}
        out.append(json.dumps({"i": n, "from": ev["from"], "t": ev["t"], **rest},
                              separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    return b"".join(out)


def changed_lines(old: bytes, new: bytes) -> list[int]:
    a, b = old.splitlines(), new.splitlines()
    assert len(a) == len(b)
    return [n for n, (x, y) in enumerate(zip(a, b)) if x != y]


def loads(tmp_path: Path, data: bytes):
    """The loader's invariants (header, `i`, `t` per side) hold for what stable wrote."""
    path = tmp_path / f"check{len(list(tmp_path.iterdir()))}.jsonl"
    path.write_bytes(data)
    return load_cassette(path)


@pytest.fixture(params=["difflib", "greedy"])
def aligner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of aligning what is left between the common head and tail: difflib, and
    the greedy walk that big cassettes get."""
    if request.param == "greedy":
        monkeypatch.setattr(stable, "DIFFLIB_UP_TO", 0)
    return request.param


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_rerecord_of_a_shipped_cassette_gives_the_old_bytes_back(path: Path, tmp_path: Path):
    old = path.read_bytes()
    new = remint(old, seed=len(old))
    assert changed_lines(old, new)  # the re-record does differ, line by line
    result = stable_bytes(old, new)
    assert result is not None and result.data == old
    assert result.header_kept and result.written == 0


def test_one_changed_event_is_the_only_new_line_and_carries_the_old_ids(tmp_path: Path, aligner: str):
    old = TEXT_TURN.read_bytes()
    evs = events(remint(old, seed=3))
    delta = next(n for n, e in enumerate(evs) if e.get("msg", {}).get("params", {}).get("delta") == "Hello")
    evs[delta]["msg"]["params"]["delta"] = "Howdy"
    result = stable_bytes(old, write_events(remint(old, 3).splitlines(keepends=True)[0], evs))
    assert result is not None
    assert changed_lines(old, result.data) == [delta + 1]
    line = json.loads(result.data.splitlines()[delta + 1])
    before = json.loads(old.splitlines()[delta + 1])
    assert line["msg"]["params"]["delta"] == "Howdy"
    # The ids are the old cassette's, so the replay stays consistent with the kept lines.
    assert line["msg"]["params"]["threadId"] == before["msg"]["params"]["threadId"]
    assert line["msg"]["params"]["turnId"] == before["msg"]["params"]["turnId"]
    loaded = loads(tmp_path, result.data)
    assert [e.index for e in loaded.events] == list(range(1, len(loaded.events) + 1))


def test_a_client_message_quoting_a_server_minted_id_gets_the_old_id(tmp_path: Path):
    old = TEXT_TURN.read_bytes()
    new = remint(old, seed=5)
    evs = events(new)
    turn = next(n for n, e in enumerate(evs) if e.get("msg", {}).get("method") == "turn/start")
    new_thread = evs[turn]["msg"]["params"]["threadId"]
    evs[turn]["msg"]["params"]["input"][0]["text"] = "Say hi"
    result = stable_bytes(old, write_events(new.splitlines(keepends=True)[0], evs))
    assert result is not None
    assert changed_lines(old, result.data) == [turn + 1]
    line = json.loads(result.data.splitlines()[turn + 1])
    old_thread = json.loads(old.splitlines()[turn + 1])["msg"]["params"]["threadId"]
    assert new_thread != old_thread and line["msg"]["params"]["threadId"] == old_thread
    assert new_thread.encode() not in result.data  # renamed wherever it appears
    loads(tmp_path, result.data)


def test_a_race_keeps_the_old_order(tmp_path: Path, aligner: str):
    """Two server notifications swapped, and a server notification that came before the
    client's request this time (thread/started vs turn/start, as resume.jsonl races)."""
    old = TEXT_TURN.read_bytes()
    new = remint(old, seed=7)
    evs = events(new)
    methods = [e.get("msg", {}).get("method") for e in evs]
    a = methods.index("configWarning")
    evs[a], evs[a + 1] = evs[a + 1], evs[a]
    started = methods.index("thread/started")
    turn = methods.index("turn/start")
    assert evs[turn]["from"] == "client" and turn > started
    evs.insert(turn, evs.pop(started))  # now after the client's turn/start
    evs = [{**e, "t": n / 100} for n, e in enumerate(evs)]
    result = stable_bytes(old, write_events(new.splitlines(keepends=True)[0], evs))
    assert result is not None and result.data == old


def test_a_value_that_would_take_two_names_is_no_renaming(tmp_path: Path):
    """The new user-message item id is the same as the new turn id: an id cannot stand for
    two old ones, so the lines carrying it are written new, with it as recorded."""
    old = TEXT_TURN.read_bytes()
    new = remint(old, seed=11)
    evs = events(new)
    started = next(e for e in evs if e.get("msg", {}).get("method") == "turn/started")
    turn_id = started["msg"]["params"]["turn"]["id"].encode()
    item = next(e for e in evs if e.get("msg", {}).get("method") == "item/started")
    item_id = item["msg"]["params"]["item"]["id"].encode()
    clashing = new.replace(item_id, turn_id)
    result = stable_bytes(old, clashing)
    assert result is not None
    changed = changed_lines(old, result.data)
    carrying = [n for n, line in enumerate(clashing.splitlines()) if turn_id in line and n > 0]
    assert changed == carrying
    assert all(turn_id in result.data.splitlines()[n] for n in changed)
    loads(tmp_path, result.data)


def test_a_renaming_never_makes_two_ids_one(tmp_path: Path):
    """An extra request shifts the client's request ids by one: renaming 3 -> 2 would clash
    with the new request's own 2, so the shifted ones are written as recorded."""
    old = TEXT_TURN.read_bytes()
    new = remint(old, seed=17)
    evs = events(new)
    for ev in evs:
        msg = ev.get("msg", {})
        if isinstance(msg.get("id"), int) and msg["id"] >= 2:
            msg["id"] += 1
    at = next(n for n, e in enumerate(evs) if e.get("msg", {}).get("method") == "account/read")
    answer = next(n for n, e in enumerate(evs) if n > at and e.get("msg", {}).get("id") == 3
                  and "result" in e["msg"])
    evs[at:at] = [{**evs[at], "msg": {**evs[at]["msg"], "id": 2}},
                  {**evs[answer], "msg": {**evs[answer]["msg"], "id": 2}}]
    result = stable_bytes(old, write_events(new.splitlines(keepends=True)[0], evs))
    assert result is not None
    loaded = loads(tmp_path, result.data)
    requests = [e.msg["id"] for e in loaded.events if e.side == "client" and e.msg and "id" in e.msg]
    assert len(requests) == len(set(requests)) == 6


def test_the_header_is_new_only_when_more_than_recorded_at_changed():
    old = TEXT_TURN.read_bytes()
    new = remint(old)
    assert stable_bytes(old, new).data.splitlines()[0] == old.splitlines()[0]
    other = new.replace(b'"complete":true', b'"complete":false', 1)
    result = stable_bytes(old, other)
    assert not result.header_kept and result.data.splitlines()[0] == other.splitlines()[0]
    assert result.data.splitlines()[1:] == old.splitlines()[1:]


def test_a_user_named_volatile_key_is_not_compared():
    old = TEXT_TURN.read_bytes()
    new = re.sub(rb'"serverName":"[^"]*"', b'"serverName":"elsewhere"', remint(old))
    plain = stable_bytes(old, new)
    assert plain.written == 1 and b'"serverName":"elsewhere"' in plain.data
    assert stable_bytes(old, new, MintedValues(("serverName",))).data == old
    path = stable_bytes(old, new, MintedValues(("params.server*",)))
    assert path.data == old


def test_an_old_file_that_is_no_cassette_keeps_nothing(tmp_path: Path):
    new = remint(TEXT_TURN.read_bytes())
    for old in (b"", b"not json\n", b'{"codex_cassette":1}\n{"i":1,"from":"client","t":"x","msg":{}}\n',
                b"[" * 5000 + b"\n" + b"{}\n"):
        assert stable_bytes(old, new) is None


def test_an_old_secret_is_never_kept_nor_renamed_to(tmp_path: Path):
    """An old cassette recorded before its secret could be recognised: the new recording
    has the marker there (in an id, a time, a text); stable keeps none of the old secret."""
    from harness.format.redact import Redactor

    aws = "AKIA" + "Z7Q3M5N8P2R4T6V9"
    gh = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    old = TEXT_TURN.read_bytes()
    old = re.sub(rb'"installationId":"[^"]*"', f'"installationId":"{aws}"'.encode(), old)
    old = old.replace(b'"recencyAt":', f'"secretAt":"{gh}","recencyAt":'.encode())
    old = old.replace(b'"delta":"Hello"', f'"delta":"Hello {gh}"'.encode())
    assert aws.encode() in old and old.count(gh.encode()) >= 3
    redactor = Redactor.default(env={})
    header, *lines = remint(old, seed=13).splitlines(keepends=True)
    new = header + b"".join(
        json.dumps(redactor.scrub(json.loads(line)), separators=(",", ":")).encode() + b"\n" for line in lines)
    assert aws.encode() not in new and gh.encode() not in new
    result = stable_bytes(old, new)
    assert result is not None
    assert aws.encode() not in result.data and gh.encode() not in result.data
    assert b"{{redacted:aws_access_key_id}}" in result.data and b"{{redacted:github_token}}" in result.data
    loads(tmp_path, result.data)


def _write(path: Path, data: bytes, **kwargs) -> bytes:
    cassette = load_cassette(_tmp_copy(path.parent, data))
    writer = CassetteWriter(path, cassette.meta, **kwargs)
    for event in cassette.events:
        writer.write(event)
    writer.finish(complete=True)
    return path.read_bytes()


def _tmp_copy(directory: Path, data: bytes) -> Path:
    src = directory / "source.jsonl.in"
    src.write_bytes(data)
    return src


def test_the_writer_keeps_old_lines_unless_fresh(tmp_path: Path):
    old = TEXT_TURN.read_bytes()
    target = tmp_path / "x.jsonl"
    target.write_bytes(old)
    new = remint(old, seed=2)
    assert _write(target, new).splitlines()[1:] == old.splitlines()[1:]
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    fresh = _write(target, new, fresh=True)
    assert fresh.splitlines()[1:] != old.splitlines()[1:]
    assert UUID_RE.findall(fresh) == UUID_RE.findall(new)
    assert not list(tmp_path.glob("x.jsonl.*"))  # no partial, lock or temporary file left
    # A broken old cassette is replaced by the recording, no traceback.
    target.write_bytes(b'{"codex_cassette":1,"meta":{}}\n{"i":1,"fro')
    assert UUID_RE.findall(_write(target, new)) == UUID_RE.findall(new)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), edits=st.lists(st.tuples(st.sampled_from(["drop", "dup", "swap", "text"]),
                                                             st.integers(0, 10_000)), max_size=4),
       which=st.sampled_from(SHIPPED), greedy=st.booleans())
def test_whatever_changes_the_result_loads_and_unchanged_lines_stay(seed: int, edits, which: Path, greedy: bool,
                                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Dropped, duplicated, swapped or edited events: the result is always a valid cassette
    (header, `i` from 1, `t` never back on one side), and with no edit it is the old file."""
    old = which.read_bytes()
    new = remint(old, seed)
    evs = events(new)
    touched = False
    for kind, at in edits:
        n = at % len(evs)
        if kind == "drop" and len(evs) > 2:
            evs.pop(n)
        elif kind == "dup":
            evs.insert(n, json.loads(json.dumps(evs[n])))
        elif kind == "swap" and n + 1 < len(evs):
            evs[n], evs[n + 1] = evs[n + 1], evs[n]
        elif kind == "text" and "msg" in evs[n]:
            evs[n]["msg"]["zz"] = "edited"
        touched = True
    monkeypatch.setattr(stable, "DIFFLIB_UP_TO", 0 if greedy else DIFFLIB_UP_TO)
    result = stable_bytes(old, write_events(new.splitlines(keepends=True)[0], evs))
    assert result is not None
    loaded = loads(tmp_path, result.data)
    assert [e.index for e in loaded.events] == list(range(1, len(evs) + 1))
    if not touched:
        assert result.data == old
    old_lines = set(old.splitlines()[1:])
    for line, ev in zip(result.data.splitlines()[1:], loaded.events):
        if ev.msg is not None and "zz" in ev.msg:
            assert line not in old_lines


# -- end to end: the real codex, the CLI and the pytest plugin -----------------------------

LIVE = ROOT / "cassettes" / "live"


def record_live(scenario: Path, out: Path, home: Path, *flags: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    subprocess.run([sys.executable, "-m", "harness", "record-live", str(scenario), "-o", str(out), *flags],
                   env=env, check=True, capture_output=True, timeout=120)


def test_record_live_twice_under_different_homes_changes_nothing(tmp_path: Path):
    out = tmp_path / "x.jsonl"
    record_live(LIVE / "approval.yaml", out, tmp_path / "h1")
    first = out.read_bytes()
    record_live(LIVE / "approval.yaml", out, tmp_path / "a-much-longer-home-directory" / "h2")
    assert out.read_bytes() == first
    record_live(LIVE / "approval.yaml", out, tmp_path / "h1", "--fresh")
    assert UUID_RE.findall(out.read_bytes()) != UUID_RE.findall(first)  # --fresh: the old file not read


def test_record_live_volatile_flag_keeps_a_line_that_differs_only_there(tmp_path: Path):
    out = tmp_path / "x.jsonl"
    record_live(LIVE / "text.yaml", out, tmp_path / "h")
    edited = re.sub(rb'"serverName":"[^"]*"', b'"serverName":"elsewhere"', out.read_bytes())
    out.write_bytes(edited)
    record_live(LIVE / "text.yaml", out, tmp_path / "h", "--volatile", "serverName")
    assert out.read_bytes() == edited
    record_live(LIVE / "text.yaml", out, tmp_path / "h")
    assert changed_lines(edited, out.read_bytes()) == [
        n for n, line in enumerate(edited.splitlines()) if b'"serverName":"elsewhere"' in line]


def test_one_reply_word_changed_changes_only_the_lines_that_carry_it(tmp_path: Path):
    out = tmp_path / "x.jsonl"
    record_live(LIVE / "text.yaml", out, tmp_path / "h")
    first = out.read_bytes()
    changed = tmp_path / "text2.yaml"
    changed.write_text((LIVE / "text.yaml").read_text().replace("Hello from the mock", "Hello from the fake"))
    record_live(changed, out, tmp_path / "h")
    second = out.read_bytes()
    lines = changed_lines(first, second)
    # The header (it holds the scenario), the fourth delta and the two messages holding the text.
    assert lines[0] == 0
    carriers = [n for n, line in enumerate(second.splitlines()) if b"fake" in line]
    assert lines == carriers
    methods = [json.loads(second.splitlines()[n])["msg"]["method"] for n in lines[1:]]
    assert methods == ["item/agentMessage/delta", "item/completed", "turn/completed"]
    old_thread = set(UUID_RE.findall(first))
    assert set(UUID_RE.findall(second)) == old_thread  # new lines carry the old ids


def test_drift_rerecord_writes_the_old_lines_of_the_cassette_it_replays(tmp_path: Path):
    """`drift rerecord --out-dir` aligns the new recording with the cassette it replays (not
    with whatever the out-dir held), so accepting it is a diff of what changed: here nothing."""
    shipped = ROOT / "cassettes" / "optio" / "approval_accepted.jsonl"
    out = tmp_path / "out"
    home = tmp_path / "a-home-of-another-length"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "harness", "drift", "rerecord", str(shipped), "--out-dir", str(out)],
                   env={**os.environ, "HOME": str(home)}, capture_output=True, timeout=180, cwd=ROOT)
    written = out / "cassettes" / "optio" / shipped.name
    assert written.read_bytes().splitlines()[1:] == shipped.read_bytes().splitlines()[1:]


PLUGIN_TEST = '''
import pytest
from harness.live.client import ScriptedClient


@pytest.mark.asyncio
@pytest.mark.codex_cassette("session", live={scenario!r}, **{options})
async def test_turn(codex_app_server):
    client = ScriptedClient(await codex_app_server.handle(), timeout=30)
    await client.start({{}}, codex_app_server.cwd)
    await client.run([{{"turn": "Say hello"}}])
    await client.close()
'''


# The same through the recording proxy: the client launches codex_app_server.argv
# (`python -m harness record ... [--fresh]`), as the openai-codex SDK does.
PLUGIN_PROXY_TEST = '''
import asyncio, pytest
from harness.live.client import ScriptedClient


@pytest.mark.asyncio
@pytest.mark.codex_cassette("session", live={scenario!r}, **{options})
async def test_turn(codex_app_server):
    proc = await asyncio.create_subprocess_exec(*codex_app_server.argv, env=codex_app_server.env,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    client = ScriptedClient(proc, timeout=30)
    await client.start({{}}, codex_app_server.cwd)
    await client.run([{{"turn": "Say hello"}}])
    await client.close()
    assert await asyncio.wait_for(proc.wait(), 30) == 0
'''


@pytest.mark.parametrize("fresh", [False, True])
@pytest.mark.parametrize("launch", ["handle", "argv"])
def test_the_plugin_rerecords_stably_unless_the_marker_says_fresh(pytester: pytest.Pytester, fresh: bool,
                                                                 launch: str):
    pytester.makeini("[pytest]\nasyncio_mode = strict\n")
    body = PLUGIN_TEST if launch == "handle" else PLUGIN_PROXY_TEST
    pytester.makepyfile(test_inner=body.format(scenario=str(LIVE / "text.yaml"),
                                               options="{'fresh': True}" if fresh else "{}"))
    cassette = pytester.path / "cassettes" / "test_inner" / "session.jsonl"
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--codex-record-mode=all",
                                  timeout=180).assert_outcomes(passed=1)
    first = cassette.read_bytes()
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--codex-record-mode=all",
                                  timeout=180).assert_outcomes(passed=1)
    second = cassette.read_bytes()
    if fresh:
        assert set(UUID_RE.findall(first)).isdisjoint(UUID_RE.findall(second))
    else:
        assert second == first
    pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180).assert_outcomes(passed=1)  # replays


def test_a_bad_volatile_option_is_said_in_one_line(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nasyncio_mode = strict\n")
    pytester.makepyfile(test_inner=PLUGIN_TEST.format(scenario=str(LIVE / "text.yaml"), options="{'volatile': 3}"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--codex-record-mode=all", timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*volatile must be a key name, a dotted path or a list of them, not 3*"])
    assert "Traceback" not in result.stdout.str()
    assert not list(pytester.path.glob("cassettes/**/*.lock"))  # no lock left behind


pytest_plugins = ["pytester"]
