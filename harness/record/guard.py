"""The provider guard: an offline recording stops the moment codex names another model provider."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROVIDER_RE = re.compile(rb'"modelProvider"\s*:\s*"([^"]*)"')


@dataclass
class ProviderGuard:
    """Stops a recording the moment codex says it talks to another model provider.

    An invalid config.toml makes codex fall back, silently, to the real OpenAI
    provider: recording offline against the mock must never go on from there
    (the next turn would try the internet). thread/start's and thread/resume's
    answers name the provider; the guard reads server bytes before the client
    gets them, line by line, so what came before the offending line still goes out.
    """

    required: str
    violation: str | None = None
    _tail: bytes = b""  # the unfinished last line of what was checked so far

    def safe_prefix(self, data: bytes) -> int:
        """How many bytes of ``data`` may be forwarded: all of them, or those before the
        line naming another provider (then ``violation`` says which)."""
        seen = self._tail + data
        self._tail = seen[seen.rfind(b"\n") + 1:][-(1 << 20):]
        if b'"modelProvider"' not in seen:
            return len(data)
        for found in _PROVIDER_RE.finditer(seen):
            name = found.group(1).decode("utf-8", "replace")
            if name != self.required:
                self.violation = (f"codex reports model provider {name!r}, not {self.required!r}: its config "
                                  "was not taken (an invalid config.toml makes codex fall back to the real "
                                  "OpenAI provider), so it was stopped before it could reach the internet.")
                line_start = seen.rfind(b"\n", 0, found.start()) + 1
                return max(0, line_start - (len(seen) - len(data)))
        return len(data)

    def check(self, data: bytes) -> bool:
        return self.safe_prefix(data) == len(data) and self.violation is None
