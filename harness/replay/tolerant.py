"""Tolerant play, for re-recording a cassette against a live codex that may have changed.

A strict replay stops at the first divergence; re-recording notes each one
(``report.notes``: changed, unexpected, missing) and plays on, and matches the
unprompted start-up notifications (``floating``) wherever they arrive. Kept apart
from the engine's strict path, which a client under test always takes.
"""

from __future__ import annotations

from typing import Any

from harness.format.cassette import Cassette, Event
from harness.format.wire import Kind, classify, encode
from harness.replay import divergence
from harness.replay.channel import Channel
from harness.replay.divergence import DIVERGENCE_CODE
from harness.replay.intake import Heard, Intake
from harness.replay.matching import MatchContext, compare, diff_text, distance, strip_transport
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport, report_text


class TolerantPlay:
    """The tolerant half of ReplayEngine (a mixin: it works on the engine's own state)."""

    cassette: Cassette
    channel: Channel
    options: ReplayOptions
    report: ReplayReport
    ctx: MatchContext
    _early: set[int]
    _floating: set[int]
    _intake: Intake

    def _accept(self, pos: int, live: dict[str, Any]) -> None:
        raise NotImplementedError

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _floating_pending(self) -> list[int]:
        return sorted(p for p in self._floating if p not in self._early)

    def _floating_left(self) -> None:
        """Floating events that never came: noted (tolerant) or left unplayed."""
        left = self._floating_pending()
        if self.options.tolerant:
            self._note_missing(left, "never sent")
        else:
            self.report.unplayed.extend({"at": self.cassette.where(self.cassette.events[p]),
                                         "event": self.cassette.events[p].describe()} for p in left)

    def _note(self, kind: str, event: Event | None, received: Any = None, diff: str = "",
              reason: str = "") -> None:
        note: dict[str, Any] = {"kind": kind, "at": self.cassette.where(event) if event else None,
                                "expected": event.describe() if event else None}
        if received is not None:
            note["received"] = divergence.short(self._intake.for_report(received))
        if diff:
            note["diff"] = report_text(self._intake.for_report(diff))
        if reason:
            note["reason"] = report_text(reason)
        self.report.notes.append(note)

    def _note_missing(self, positions: list[int], reason: str) -> None:
        for p in positions:
            self._note("missing", self.cassette.events[p], reason=reason)
            self._early.add(p)  # dealt with: neither unplayed nor matched later

    async def _tolerate(self, line: Heard, waiting: list[int]) -> int | None:
        """A peer message that matches nothing: pair it with the waiting message of the same
        kind, method and id (the nearest one) as changed, or note it as unexpected and skip it."""
        events = self.cassette.events
        live, is_json = line.parse()
        if not (is_json and isinstance(live, dict)):
            self._note("unexpected", None, line.data.decode("utf-8", "replace"))
            return None
        live = strip_transport(live)
        slot = [p for p in waiting if events[p].msg is not None
                and compare(events[p], live, self.ctx, order=("kind", "method", "id")) is None]
        if slot:
            hit = min(slot, key=lambda p: distance(events[p], live, self.ctx))
            self._note("changed", events[hit], live, diff_text(events[hit], live, self.ctx))
            self._accept(hit, live)
            return hit
        self._note("unexpected", None, live)
        if classify(live) is Kind.REQUEST:
            # Unanswered, the peer would wait on it (an approval) until the turn stalls.
            self._send(encode({"id": live["id"], "error": {
                "code": DIVERGENCE_CODE, "message": "codex-cassette: this request is not in the cassette"}}))
            await self.channel.drain()
        return None
