"""What the engine hears: each peer line parsed once and scrubbed with the cassette's rules.

The recorder wrote markers where the peer said secrets; a live peer says the secrets
themselves. The engine scrubs every live line with the rules the cassette's header
names (``Redactor.from_meta``, each named variable's value from this environment)
before it matches, so ``{{redacted:api_key}}`` matches the live key, and the same for
every fake: in-process, subprocess and fork server all run this engine. Whatever a
report or an error reply says passes ``for_report`` too: those rules and every
built-in, with this environment's secret-looking values, once harness.format.secret_gate
says a value may hold anything they could find (a report of a few paths loads none of them).

Markers bind as placeholders do: the live value a peer line redacts to a marker is the
marker's value (in memory, in the redactor's ``MarkerTable``: never in a report, a log or a
file), and ``restore`` puts it back into what the replayed side says, so the client's own
secret comes back to it as it did live. The n-th distinct secret of a kind the live peer
says takes the marker the recording gave the n-th the recorded peer said (``KIND``,
``KIND#2``, ...: ``planned``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from harness.format.secret_gate import may_hold_secret, secret_env_values
from harness.format.wire import Line, encode

_MARKER = re.compile(r"\{\{redacted:([^{}#]*)(?:#[0-9]+)?\}\}")

if TYPE_CHECKING:
    from harness.format.redact import Redactor


@dataclass
class Heard:
    """A peer line as the engine sees it (shaped like ``Line``: ``data`` and ``parse()``)."""

    data: bytes
    msg: Any
    is_json: bool
    newline: bool = True

    def parse(self) -> tuple[Any, bool]:
        return self.msg, self.is_json


class Intake:
    """``peer_said``: what the recorded peer said (its messages and raw lines, in order), read
    only when the live peer says a secret."""

    def __init__(self, meta: Mapping[str, Any], env: Mapping[str, str], where: str,
                 peer_said: Callable[[], Iterable[Any]] = tuple) -> None:
        self._meta, self._env, self._where = meta, env, where
        self._peer_said = peer_said
        self._plan: dict[str, list[str]] | None = None
        self.redactor: Redactor | None = None  # the header names no rules: nothing to scrub, nothing to import
        if meta.get("redaction_rules") is not None:
            from harness.format.redact import Redactor

            self.redactor = Redactor.from_meta(meta, env, where)
            if self.redactor is not None:
                self.redactor.markers.planned = self._planned
        self._raw = self.redactor.line_scrubber() if self.redactor is not None else None
        self._reports: Redactor | None = None  # built on the first report that may hold a secret
        self._literals: tuple[str, ...] | None = None

    def hear(self, line: Line) -> Heard:
        msg, is_json = line.parse()
        if self.redactor is None:
            return Heard(line.data, msg, is_json, line.newline)
        if not is_json:
            assert self._raw is not None
            return Heard(self._raw.scrub_bytes(line.data), None, False, line.newline)
        kept = _keep_id(msg, self.redactor.scrub(msg, line.data.decode("utf-8", "replace")))
        return Heard(line.data if kept is msg else encode(kept).rstrip(b"\n"), kept, True, line.newline)

    def restore(self, msg: Any) -> Any:
        """``msg`` (what the replayed side is about to say) with each marker the live peer bound
        replaced by its live value; a whole string that is one marker takes the value as it was
        (a number stays a number)."""
        bound = self.redactor.markers.bound if self.redactor is not None else None
        if not bound:
            return msg

        def text(s: str) -> str:
            return _MARKER.sub(lambda m: str(bound.get(m.group(0), m.group(0))), s) if "{{redacted:" in s else s
        return _restore(msg, text, lambda s: bound[s] if s in bound else text(s))

    def _planned(self, kind: str) -> list[str]:
        if self._plan is None:
            self._plan = {}
            seen: set[str] = set()
            for said in self._peer_said():
                text = said.decode("utf-8", "replace") if isinstance(said, bytes) else encode(said).decode()
                for m in _MARKER.finditer(text):
                    if m.group(0) not in seen:
                        seen.add(m.group(0))
                        self._plan.setdefault(m.group(1), []).append(m.group(0))
        return self._plan.get(kind, [])

    def for_report(self, value: Any) -> Any:
        """``value`` (a message, text or anything JSON) as a report or error reply may say it."""
        if self._reports is None:
            if self._meta.get("redaction_rules") is None and not may_hold_secret(value, self._env_literals()):
                return value  # nothing any rule could find (a few paths, a status): no rules to load
            from harness.format.redact import Redactor

            self._reports = Redactor.widened(self._meta, self._env, self._where)
        if isinstance(value, str):
            return self._reports.scrub_raw(value)
        return _keep_id(value, self._reports.scrub(value))

    def _env_literals(self) -> tuple[str, ...]:
        if self._literals is None:
            self._literals = tuple(v for _, v in secret_env_values(self._env))
        return self._literals


def _restore(obj: Any, text: Callable[[str], str], value: Callable[[str], Any]) -> Any:
    if isinstance(obj, dict):
        return {text(k): _restore(v, text, value) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v, text, value) for v in obj]
    return value(obj) if isinstance(obj, str) else obj


def _keep_id(live: Any, scrubbed: Any) -> Any:
    # The id is the peer's handle on its request: a reply must carry it as it came.
    if scrubbed is not live and isinstance(live, dict) and "id" in live and scrubbed.get("id") != live["id"]:
        return {**scrubbed, "id": live["id"]}
    return scrubbed
