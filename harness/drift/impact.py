"""Which schema changes touch what a set of cassettes actually uses.

A change is reported with the methods that reach it and, per method, the JSON path of the
changed place inside that method's messages (harness.drift.reach). The cassettes'
messages are indexed by method and part (params, or the result of a request, paired by
id); a change *touches* the cassettes when one of their messages has a value where the
change is: the object that gained, lost or loosened a field, the value of an enum, the
union that gained or lost a variant. A change whose methods the cassettes exercise, but
never with data at that place, is listed apart: the recordings do not show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.drift.schema_diff import Change, SchemaDiff
from harness.drift.validate import expand_paths
from harness.format.cassette import Cassette
from harness.format.load import open_cassette
from harness.format.wire import request_key

_SEGMENT = re.compile(r"\.(?P<name>[^.\[]+)|\[(?P<filter>[^\]]*)\]")
_FIELD_KINDS = ("field-", "became-", "required-field-", "optional-field-")


@dataclass
class Impact:
    change: Change
    touches: list[str] = field(default_factory=list)   # cassette:line of messages with data there
    exercised: list[str] = field(default_factory=list)  # methods of the change the cassettes use

    @property
    def level(self) -> int:
        """0: touches recorded data, 1: a method the cassettes use, 2: nothing they use."""
        return 0 if self.touches else 1 if self.exercised else 2


@dataclass
class _Message:
    where: str       # cassette:line
    body: Any        # {"params": ...} or {"result": ...}


def index_messages(cassettes: Iterable[Cassette]) -> dict[str, list[_Message]]:
    """Method label (``turn/start``, ``turn/start result``) -> the messages that carry it."""
    out: dict[str, list[_Message]] = {}
    for cas in cassettes:
        pending: dict[str, dict[str, str]] = {"client": {}, "server": {}}
        for event in cas.messages():
            msg = event.msg
            if not isinstance(msg, dict):
                continue
            where = f"{cas.path}:{event.line}"
            if isinstance(msg.get("method"), str):
                if "id" in msg:
                    pending[event.side][request_key(msg["id"])] = msg["method"]
                out.setdefault(msg["method"], []).append(_Message(where, msg))
            elif "result" in msg:
                peer = "server" if event.side == "client" else "client"
                method = pending[peer].pop(request_key(msg.get("id")), None)
                if method:
                    out.setdefault(f"{method} result", []).append(_Message(where, {"result": msg["result"]}))
    return out


def values_at(doc: Any, path: str) -> list[Any]:
    """Values at a change path (``$.params.items[*][type=x].name``, ``.*`` for map values)."""
    if not path.startswith("$"):
        return []
    found = [doc]
    for m in _SEGMENT.finditer(path[1:]):
        nxt: list[Any] = []
        name, filt = m.group("name"), m.group("filter")
        for v in found:
            if name == "*":
                nxt += list(v.values()) if isinstance(v, dict) else []
            elif name is not None:
                if isinstance(v, dict) and name in v:
                    nxt.append(v[name])
            elif filt == "*":
                nxt += v if isinstance(v, list) else []
            elif isinstance(v, dict) and _matches(v, filt):
                nxt.append(v)
        found = nxt
    return [v for v in found if v is not None]  # a null says nothing about the type's shape


def _matches(value: dict[str, Any], filt: str) -> bool:
    if filt.startswith("{") and filt.endswith("}"):
        return filt[1:-1] in value                      # externally tagged variant
    if "=" in filt:
        key, want = filt.split("=", 1)
        return str(value.get(key)) == want
    return True                                         # "object": any object


def probe_path(change: Change, path: str) -> str:
    """Where a message must have data for the change to matter to it."""
    if change.kind.startswith(_FIELD_KINDS) or change.kind == "field-renamed":
        return path[: path.rfind(".")] if path.count(".") > 1 else path
    if change.kind.startswith("variant-") and path.endswith("]"):
        return path[: path.rfind("[")]
    return path


def impacts(diff: SchemaDiff, cassettes: Iterable[Cassette]) -> list[Impact]:
    index = index_messages(cassettes)
    out = []
    for c in diff.changes:
        imp = Impact(c)
        for label, path in sorted(c.at.items()):
            msgs = index.get(label, [])
            if not msgs:
                continue
            imp.exercised.append(label)
            probe = probe_path(c, path)
            for msg in msgs:
                if probe == "$" or values_at(msg.body, probe):
                    imp.touches.append(msg.where)
        out.append(imp)
    return out


def load_all(paths: Iterable[str | Path]) -> list[Cassette]:
    """Cassettes and YAML scenarios, as `validate` finds them."""
    return [open_cassette(p) for p in expand_paths(paths)]
