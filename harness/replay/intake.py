"""What the engine hears: each peer line parsed once and scrubbed with the cassette's rules.

The recorder wrote markers where the peer said secrets; a live peer says the secrets
themselves. The engine scrubs every live line with the rules the cassette's header
names (``Redactor.from_meta``, each named variable's value from this environment)
before it matches, so ``{{redacted:api_key}}`` matches the live key, and the same for
every fake: in-process, subprocess and fork server all run this engine. Whatever a
report or an error reply says passes ``for_report`` too: those rules and every
built-in, with this environment's secret-looking values, once harness.format.secret_gate
says a value may hold anything they could find (a report of a few paths loads none of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from harness.format.secret_gate import may_hold_secret, secret_env_values
from harness.format.wire import Line, encode

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
    def __init__(self, meta: Mapping[str, Any], env: Mapping[str, str], where: str) -> None:
        self._meta, self._env, self._where = meta, env, where
        self.redactor: Redactor | None = None  # the header names no rules: nothing to scrub, nothing to import
        if meta.get("redaction_rules") is not None:
            from harness.format.redact import Redactor

            self.redactor = Redactor.from_meta(meta, env, where)
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


def _keep_id(live: Any, scrubbed: Any) -> Any:
    # The id is the peer's handle on its request: a reply must carry it as it came.
    if scrubbed is not live and isinstance(live, dict) and "id" in live and scrubbed.get("id") != live["id"]:
        return {**scrubbed, "id": live["id"]}
    return scrubbed
