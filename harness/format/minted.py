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
from typing import Any

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# A date or a date and time inside a string: a rollout file's name and folders.
STAMP = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}[:-]\d{2}[:-]\d{2}(?:\.\d+)?Z?)?|\d{4}/\d{2}/\d{2}"
_MINTED_TEXT = re.compile(f"({UUID})|({STAMP})")
_UUID_TEXT = re.compile(UUID)
# A redaction marker's opening (harness.format.redact): a value holding one is compared as
# it is, so an old line with the secret in an id or a time is never kept, nor renamed to.
REDACTED = "{{redacted:"
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

    def is_volatile(self, key: str, path: str) -> bool:
        if _volatile_key(key) or key in self._names:
            return True
        return any(fnmatchcase(path, p) for p in self._paths)

    def signature(self, msg: Any) -> tuple[Any, list[Any]]:
        """``msg`` with every minted value masked, and the ids it masked, in order: two
        messages mean the same when their masked forms are equal and their ids are
        renamings of each other."""
        ids: list[Any] = []
        return self._sig(msg, "", ids), ids

    def _sig(self, value: Any, path: str, ids: list[Any]) -> Any:
        if isinstance(value, dict):
            out = {}
            paths = self._paths
            for key, item in value.items():
                sub = (f"{path}.{key}" if path else str(key)) if paths else ""
                kind = _KINDS.get(key) if isinstance(key, str) else ""
                if kind is None:
                    kind = _KINDS[key] = "v" if _volatile_key(key) else "i" if _id_key(key) else ""
                if isinstance(item, str) and REDACTED in item:
                    out[key] = item  # a redaction marker is never minted: an old secret there differs
                elif kind == "v" or key in self._names or (paths and any(fnmatchcase(sub, p) for p in paths)):
                    out[key] = item if item is None else VOLATILE_MASK
                elif kind == "i" and isinstance(item, (str, int)) and not isinstance(item, bool):
                    ids.append(item)
                    out[key] = ID_MASK
                elif isinstance(item, str):
                    out[key] = _masked_text(item, ids)
                elif isinstance(item, (dict, list)):
                    out[key] = self._sig(item, sub, ids)
                else:
                    out[key] = item
            return out
        if isinstance(value, list):
            if not self._paths:
                return [self._sig(item, "", ids) for item in value]
            return [self._sig(item, f"{path}.{n}" if path else str(n), ids) for n, item in enumerate(value)]
        if isinstance(value, str):
            return _masked_text(value, ids)
        return value

    def renamed(self, value: Any, names: dict[Any, Any], path: str = "") -> Any:
        """``value`` with every minted id that ``names`` knows replaced by its old name."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if self.is_volatile(key, sub) or isinstance(item, str) and REDACTED in item:
                    out[key] = item
                elif _id_key(key) and isinstance(item, (str, int)) and not isinstance(item, bool):
                    out[key] = names.get((type(item), item), item)
                    if out[key] is item and isinstance(item, str):
                        out[key] = rename_text(item, names)
                else:
                    out[key] = self.renamed(item, names, sub)
            return out
        if isinstance(value, list):
            return [self.renamed(item, names, f"{path}.{n}" if path else str(n)) for n, item in enumerate(value)]
        if isinstance(value, str):
            return rename_text(value, names)
        return value


_KINDS: dict[str, str] = {}  # key name -> "v" (volatile), "i" (id) or "": asked once per name


def _masked_text(s: str, ids: list[Any]) -> str:
    if "-" not in s and "/" not in s:  # every UUID and date has one
        return s

    def mask(m: re.Match[str]) -> str:
        if m.group(1):
            ids.append(m.group(1))
            return ID_MASK
        return STAMP_MASK
    return _MINTED_TEXT.sub(mask, s)


def rename_text(s: str, names: dict[Any, Any]) -> str:
    if "-" not in s:
        return s
    return _UUID_TEXT.sub(lambda m: names.get((str, m.group(0)), m.group(0)), s)


DEFAULT = MintedValues()


def add_rerecord_flags(parser: Any) -> None:
    """``--fresh`` and ``--volatile`` on a command that records (record, record-live)."""
    parser.add_argument("--fresh", action="store_true",
                        help="write the recording as it is: do not read the cassette already at -o "
                             "(by default its lines whose meaning is unchanged are kept byte for byte)")
    parser.add_argument("--volatile", action="append", default=[], metavar="KEY|PATH",
                        help="a key name (anywhere) or dotted path (params.thread.preview, * for any "
                             "key or index) whose value a re-record does not compare; repeatable")
