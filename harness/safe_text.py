"""Text for people: whatever a report, an error or `show` prints is escaped and bounded.

A cassette or a live client can put anything in a string, escape sequences that
retitle or clear a terminal among them, and a diverging value can be 50 MB. So
everything printed for a person passes through ``for_people``: control characters
(and the invisible reordering marks of bidirectional text) become visible escapes,
and past a cap the text ends with "... N bytes more".
"""

from __future__ import annotations

import functools
import re
from typing import Any

CAP = 64 * 1024  # bytes of UTF-8 a report text may take


@functools.cache
def _unsafe() -> re.Pattern[str]:
    """C0 controls but tab and newline (handled by `keep`), DEL, C1 controls, bidi overrides
    and isolates, and lone surrogates (which no terminal encoding can carry). Compiled on
    first use: a fake that plays a session through prints nothing for people."""
    return re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep: str = "\n\t") -> str:
    """``text`` with every control character but those in ``keep`` written as an escape."""
    unsafe = _unsafe()
    if not unsafe.search(text):
        return text
    return unsafe.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)


def quoted(value: Any, limit: int = 60) -> str:
    """A value quoted in an error message: its repr, cut short (it came from a file, any size)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def clipped(text: str, limit: int = CAP) -> str:
    """At most ``limit`` bytes of ``text`` (UTF-8), then how many bytes were left out."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes: surely short enough
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")  # never half a character
    return f"{kept}... {len(data) - len(kept.encode('utf-8', 'surrogatepass'))} bytes more"


def for_people(text: str, limit: int = CAP, keep: str = "\n\t") -> str:
    """Escaped for a terminal, then capped."""
    return clipped(printable(text, keep), limit)


EXCERPT_RADIUS = 40  # characters of a line shown on each side of the column an error points at


def pointed(text: str, index: int, radius: int = EXCERPT_RADIUS) -> str:
    """Two lines for a person: ``text`` around ``index`` (escaped, ``radius`` characters each
    side at most, "..." where it was cut) and a caret under the character at ``index``."""
    index = max(0, min(index, len(text)))
    start, end = max(0, index - radius), min(len(text), index + radius)
    head = ("..." if start else "") + printable(text[start:index], keep="")
    tail = printable(text[index:end], keep="") + ("..." if end < len(text) else "")
    import unicodedata  # an error path: a caret under wide (CJK) characters counts two columns each

    width = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in head)
    return f"    {head}{tail}\n    {' ' * width}^"
