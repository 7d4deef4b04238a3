"""Lining up two recorded values before they are diffed, and paths a user chose to ignore.

An array of objects that name themselves (`model/list`'s catalogue, each entry with an
`id`) is compared entry by entry by that name, not by index: one entry more at the top
would otherwise shift every later one and report each of their fields as changed. Such
an array becomes a mapping keyed ``[id=gpt-5.5]`` on both sides, so a diff names the
entry; a change of order among the entries both sides have is one change of its own.

A boolean that is true in exactly one entry on each side (`isDefault` of the catalogue)
marks that entry: it is compared as which entry it marks, ``[*].isDefault`` ->
``[id=gpt-6.2-sol]``, so a new default is one change named by id, not one entry's
`true -> false` and another's value inside a new entry.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable

# Keys that identify an object inside an array, in order of preference.
IDENTITY_KEYS = ("id", "slug", "name")
ORDER = "(order)"
MARK = "[*]."  # a key `[*].isDefault` holds the name of the one entry whose isDefault is true


def is_mark(part: Any) -> bool:
    return isinstance(part, str) and part.startswith(MARK)


def marks(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Boolean fields of every entry on both sides that are true in exactly one entry of each."""
    if len(old) < 2 or len(new) < 2:
        return []
    items = old + new
    flags = set.intersection(*({k for k, v in x.items() if isinstance(v, bool)} for x in items))
    return sorted(f for f in flags if sum(x[f] for x in old) == 1 and sum(x[f] for x in new) == 1)


def identity_key(old: list[Any], new: list[Any]) -> str | None:
    """The first key every object of both arrays has, with values unique on each side."""
    items = old + new
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for key in IDENTITY_KEYS:
        if not all(key in x and isinstance(x[key], (str, int)) and not isinstance(x[key], bool) for x in items):
            continue
        if len({x[key] for x in old}) == len(old) and len({x[key] for x in new}) == len(new):
            return key
    return None


def align(old: Any, new: Any) -> tuple[Any, Any]:
    """Both values with arrays of self-naming objects turned into mappings by that name."""
    if isinstance(old, dict) and isinstance(new, dict):
        o, n = dict(old), dict(new)
        for k in old.keys() & new.keys():
            o[k], n[k] = align(old[k], new[k])
        return o, n
    if isinstance(old, list) and isinstance(new, list):
        key = identity_key(old, new)
        if key is None:
            pairs = [align(a, b) for a, b in zip(old, new)]
            return ([a for a, _ in pairs] + old[len(pairs):], [b for _, b in pairs] + new[len(pairs):])
        flags = marks(old, new)
        o = {f"[{key}={x[key]}]": {k: v for k, v in x.items() if k not in flags} for x in old}
        n = {f"[{key}={x[key]}]": {k: v for k, v in x.items() if k not in flags} for x in new}
        for k in o.keys() & n.keys():
            o[k], n[k] = align(o[k], n[k])
        common_old = [k for k in o if k in n]
        common_new = [k for k in n if k in o]
        if common_old != common_new:
            o[ORDER], n[ORDER] = common_old, common_new
        for flag in flags:
            o[MARK + flag] = next(f"[{key}={x[key]}]" for x in old if x[flag])
            n[MARK + flag] = next(f"[{key}={x[key]}]" for x in new if x[flag])
        return o, n
    return old, new


def join_path(parts: Iterable[Any]) -> str:
    """`result.data[id=gpt-5.5].upgrade`, `params.items[0]`; an aligned key is its own bracket."""
    text = ""
    for p in parts:
        if isinstance(p, int):
            text += f"[{p}]"
        elif isinstance(p, str) and p.startswith("[") and p.endswith("]"):
            text += p
        elif is_mark(p):
            text += p
        elif p == ORDER:
            text += " (order)"
        else:
            text += f".{p}" if text else str(p)
    return text or "(whole message)"


@dataclass
class Ignore:
    """Paths (`--ignore`) whose changes are not drift: shell-style patterns over the dotted
    path of a field (`result.data`, `params.item.moderation`, `*.cliVersion`); a pattern
    also covers everything below what it names."""

    patterns: tuple[str, ...] = ()

    def __call__(self, path: str) -> bool:
        for pat in self.patterns:
            if fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(path, pat + ".*") \
                    or fnmatch.fnmatchcase(path, pat + "[*") or fnmatch.fnmatchcase(path, pat + " (order)"):
                return True
        return False
