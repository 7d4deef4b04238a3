"""Which faults apply where in a cassette: derived mechanically, event by event.

A fault sits at a *position* (an index into the cassette's events): an inserted
fault goes just before ``events[position]``, a changed or dropped message is
``events[position]``. Its *point* is a cassette line: the line of the last event
played before an inserted fault, or of the message a fault changes. ``crash@23``
is a crash right after line 23.

The session a fault may touch ends where the client hangs up (its ``eof``); the
server's own closing events after that are the recording's ending, not a point.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from harness.errors import UsageError
from harness.format.cassette import Cassette, Event
from harness.format.wire import Kind, classify

KINDS = ("crash", "hangup", "stall", "error", "drop", "duplicate", "garbage",
         "unknown-notification", "unknown-request", "novel-value", "delay")
INSERTED = {"crash", "hangup", "stall", "garbage", "unknown-notification", "unknown-request", "delay"}

# The JSON-RPC errors codex answers with (codex-rs app-server, error_code.rs): name -> error object.
ERROR_SHAPES: dict[str, dict[str, Any]] = {
    "invalid-request": {"code": -32600, "message": "Invalid request"},
    "internal": {"code": -32603, "message": "Internal error"},
    "overloaded": {"code": -32001, "message": "Server overloaded; retry later."},
    "draining": {"code": -32600, "message": "Server is draining; retry after reconnecting",
                 "data": {"reason": "serverShuttingDown"}},
}


@dataclass(frozen=True)
class Fault:
    """One fault at one point of one cassette."""

    kind: str
    position: int
    point: int
    variant: str = ""   # which fault of this kind at this point: "closed", "overloaded", a JSON path
    about: str = ""     # the event the fault follows or changes, described
    detail: Any = None  # what building the variant needs (a novelty.Novelty for novel-value)
    suffix: str = ""    # keeps ids unique where several events share a line (YAML scenarios)

    @property
    def id(self) -> str:
        return f"{self.kind}@{self.point}{self.suffix}" + (f":{self.variant}" if self.variant else "")

    @property
    def inserted(self) -> bool:
        return self.kind in INSERTED

    def describe(self) -> str:
        """`crash at cassette line 23 (after server item/agentMessage/delta)`,
        `drop of cassette line 29 (server turn/completed)`."""
        if self.inserted:
            name = "crash (stdout closed first)" if self.variant == "closed" else _NAMES[self.kind]
            return f"{name} at cassette line {self.point}" + (f" (after {self.about})" if self.about else "")
        name = {"error": f"error response ({self.variant}) for", "drop": "drop of", "duplicate": "duplicate of",
                "novel-value": f"novel value {self.variant} in"}[self.kind]
        return f"{name} cassette line {self.point}" + (f" ({self.about})" if self.about else "")


_NAMES = {"crash": "crash", "hangup": "hang-up", "stall": "stall", "garbage": "garbage line",
          "unknown-notification": "unknown notification", "unknown-request": "unknown server request",
          "delay": "delay"}


def server_message(event: Event) -> bool:
    return event.side == "server" and isinstance(event.msg, dict)


def message_kind(event: Event) -> Kind | None:
    return classify(event.msg) if server_message(event) else None


def session_end(cassette: Cassette) -> int:
    """The position of the client's hang-up, else the end before the server's closing events."""
    events = cassette.events
    for n, event in enumerate(events):
        if event.side == "client" and event.eof:
            return n
    end = len(events)
    while end and events[end - 1].side == "server" and (events[end - 1].eof or events[end - 1].exit is not None):
        end -= 1
    return end


def parse_kinds(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """`all`, `crash,drop` or a list of names: the kinds, in catalogue order."""
    if spec is None:
        return ()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    if any(n == "all" for n in names):
        return KINDS
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise UsageError(f"unknown fault kind(s) {', '.join(map(repr, unknown))}; the kinds are all, "
                         + ", ".join(KINDS))
    return tuple(k for k in KINDS if k in names)


class _Points:
    """The positions each kind applies to, read off the events once."""

    def __init__(self, cassette: Cassette) -> None:
        self.events = cassette.events
        self.end = session_end(cassette)
        kinds = [message_kind(e) for e in self.events]
        self.kinds = kinds
        first_answer = next((n for n, k in enumerate(kinds) if k is Kind.RESPONSE), None)
        # A server request before the client's handshake was answered would be codex breaking
        # its own protocol; after it, any request may come.
        self.requests_from = (first_answer + 1) if first_answer is not None else self.end + 1

    def server_next(self, p: int) -> bool:
        return p < self.end and self.kinds[p] is not None

    def server_before(self, p: int) -> bool:
        return p > 0 and self.kinds[p - 1] is not None

    def inserted(self, kind: str, p: int) -> bool:
        if kind in ("crash", "hangup"):
            # Dying just after the server spoke, or just before it would have.
            return self.server_before(p) or self.server_next(p)
        if kind in ("stall", "garbage", "unknown-notification"):
            return self.server_next(p)
        if kind == "unknown-request":
            return self.server_next(p) and p >= self.requests_from
        if kind == "delay":
            # Where the client waits on the server: an answer, or what follows its own message.
            return self.server_next(p) and (self.kinds[p] is Kind.RESPONSE or self.events[p - 1].side == "client")
        return False

    def changed(self, kind: str, p: int) -> bool:
        k = self.kinds[p]
        if kind == "error":
            return k is Kind.RESPONSE and "result" in self.events[p].msg
        if kind == "drop":
            return k is Kind.NOTIFICATION
        if kind == "duplicate":
            return k in (Kind.NOTIFICATION, Kind.RESPONSE)
        return False


def catalogue(cassette: Cassette, kinds: Sequence[str] = KINDS, novelties: Any = None) -> list[Fault]:
    """Every fault of these kinds that applies to this cassette, in event order.

    ``novelties`` (a harness.faults.novelty source: ``plan(cassette)``) says which novel
    values the messages can carry; without one, novel-value uses the schema-free ones.
    """
    plan: dict[int, list[Any]] = {}
    if "novel-value" in kinds:
        if novelties is None:
            from harness.faults.novelty import SchemaFree

            novelties = SchemaFree()
        plan = novelties.plan(cassette)
    points = _Points(cassette)
    events = cassette.events
    found: list[Fault] = []
    for p in range(points.end + 1):
        if p > 0:
            before = events[p - 1]
            for kind in kinds:
                if kind in INSERTED and points.inserted(kind, p):
                    found.extend(_inserted(kind, p, before))
        if p < points.end and points.kinds[p] is not None:
            event = events[p]
            for kind in kinds:
                if kind in INSERTED:
                    continue
                if kind == "novel-value":
                    found.extend(Fault(kind, p, event.line, n.tag, event.describe(), n)
                                 for n in plan.get(p, ()))
                elif points.changed(kind, p):
                    variants = ERROR_SHAPES if kind == "error" else [""]
                    found.extend(Fault(kind, p, event.line, v, event.describe()) for v in variants)
    return _unique(found)


def _inserted(kind: str, p: int, before: Event) -> list[Fault]:
    about = before.describe()
    if kind == "crash":
        return [Fault(kind, p, before.line, "", about), Fault(kind, p, before.line, "closed", about)]
    return [Fault(kind, p, before.line, "", about)]


def _unique(faults: list[Fault]) -> list[Fault]:
    """Several events on one line (a YAML step and its reply) give the later ones ~2, ~3 ..."""
    seen: dict[str, int] = {}
    out = []
    for fault in faults:
        n = seen[fault.id] = seen.get(fault.id, 0) + 1
        if n > 1:
            fault = Fault(fault.kind, fault.position, fault.point, fault.variant, fault.about, fault.detail,
                          suffix=f"~{n}")
        out.append(fault)
    return out


def sample(faults: list[Fault], limit: int | None, seed: int | str = 0, salt: str = "") -> list[Fault]:
    """At most ``limit`` faults, drawn evenly across kinds; the same seed and salt always draw the
    same ones (xdist workers collect identically). The result keeps catalogue order."""
    if limit is None or limit >= len(faults):
        return list(faults)
    rng = random.Random(f"{seed}:{salt}")
    by_kind: dict[str, list[Fault]] = {}
    for fault in faults:
        by_kind.setdefault(fault.kind, []).append(fault)
    for group in by_kind.values():
        rng.shuffle(group)
    order = sorted(by_kind, key=KINDS.index)
    rng.shuffle(order)
    chosen: set[str] = set()
    while len(chosen) < limit:
        for kind in order:
            if by_kind[kind] and len(chosen) < limit:
                chosen.add(by_kind[kind].pop().id)
    return [f for f in faults if f.id in chosen]
