"""The fault catalogue and its variants, derived from the shipped cassettes (no process runs here)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness.drift.snapshot import load_snapshot
from harness.drift.validate import validate_cassette
from harness.errors import UsageError
from harness.faults.catalogue import ERROR_SHAPES, KINDS, catalogue, parse_kinds, sample, session_end
from harness.faults.novelty import NOVEL_STRING, SchemaDiffNovelties, SchemaFree
from harness.faults.variants import GARBAGE, METHOD_NOT_FOUND, UNKNOWN_REQUEST, FaultTiming, write_variant
from harness.format.cassette import load_cassette
from harness.format.load import open_cassette
from harness.format.wire import Kind, classify

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = sorted((ROOT / "cassettes").glob("*/*.jsonl"))
TEXT_TURN = ROOT / "cassettes" / "optio" / "text_turn.jsonl"
SCHEMA = ROOT / "cassettes" / "schema"


def kind_of(event) -> Kind | None:
    return classify(event.msg) if event.side == "server" and isinstance(event.msg, dict) else None


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_kind_applies_where_its_rule_says(path: Path) -> None:
    cassette = open_cassette(path)
    events = cassette.events
    faults = catalogue(cassette)
    assert len({f.id for f in faults}) == len(faults)                 # ids name one variant each
    end = session_end(cassette)
    assert events[end].eof and events[end].side == "client"          # the shipped ones end with a hang-up
    counts = Counter(f.kind for f in faults)
    assert set(counts) == set(KINDS)
    for fault in faults:
        p = fault.position
        if fault.inserted:
            assert 0 < p <= end and fault.point == events[p - 1].line
        else:
            assert p < end and fault.point == events[p].line
        if fault.kind in ("stall", "garbage", "unknown-notification", "unknown-request", "delay"):
            assert kind_of(events[p]) is not None                       # something the server would say next
        if fault.kind == "crash":
            assert kind_of(events[p - 1]) is not None or (p < end and kind_of(events[p]) is not None)
        if fault.kind == "drop":
            assert kind_of(events[p]) is Kind.NOTIFICATION
        if fault.kind == "duplicate":
            assert kind_of(events[p]) in (Kind.NOTIFICATION, Kind.RESPONSE)
        if fault.kind == "error":
            assert kind_of(events[p]) is Kind.RESPONSE and "result" in events[p].msg
    answers = [e for e in events[:end] if kind_of(e) is Kind.RESPONSE and "result" in e.msg]
    assert counts["error"] == len(answers) * len(ERROR_SHAPES)
    assert counts["drop"] == sum(kind_of(e) is Kind.NOTIFICATION for e in events[:end])
    assert counts["crash"] == 2 * counts["hangup"]                    # plain, and stdout closed first
    first_answer = next(n for n, e in enumerate(events) if kind_of(e) is Kind.RESPONSE)
    assert min(f.position for f in faults if f.kind == "unknown-request") > first_answer


def test_variants_are_ordinary_cassettes_that_load_alone(tmp_path: Path) -> None:
    cassette = open_cassette(TEXT_TURN)
    n = len(cassette.events)
    timing = FaultTiming(deadline=4.0)
    for fault in catalogue(cassette):
        path = write_variant(cassette, fault, tmp_path, timing)
        variant = load_cassette(path)                                    # the loader's checks, file:line and all
        assert variant.meta["fault"]["id"] == fault.id and variant.meta["fault"]["point"] == fault.point
        assert "live" in cassette.meta and "live" not in variant.meta     # drift re-recording leaves it alone
        events = variant.events
        p = fault.position
        if fault.kind == "crash":
            assert events[-1].exit == 1 and len(events) == p + (3 if fault.variant == "closed" else 1)
        elif fault.kind == "hangup":
            assert events[p].fault == {"close_stdout": True} and len(events) == n + 1
        elif fault.kind in ("stall", "delay"):
            assert events[p].fault == {"delay": timing.stall if fault.kind == "stall" else timing.delay}
            assert timing.delay < timing.deadline < timing.stall < timing.fake_timeout
        elif fault.kind == "garbage":
            assert events[p].fault == {"garbage": GARBAGE}
        elif fault.kind == "unknown-request":
            ask, answer = events[p].msg, events[p + 1].msg
            assert ask["method"] == UNKNOWN_REQUEST and answer == {"id": ask["id"], "error": {"code": METHOD_NOT_FOUND}}
            assert events[p + 1].side == "client" and events[p + 1].match == {"mode": "subset"}
        elif fault.kind == "error":
            assert events[p].msg == {"id": cassette.events[p].msg["id"], "error": ERROR_SHAPES[fault.variant]}
            assert events[p + 1].side == "client" or events[p + 1].eof     # what the request caused is gone
        elif fault.kind == "drop":
            assert len(events) == n - 1 and events[p].msg != cassette.events[p].msg
        elif fault.kind == "duplicate":
            assert events[p].msg == events[p + 1].msg == cassette.events[p].msg
        elif fault.kind == "novel-value":
            assert events[p].msg != cassette.events[p].msg and len(events) == n
    assert open_cassette(TEXT_TURN).events[14].msg == cassette.events[14].msg  # the source is left as it was


def test_schema_free_novelties_change_one_thing() -> None:
    cassette = open_cassette(TEXT_TURN)
    plan = SchemaFree().plan(cassette)
    by_line = {cassette.events[p].line: [n.path for n in found] for p, found in plan.items()}
    completed = next(e for e in cassette.events if isinstance(e.msg, dict) and e.msg.get("method") == "turn/completed")
    assert "params.turn.status" in by_line[completed.line]
    novelty = next(n for n in plan[cassette.events.index(completed)] if n.path == "params.turn.status")
    changed = novelty.apply(completed.msg)
    assert changed["params"]["turn"]["status"] == NOVEL_STRING
    assert completed.msg["params"]["turn"]["status"] == "completed"
    changed["params"]["turn"]["status"] = "completed"
    assert changed == completed.msg


def test_novel_values_from_a_schema_diff_are_valid_for_the_new_codex_only(tmp_path: Path) -> None:
    """0.144.4 -> 0.163.0 added error kinds a 0.144 client never saw; placed into the failed turn,
    the variant is valid codex 0.163.0 and invalid 0.144.4 exactly there."""
    old, new = SCHEMA / "0.144.4", SCHEMA / "0.163.0"
    cassette = open_cassette(ROOT / "cassettes" / "optio" / "failed_turn.jsonl")
    faults = catalogue(cassette, ["novel-value"], SchemaDiffNovelties.load(old, new))
    ids = [f.id for f in faults]
    error_line = next(e.line for e in cassette.events if isinstance(e.msg, dict) and e.msg.get("method") == "error")
    assert f"novel-value@{error_line}:params.error.codexErrorInfo=rateLimitExceeded" in ids
    fault = faults[ids.index(f"novel-value@{error_line}:params.error.codexErrorInfo=rateLimitExceeded")]
    variant = load_cassette(write_variant(cassette, fault, tmp_path))
    assert variant.events[fault.position].msg["params"]["error"]["codexErrorInfo"] == "rateLimitExceeded"
    assert not [p for p in validate_cassette(variant, load_snapshot(new)) if p.line == fault.position + 2]
    problems = [p for p in validate_cassette(variant, load_snapshot(old)) if p.line == fault.position + 2]
    assert problems and any("codexErrorInfo" in p.path for p in problems)


def test_sampling_is_seeded_and_spread_across_kinds() -> None:
    faults = catalogue(open_cassette(TEXT_TURN))
    first = sample(faults, len(KINDS), seed=7, salt="x")
    assert [f.id for f in first] == [f.id for f in sample(faults, len(KINDS), seed=7, salt="x")]
    assert sorted(f.kind for f in first) == sorted(KINDS)                # one of each kind
    others = {tuple(f.id for f in sample(faults, len(KINDS), seed=s, salt="x")) for s in range(5)}
    assert len(others) > 1
    assert [f.id for f in sample(faults, None)] == [f.id for f in faults]
    assert first == [f for f in faults if f in first]                    # catalogue order kept


def test_kinds_are_checked_and_named() -> None:
    assert parse_kinds("all") == KINDS
    assert parse_kinds("drop, crash") == ("crash", "drop")
    with pytest.raises(UsageError, match="'crsh'.*the kinds are all, crash, hangup"):
        parse_kinds("crsh,drop")
