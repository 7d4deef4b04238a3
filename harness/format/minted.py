"""Which values in a cassette codex (or a client) mints afresh on every run.

A re-record compares events by their meaning (harness.format.stable): the same
method, params and result once minted values are set aside. Two kinds of minted
value:

- *ids* (UUIDs anywhere in a string, the value under an id-named key such as ``id``,
  ``threadId``, ``installationId``): renamed consistently from the new recording to
  the old one, so they still have to line up after renaming;
- *volatile* values (times under time-named keys such as ``createdAt``,
  ``emittedAtMs``, ``durationMs``; token counts such as ``totalTokens``, which vary
  with the length of paths codex saw; dates inside strings such as a rollout file
  name; anything a user names): never compared.

``MintedValues`` is the registry: the built-in rules plus a user's own volatile
keys or dotted paths (``serverName``, ``params.thread.preview``, ``result.data.*.id``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# A date or a date and time inside a string: a rollout file's name and folders.
STAMP = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}[:-]\d{2}[:-]\d{2}(?:\.\d+)?Z?)?|\d{4}/\d{2}/\d{2}"
_MINTED_TEXT = re.compile(f"({UUID})|({STAMP})")
_UUID_TEXT = re.compile(UUID)
ID_MASK = "\x00id"
VOLATILE_MASK = "\x00v"
STAMP_MASK = "\x00d"


def _id_key(key: str) -> bool:
    return key == "id" or key.endswith("Id") or key.endswith("_id")


def _volatile_key(key: str) -> bool:
    # Times (createdAt, emittedAtMs, durationMs) and token counts (totalTokens).
    return key.endswith(("At", "AtMs", "Ms", "Tokens"))


@dataclass(frozen=True)
class MintedValues:
    """The rules that say which values are minted; ``volatile`` adds a user's own:
    a key name (anywhere) or a dotted path from the message (``*`` for any key or index)."""

    volatile: tuple[str, ...] = ()
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _paths: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(v for v in self.volatile if "." not in v))
        object.__setattr__(self, "_paths", tuple(v for v in self.volatile if "." in v))

    def extended(self, *volatile: str) -> "MintedValues":
        return MintedValues(tuple(dict.fromkeys((*self.volatile, *volatile))))

    def is_volatile(self, key: str, path: str) -> bool:
        if _volatile_key(key) or key in self._names:
            return True
        return any(fnmatchcase(path, p) for p in self._paths)

    def walk(self, value: Any, on_id: Callable[[Any], Any], on_text: Callable[[str], str],
             on_volatile: Callable[[Any], Any], path: str = "") -> Any:
        """``value`` rebuilt with each minted value replaced by what the callbacks give:
        ``on_id`` for a value under an id-named key, ``on_volatile`` for a volatile one,
        ``on_text`` for every other string."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if self.is_volatile(key, sub):
                    out[key] = item if item is None else on_volatile(item)
                elif _id_key(key) and isinstance(item, (str, int)) and not isinstance(item, bool):
                    out[key] = on_id(item)
                else:
                    out[key] = self.walk(item, on_id, on_text, on_volatile, sub)
            return out
        if isinstance(value, list):
            return [self.walk(item, on_id, on_text, on_volatile, f"{path}.{n}" if path else str(n))
                    for n, item in enumerate(value)]
        if isinstance(value, str):
            return on_text(value)
        return value

    def masked(self, value: Any, *, ids: bool) -> Any:
        """``value`` with volatile values (and, with ``ids``, ids too) replaced by a mask."""
        def text(s: str) -> str:
            if ids:
                return _MINTED_TEXT.sub(lambda m: ID_MASK if m.group(1) else STAMP_MASK, s)
            return _MINTED_TEXT.sub(lambda m: m.group(1) or STAMP_MASK, s)
        return self.walk(value, (lambda v: ID_MASK) if ids else text_or_same(text),
                         text, lambda v: VOLATILE_MASK)

    def id_pairs(self, new: Any, old: Any, out: list[tuple[Any, Any]]) -> None:
        """The (new, old) pairs of minted ids at the same places of two values whose
        id-masked forms are equal: the renaming they suggest."""
        news: list[Any] = []
        olds: list[Any] = []
        self.walk(new, _collect(news), _collect_uuids(news), lambda v: v)
        self.walk(old, _collect(olds), _collect_uuids(olds), lambda v: v)
        if len(news) == len(olds):
            out.extend(zip(news, olds))

    def renamed(self, value: Any, names: dict[Any, Any]) -> Any:
        """``value`` with every minted id that ``names`` knows replaced by its old name."""
        def one(v: Any) -> Any:
            key = (type(v), v)
            if key in names:
                return names[key]
            return rename_text(v, names) if isinstance(v, str) else v
        return self.walk(value, one, lambda s: rename_text(s, names), lambda v: v)


def text_or_same(text: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda v: text(v) if isinstance(v, str) else v


def rename_text(s: str, names: dict[Any, Any]) -> str:
    if "-" not in s:
        return s
    return _UUID_TEXT.sub(lambda m: names.get((str, m.group(0)), m.group(0)), s)


def _collect(into: list[Any]) -> Callable[[Any], Any]:
    def take(v: Any) -> Any:
        into.append(v)
        return v
    return take


def _collect_uuids(into: list[Any]) -> Callable[[str], str]:
    def take(s: str) -> str:
        if "-" in s:
            into.extend(m.group(0) for m in _UUID_TEXT.finditer(s))
        return s
    return take


DEFAULT = MintedValues()


def add_rerecord_flags(parser: Any) -> None:
    """``--fresh`` and ``--volatile`` on a command that records (record, record-live)."""
    parser.add_argument("--fresh", action="store_true",
                        help="write the recording as it is: do not read the cassette already at -o "
                             "(by default its lines whose meaning is unchanged are kept byte for byte)")
    parser.add_argument("--volatile", action="append", default=[], metavar="KEY|PATH",
                        help="a key name (anywhere) or dotted path (params.thread.preview, * for any "
                             "key or index) whose value a re-record does not compare; repeatable")
