"""Placeholders: ``{{cwd}}``, ``{{home}}``, ``{{codex_home}}`` and user-named ones.

At record time a known value is replaced by its marker in every string, inside
longer paths too. At replay the marker binds to whatever the live peer sends
the first time it appears, and that value is substituted into everything the
replayed side says afterwards. Markers ``{{redacted:KIND}}`` belong to
harness.format.redact and are never bound here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

MARKER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        pairs = sorted(((v, n) for n, v in self.values.items() if v), key=lambda p: -len(p[0]))
        if not pairs:
            return obj

        def sub(s: str) -> str:
            for value, name in pairs:
                if value in s:
                    s = s.replace(value, "{{" + name + "}}")
            return s
        return map_strings(obj, sub)

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

    def bind_from(self, template: str, live: str) -> bool:
        """Bind the unbound markers of ``template`` from ``live``.

        Returns False when the live string cannot have come from the template.
        Bound markers must reproduce their value exactly.
        """
        pattern: list[str] = []
        names: list[str] = []
        pos = 0
        for m in MARKER.finditer(template):
            pattern.append(re.escape(template[pos:m.start()]))
            name = m.group(1)
            if name in self.values:
                pattern.append(re.escape(self.values[name]))
            elif name in names:
                pattern.append(f"(?P={name})")
            else:
                names.append(name)
                pattern.append(f"(?P<{name}>.+?)")
            pos = m.end()
        pattern.append(re.escape(template[pos:]))
        found = re.fullmatch("".join(pattern), live, flags=re.S)
        if not found:
            return False
        for name in names:
            self.values[name] = found.group(name)
        return True

    def bind_walk(self, template: Any, live: Any) -> None:
        """Bind markers wherever the recorded structure lines up with the live one."""
        if isinstance(template, str):
            if isinstance(live, str) and "{{" in template and not template.startswith("{{redacted:"):
                self.bind_from(template, live)
        elif isinstance(template, dict) and isinstance(live, dict):
            for key, value in template.items():
                if key in live:
                    self.bind_walk(value, live[key])
        elif isinstance(template, list) and isinstance(live, list):
            for a, b in zip(template, live):
                self.bind_walk(a, b)
