"""A fault as an ordinary cassette: the recorded events with fault events in format v1.

The header's ``meta.fault`` says which fault it is and where it came from, so a
variant written out (``codex-cassette faults --write-variants``) replays alone with
any fake (``codex-cassette replay``) and says what it is.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.faults.catalogue import ERROR_SHAPES, Fault, session_end
from harness.format.cassette import Cassette, Event
from harness.format.writer import dump_cassette

# Names no codex has (nor will: they say where they come from), in codex's own style.
UNKNOWN_NOTIFICATION = "codexCassette/probe/updated"
UNKNOWN_REQUEST = "codexCassette/probe/requestDecision"
METHOD_NOT_FOUND = -32601
# A log line on stdout, the kind of non-JSON a misconfigured binary prints.
GARBAGE = "2026-01-01T00:00:00.000Z  WARN codex_cassette::fault: this line is not JSON"


@dataclass(frozen=True)
class FaultTiming:
    """How long the timed faults last, from the deadline a client gets to end.

    A stall outlasts the deadline (to the client, the server has gone quiet for good);
    a delay does not (a late answer must still be taken), and the runner adds it to
    that variant's deadline. A crash that closes stdout first dies ``close_gap`` later.
    """

    deadline: float = 10.0
    close_gap: float = 0.2

    @property
    def stall(self) -> float:
        return 3 * self.deadline

    @property
    def delay(self) -> float:
        return self.deadline / 4

    @property
    def fake_timeout(self) -> float:
        """How long the fake waits for the client: longer than a stall, so that the fake
        never ends a hang-up or a stall by itself before the deadline says what happened."""
        return self.stall + self.deadline

    def deadline_for(self, fault: Fault | None) -> float:
        return self.deadline + (self.delay if fault is not None and fault.kind == "delay" else 0.0)


def _server(t: float, **payload: Any) -> Event:
    return Event(side="server", t=t, **payload)


def _thread_params(events: list[Event], position: int) -> dict[str, Any]:
    """The thread the session is in by then, so an injected message looks like codex's."""
    for event in reversed(events[:position]):
        if isinstance(event.msg, dict):
            for body in (event.msg.get("params"), event.msg.get("result")):
                if isinstance(body, dict) and isinstance(body.get("threadId"), str):
                    return {"threadId": body["threadId"]}
                thread = body.get("thread") if isinstance(body, dict) else None
                if isinstance(thread, dict) and isinstance(thread.get("id"), str):
                    return {"threadId": thread["id"]}
    return {}


def _fresh_request_id(events: list[Event]) -> int:
    used = [e.msg["id"] for e in events if e.side == "server" and isinstance(e.msg, dict)
            and "method" in e.msg and isinstance(e.msg.get("id"), int)]
    return max(used, default=-1) + 1


def build_variant(cassette: Cassette, fault: Fault, timing: FaultTiming | None = None) -> Cassette:
    """The cassette with ``fault`` in it; the original is left as it was."""
    timing = timing or FaultTiming()
    events = [dataclasses.replace(e) for e in cassette.events]
    p = fault.position
    t = events[p - 1].t if p > 0 else 0.0
    kind = fault.kind
    if kind == "crash":
        dying = [_server(t, exit=1)]
        if fault.variant == "closed":
            dying = [_server(t, fault={"close_stdout": True}), _server(t, fault={"delay": timing.close_gap})] + dying
        out = events[:p] + dying
    elif kind == "hangup":
        # Stdout closed, the process alive and reading: the engine goes on matching the client.
        out = events[:p] + [_server(t, fault={"close_stdout": True})] + events[p:]
    elif kind in ("stall", "delay"):
        # A delay fault reads nothing meanwhile, so whatever the client says then is matched
        # afterwards as recorded (a stall fault would call it a divergence and end the fake).
        seconds = timing.stall if kind == "stall" else timing.delay
        out = events[:p] + [_server(t, fault={"delay": seconds})] + events[p:]
    elif kind == "garbage":
        out = events[:p] + [_server(t, fault={"garbage": GARBAGE})] + events[p:]
    elif kind == "unknown-notification":
        msg = {"method": UNKNOWN_NOTIFICATION, "params": {**_thread_params(events, p), "probe": 1}}
        out = events[:p] + [_server(t, msg=msg)] + events[p:]
    elif kind == "unknown-request":
        rid = _fresh_request_id(events)
        ask = _server(t, msg={"id": rid, "method": UNKNOWN_REQUEST, "params": _thread_params(events, p)})
        answer = Event(side="client", t=t, msg={"id": rid, "error": {"code": METHOD_NOT_FOUND}},
                       match={"mode": "subset"})
        out = events[:p] + [ask, answer] + events[p:]
    elif kind == "error":
        failed = events[p].with_msg({"id": events[p].msg["id"], "error": dict(ERROR_SHAPES[fault.variant])})
        # What the request would have set going does not happen: the server says nothing
        # more until the client speaks again.
        resume = p + 1
        end = session_end(cassette)
        while resume < end and events[resume].side == "server":
            resume += 1
        out = events[:p] + [failed] + events[resume:]
    elif kind == "drop":
        out = events[:p] + events[p + 1:]
    elif kind == "duplicate":
        out = events[:p + 1] + [dataclasses.replace(events[p])] + events[p + 1:]
    elif kind == "novel-value":
        out = events[:p] + [events[p].with_msg(fault.detail.apply(events[p].msg))] + events[p + 1:]
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    # Not a recording of the live scenario any more: without `live`, drift re-recording leaves it alone.
    meta = {k: v for k, v in cassette.meta.items() if k != "live"}
    meta.update(complete=True, fault={"id": fault.id, "kind": kind, "point": fault.point, "what": fault.describe(),
                                      "source": str(cassette.path) if cassette.path else None})
    return Cassette(path=None, meta=meta, events=out)


def variant_filename(cassette: Cassette, fault: Fault) -> str:
    """`text_turn.crash-23.jsonl`, `text_turn.crash-23.closed.jsonl`: the fault id with no `@` or `:`
    (a name with `@` reads as an e-mail address to redaction rules, in logs that quote it)."""
    stem = Path(str(cassette.path or "cassette")).name
    for suffix in (".jsonl", ".yaml", ".yml"):
        stem = stem.removesuffix(suffix)
    name = f"{fault.kind}-{fault.point}{fault.suffix.replace('~', '-')}"
    if fault.variant:
        name += f".{fault.variant}"
    return f"{stem}.{re.sub(r'[^A-Za-z0-9_.=+-]', '_', name)}.jsonl"


def write_variant(cassette: Cassette, fault: Fault, directory: str | Path,
                  timing: FaultTiming | None = None, name: str | None = None) -> Path:
    """Write the variant into ``directory`` (atomically, as every cassette is written)."""
    variant = build_variant(cassette, fault, timing)
    return dump_cassette(variant, Path(directory) / (name or variant_filename(cassette, fault)))
