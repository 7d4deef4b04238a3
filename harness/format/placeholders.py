"""Placeholders: ``{{cwd}}``, ``{{home}}``, ``{{codex_home}}``, ``{{host}}`` and user-named ones.

At record time a known value is replaced by its marker in every string, inside
longer paths too; the host name only where it stands alone (``vm`` in ``root@vm``
or ``vm.example.org``, not in ``nvm``), since short host names are common words. At replay the marker binds to whatever the live peer sends
the first time it appears, and that value is substituted into everything the
replayed side says afterwards. Markers ``{{redacted:KIND}}`` belong to
harness.format.redact and are never bound here.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

MARKER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LONG_VALUE = 1 << 16
HOST = "host"
# Markers whose value is replaced only as a whole name: not next to a letter, digit, _ or -.
WHOLE_NAMES = frozenset({HOST})
_NOT_NAME = r"(?<![A-Za-z0-9_-]){}(?![A-Za-z0-9_-])"
# Host names too generic to stand for this machine.
_TRIVIAL_HOSTS = frozenset({"", "localhost", "localhost.localdomain"})


def host_name() -> str | None:
    """This machine's host name, as codex reads it (``serverName``), unless it is trivial."""
    name = socket.gethostname()
    return None if name in _TRIVIAL_HOSTS or len(name) < 2 else name


def map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    """Apply fn to every string in a JSON value (keys included), returning a copy."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {fn(k): map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [map_strings(v, fn) for v in obj]
    return obj


def has_marker(obj: Any) -> bool:
    if isinstance(obj, str):
        return "{{" in obj and MARKER.search(obj) is not None
    if isinstance(obj, dict):
        return any(has_marker(k) or has_marker(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(has_marker(v) for v in obj)
    return False


def unbound_markers(obj: Any) -> list[str]:
    """Names of the markers still standing in a JSON value (redaction markers excluded)."""
    found: list[str] = []

    def visit(s: str) -> str:
        found.extend(m.group(1) for m in MARKER.finditer(s))
        return s
    map_strings(obj, visit)
    return found


@dataclass
class Placeholders:
    """Name -> value; the same table templatizes at record and binds at replay."""

    values: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.values:
            if not NAME.match(name):
                raise ValueError(f"placeholder name {name!r} must be an identifier")

    # -- record time -------------------------------------------------------

    def templatize(self, obj: Any) -> Any:
        """Replace every known value by its marker (longest values first, so
        a cwd under home becomes {{cwd}} rather than {{home}}/...)."""
        pairs = self._pairs()
        if not pairs:
            return obj

        def sub(s: str) -> str:
            for value, name in pairs:
                if value in s:
                    marker = "{{" + name + "}}"
                    if name in WHOLE_NAMES:
                        s = re.sub(_NOT_NAME.format(re.escape(value)), lambda _: marker, s)
                    else:
                        s = s.replace(value, marker)
            return s
        return map_strings(obj, sub)

    def templatize_bytes(self, data: bytes) -> bytes:
        """``templatize`` for a line that is not UTF-8."""
        for value, name in self._pairs():
            raw, marker = value.encode(), b"{{" + name.encode() + b"}}"
            if raw in data:
                if name in WHOLE_NAMES:
                    data = re.sub(_NOT_NAME.format(re.escape(value)).encode(), lambda _: marker, data)
                else:
                    data = data.replace(raw, marker)
        return data

    def _pairs(self) -> list[tuple[str, str]]:
        return sorted(((v, n) for n, v in self.values.items() if v), key=lambda p: -len(p[0]))

    # -- replay time -------------------------------------------------------

    def substitute(self, obj: Any) -> Any:
        """Fill bound markers in; unbound ones stay as they are."""
        if not self.values:
            return obj

        def sub(s: str) -> str:
            if "{{" not in s:
                return s
            return MARKER.sub(lambda m: self.values.get(m.group(1), m.group(0)), s)
        return map_strings(obj, sub)

    def bind_walk(self, template: Any, live: Any) -> None:
        """Bind markers wherever the recorded structure lines up with the live one."""
        self.values.update(self.bindings_for(template, live))

    def bindings_for(self, template: Any, live: Any) -> dict[str, str]:
        """What ``bind_walk`` would bind, without binding it: comparing a candidate must
        change nothing, or a candidate that fails to match leaves its guess behind."""
        found: dict[str, str] = {}
        known = self.values
        stack = [(template, live)]
        while stack:
            tmpl, got = stack.pop()
            if isinstance(tmpl, str):
                if isinstance(got, str) and "{{" in tmpl and not tmpl.startswith("{{redacted:"):
                    new = _bind_string(tmpl, got, {**known, **found} if found else known)
                    if new:
                        found.update(new)
            elif isinstance(tmpl, dict) and isinstance(got, dict):
                # Reversed onto a stack, so keys bind in the template's order, as before.
                stack.extend((v, got[k]) for k, v in reversed(list(tmpl.items())) if k in got)
            elif isinstance(tmpl, list) and isinstance(got, list):
                stack.extend(reversed(list(zip(tmpl, got))))
        return found

    def with_bindings(self, template: Any, live: Any) -> "Placeholders":
        """This table plus what ``live`` would bind in ``template``: a new table, or this
        one when nothing new would be bound."""
        found = self.bindings_for(template, live)
        return Placeholders({**self.values, **found}) if found else self


def _bind_string(template: str, live: str, known: dict[str, str]) -> dict[str, str] | None:
    """The markers ``live`` binds in ``template`` given the ``known`` values; None when
    the live string cannot have come from the template."""
    pattern: list[str] = []
    names: list[str] = []
    pos = 0
    for m in MARKER.finditer(template):
        pattern.append(re.escape(template[pos:m.start()]))
        name = m.group(1)
        if name in known:
            pattern.append(re.escape(known[name]))
        elif name in names:
            pattern.append(f"(?P={name})")
        else:
            names.append(name)
            pattern.append(f"(?P<{name}>.+?)")
        pos = m.end()
    pattern.append(re.escape(template[pos:]))
    if len(names) > 1 and len(live) > _LONG_VALUE:
        return None  # two lazy groups backtrack quadratically; no path is this long
    found = re.fullmatch("".join(pattern), live, flags=re.S)
    if not found:
        return None
    return {name: found.group(name) for name in names}
