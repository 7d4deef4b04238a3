"""What the engine says when a replay goes wrong: one Divergence per kind, worded for people.

The engine decides that and where a session diverged; this module words it: which
message was expected at which cassette line, what came instead and how it differed,
which wait expired and after how long, and what was accepted ahead of its turn
(the usual real cause of a wait that expires later). Every Divergence is bounded
and escaped by harness.replay.report's gate as it is made.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from harness.errors import CassetteError
from harness.format.cassette import Cassette, Event
from harness.format.wire import NotJSON, decode
from harness.replay.intake import Heard
from harness.replay.matching import MatchContext, compare, diff_text, distance, strip_transport
from harness.replay.report import Divergence

DIVERGENCE_CODE = -32099  # in JSON-RPC's server-error range, unused by codex
SHORT = 300               # characters of a received value quoted in a message
AHEAD_NAMED = 3           # messages accepted ahead of their turn named in one divergence

Scrub = Callable[[Any], Any]  # the secret scrubber for reports (harness.replay.intake.Intake.for_report)


def _same(value: Any) -> Any:
    return value


def _made(scrub: Scrub, kind: str, message: str, expected: Any = None, expected_at: str | None = None,
          received: Any = None, matcher: str | None = None, diff: str = "", excerpt: str = "") -> Divergence:
    """The one way a Divergence is made here: what it says is scrubbed of secrets first, then
    (Divergence's own gate) escaped and capped; in that order, so a cap never cuts a secret
    in half where the scrubber would no longer know it."""
    return Divergence(kind=kind, message=scrub(message), expected=scrub(expected), expected_at=expected_at,
                      received=scrub(received), matcher=matcher, diff=scrub(diff), excerpt=scrub(excerpt))


def short(value: Any, limit: int = SHORT) -> str:
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def flatten(diff: str) -> str:
    return "; ".join(line.strip() for line in diff.splitlines() if line.strip())


def ahead_note(cassette: Cassette, ahead: list[int], first: Event, peer: str) -> str:
    """Name the messages accepted ahead of their turn while ``first`` was still awaited:
    a peer that sent one of them in its place diverged there, not where a wait ran out."""
    if not ahead:
        return ""
    events = cassette.events
    named = "; ".join(f"{events[p].describe()}, which the cassette has later, at {cassette.where(events[p])}"
                      for p in ahead[:AHEAD_NAMED])
    more = f" (and {len(ahead) - AHEAD_NAMED} more)" if len(ahead) > AHEAD_NAMED else ""
    return (f" Meanwhile came {named}{more}: accepted ahead of its turn, it may have been "
            f"sent instead of {first.describe()} ({cassette.where(first)}).")


def timeout(cassette: Cassette, waiting: list[int], limit: float, which: str, ahead: str,
            scrub: Scrub = _same) -> Divergence:
    events = cassette.events
    first = events[waiting[0]]
    names = ", ".join(events[p].describe() for p in waiting[:3])
    message = (f"codex-cassette: expected {names} at {cassette.where(first)}, "
               f"but nothing came in {limit:g} s ({which}).{ahead}")
    return _made(scrub, "timeout", message, expected=first.msg, expected_at=cassette.where(first))


def for_line(cassette: Cassette, ctx: MatchContext, line: Heard, pool: list[Event], kind: str, peer: str,
             ahead: str, scrub: Scrub = _same, rules_named: bool = True) -> Divergence:
    """A live line that matched nothing: compared with the nearest of ``pool`` (the
    messages awaited; its first when the line is not JSON), or, for ``unexpected``,
    with nothing. Built from a scrubbed copy only: what follows is said to the peer."""
    live, is_json = line.parse()
    shown = scrub(live) if is_json else live
    hidden, live = shown != live, shown
    received: Any = live if is_json else scrub(line.data.decode("utf-8", "replace"))
    nearest = min(pool, key=lambda e: distance(e, live, ctx)) if is_json else pool[0]
    if kind == "unexpected" or nearest.msg is None:
        # What the cassette holds next is said as the list of unplayed events will say it.
        matcher, diff = None, ""
        why = (f"the cassette has '{nearest.describe()}' next: the {peer} sent more than was recorded"
               if nearest.msg is None and nearest.raw is None else "the cassette expected nothing from the peer here")
    else:
        found = compare(nearest, strip_transport(live), ctx) if isinstance(live, dict) else None
        matcher = found.matcher if found else "kind"
        why = found.reason if found else "not a JSON-RPC message" if is_json else _not_json(line)
        diff = diff_text(nearest, live, ctx)
    secrets = ""
    if not diff and matcher and hidden:
        secrets = (" The live message differs from the recording only in secrets, which are not shown"
                   + ("." if rules_named else "; this cassette's header names no redaction rules, so they were "
                      "not scrubbed before matching: re-record it to replay it."))
    return mismatch(cassette, nearest, received, matcher, why, diff, peer, kind, ahead + secrets, scrub)


def _not_json(line: Heard) -> str:
    try:
        decode(line.data)
    except NotJSON as exc:
        return f"not a JSON-RPC message: the line is not JSON ({exc})"
    return "not a JSON-RPC message"


def mismatch(cassette: Cassette, nearest: Event, received: Any, matcher: str | None, why: str,
             diff: str, peer: str, kind: str, ahead: str, scrub: Scrub = _same) -> Divergence:
    got = short(received)
    where = cassette.where(nearest)
    expected = nearest.describe() if nearest.msg is not None or nearest.raw is not None else "nothing"
    message = (f"codex-cassette: divergence at {where}: expected {expected}, "
               f"got {got}. The '{matcher}' matcher failed: {why}." if matcher else
               f"codex-cassette: unexpected message from the {peer}: {got} "
               f"({why}; last position {where}).")
    message += ahead
    if diff:
        message += f" Differences: {flatten(diff)}"
    return _made(scrub, kind, message, expected=nearest.msg, expected_at=where, received=received,
                 matcher=matcher, diff=diff)


def duplicate_id(cassette: Cassette, event: Event, received: Any, live_id: Any, earlier: Event,
                 peer: str, scrub: Scrub = _same) -> Divergence:
    message = (f"codex-cassette: duplicate request id at {cassette.where(event)} ({event.describe()}): "
               f"the {peer} sent id {short(live_id, 60)} while its request {earlier.describe()} "
               f"({cassette.where(earlier)}) with that id was still waiting for its answer; "
               "ids of requests in flight must differ.")
    return _made(scrub, "duplicate_id", message, expected=event.msg, expected_at=cassette.where(event),
                 received=received, matcher="id")


def stalled(cassette: Cassette, event: Event | None, limit: float, peer: str, scrub: Scrub = _same) -> Divergence:
    where = (f"{cassette.where(event)} ({event.describe()})" if event is not None
             else "the end of the cassette")
    message = (f"codex-cassette: the {peer} stopped reading at {where}: nothing more of what was written "
               f"to it was taken in {limit:g} s (the write deadline, the replay timeout).")
    return _made(scrub, "stalled", message, expected=event.msg if event else None,
                 expected_at=cassette.where(event) if event else None)


def closed_otherwise(cassette: Cassette, event: Event, live: dict[str, Any], peer: str,
                     scrub: Scrub = _same) -> Divergence | None:
    """A socket peer that ended where the cassette has its close frame (``event.close``) but
    dropped the connection (code 1006) or sent another code; None when it closed as recorded."""
    if event.close is None or live["code"] == event.close["code"]:
        return None
    how = ("dropped the connection without a close frame" if live["code"] == 1006
           else f"closed it with code {live['code']}")
    message = (f"codex-cassette: divergence at {cassette.where(event)}: expected the {peer} to close the "
               f"connection with code {event.close['code']}, but it {how}.")
    return _made(scrub, "mismatch", message, expected=event.close, expected_at=cassette.where(event),
                 received=live, matcher="close")


def unreadable(error: CassetteError) -> Divergence:
    """A line of a cassette read as it plays (harness.format.event_log) that turned out bad."""
    return _made(_same, "error", f"codex-cassette: {error.headline}", expected_at=f"{error.path}:{error.line}",
                 excerpt=error.excerpt)


def error_response(live_id: Any, divergence: Divergence) -> dict[str, Any]:
    """The JSON-RPC error that answers a request the divergence leaves unanswered; built
    from the bounded Divergence, so it is bounded too."""
    return {"id": live_id, "error": {
        "code": DIVERGENCE_CODE, "message": divergence.message,
        "data": {"expected": divergence.expected, "expectedAt": divergence.expected_at}}}
