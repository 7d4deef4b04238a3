"""Values a client has never seen, for the novel-value fault.

Two sources, one shape (``plan(cassette) -> {position: [Novelty]}``):

- ``SchemaFree``: no schema needed. Per method, an optional field the client has
  never seen (``params.novelField``), and an unknown string wherever an enum-like
  key (``type``, ``status``, ...) holds an identifier.
- ``SchemaDiffNovelties``: what a newer codex adds, from the drift differ's changes
  between two schema snapshots (enum values, union variants, optional fields sent by
  the server), placed where the cassette's messages hold the changed type.

Each novelty is used once per cassette, at its first place: the question is whether the
client copes with the value at all, not in which message.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.drift.shapes import ref_name
from harness.format.cassette import Cassette, Event
from harness.format.wire import request_key

NOVEL_FIELD = "novelField"
NOVEL_STRING = "novelValue"
ENUM_KEYS = ("type", "status", "kind", "phase", "decision", "role", "mode")
_IDENTIFIER = re.compile(r"^[a-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class Novelty:
    """Set ``path`` (from the message down, list items by number: ``params.turn.items.0.type``)
    to ``value``; ``add`` means the field is new (its parent exists). ``label`` names the
    value in the fault's id when the path alone does not (``=rateLimitExceeded``)."""

    path: str
    value: Any
    add: bool = False
    source: str = "schema-free"
    label: str = ""

    @property
    def tag(self) -> str:
        return f"{self.path}={self.label}" if self.label else self.path

    def apply(self, msg: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(msg)
        *parents, last = self.path.split(".")
        node: Any = out
        for step in parents:
            node = node[int(step)] if isinstance(node, list) else node[step]
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(self.value)
        else:
            node[last] = copy.deepcopy(self.value)
        return out


def _server_messages(cassette: Cassette) -> Iterator[tuple[int, Event, str, str, Any]]:
    """(position, event, method or the request it answers, body key, body) of each server message."""
    asked: dict[str, str] = {}
    for n, event in enumerate(cassette.events):
        msg = event.msg
        if not isinstance(msg, dict):
            continue
        if event.side == "client":
            if "method" in msg and "id" in msg:
                asked[request_key(msg["id"])] = msg["method"]
            continue
        if "method" in msg:
            yield n, event, msg["method"], "params", msg.get("params")
        elif "result" in msg:
            yield n, event, "response to " + asked.get(request_key(msg.get("id")), "?"), "result", msg["result"]


def _enum_like(body: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(body, dict):
        for key, value in body.items():
            here = f"{path}.{key}"
            if key in ENUM_KEYS and isinstance(value, str) and _IDENTIFIER.match(value):
                yield here, value
            else:
                yield from _enum_like(value, here)
    elif isinstance(body, list) and body:
        yield from _enum_like(body[0], f"{path}.0")  # the first item stands for the others


class SchemaFree:
    """Novelties that need no schema."""

    def plan(self, cassette: Cassette) -> dict[int, list[Novelty]]:
        seen: set[tuple[str, str]] = set()
        out: dict[int, list[Novelty]] = {}
        for n, _event, method, key, body in _server_messages(cassette):
            if not isinstance(body, dict):
                continue
            found = []
            if (method, "+") not in seen:
                seen.add((method, "+"))
                found.append(Novelty(f"{key}.{NOVEL_FIELD}", {"since": "a newer codex"}, add=True))
            for path, _value in _enum_like(body, key):
                if (method, path) not in seen:
                    seen.add((method, path))
                    found.append(Novelty(path, NOVEL_STRING))
            if found:
                out[n] = found
        return out


# ---------------------------------------------------------------- from a schema diff

@dataclass(frozen=True)
class _Target:
    """A change the differ reported, read as: in type ``type`` (variant ``variant``), at
    ``fields`` below it, a new ``what`` (enum value, variant or field) called ``value``."""

    what: str           # enum | variant | field
    type: str
    variant: str | None
    fields: tuple[str, ...]
    value: str
    source: str


def read_change(change: Any) -> list[_Target]:
    """One of the differ's changes as targets: none for one that adds nothing the server sends,
    one per value an enum gained or newly names.

    Relies only on ``kind``, ``path`` ("Type", "Type.field", "Type[tag=value].field"; the
    variant a variant-added change names is its own ``[tag=value]``), ``detail`` (quoting an
    added enum value) and ``sender`` of harness.drift.schema_diff.Change.
    """
    what = {"enum-value-added": "enum", "known-value-added": "enum", "enum-opened": "enum",
            "variant-added": "variant", "field-added-optional": "field"}.get(getattr(change, "kind", ""))
    if what is None or getattr(change, "sender", "") not in ("server", "both"):
        return []
    where = str(getattr(change, "path", ""))
    m = re.match(r"^([A-Za-z0-9_]+)(?:\[([^\]]*)\])?((?:\.[A-Za-z0-9_]+)*)$", where)
    if m is None:
        return []
    fields = tuple(f for f in m.group(3).split(".") if f)
    source = f"{change.kind} {where}"
    if what == "variant":
        if not m.group(2) or fields or "=" not in m.group(2):
            return []  # a variant without a discriminator value (e.g. [object]) names nothing to send
        return [_Target(what, m.group(1), None, (), m.group(2), source)]
    if what == "field":
        if not fields:
            return []
        return [_Target(what, m.group(1), m.group(2), fields[:-1], fields[-1], source)]
    values = re.findall(r"'([^']*)'", str(getattr(change, "detail", "")))
    return [_Target(what, m.group(1), m.group(2), fields, value, source) for value in values]


class SchemaDiffNovelties:
    """Novelties from two schema snapshots: what NEW sends that a client of OLD never saw."""

    def __init__(self, old: Any, new: Any, changes: list[Any]) -> None:
        from harness.drift.validate import SchemaValidator

        self.old, self.new = old, new
        self.targets = [t for c in changes for t in read_change(c)]
        self._by_type: dict[str, list[_Target]] = {}
        for target in self.targets:
            self._by_type.setdefault(target.type, []).append(target)
        self._validators = {id(old): SchemaValidator(old), id(new): SchemaValidator(new)}

    @classmethod
    def load(cls, old_dir: str | Path, new_dir: str | Path) -> "SchemaDiffNovelties":
        from harness.drift.schema_diff import diff_snapshots
        from harness.drift.snapshot import load_snapshot

        old, new = load_snapshot(old_dir), load_snapshot(new_dir)
        return cls(old, new, list(diff_snapshots(old, new).changes))

    def _snapshot_for(self, cassette: Cassette) -> Any:
        version = str(cassette.meta.get("codex_version", ""))
        return self.old if version and version == self.old.version else self.new

    def plan(self, cassette: Cassette) -> dict[int, list[Novelty]]:
        snap = self._snapshot_for(cassette)
        used: set[_Target] = set()
        out: dict[int, list[Novelty]] = {}
        for n, event, method, key, body in _server_messages(cassette):
            schema = self._schema_of(snap, event.msg, method, key)
            if schema is None or body is None:
                continue
            found = []
            for path, type_name, instance in self._walk(snap, schema, body, key):
                for target in self._by_type.get(type_name, ()):
                    if target in used:
                        continue
                    novelty = self._novelty(target, path, instance)
                    if novelty is not None:
                        used.add(target)
                        found.append(novelty)
            if found:
                out[n] = found
        return out

    def _schema_of(self, snap: Any, msg: dict[str, Any], method: str, key: str) -> dict[str, Any] | None:
        if key == "params":
            kind = "server_requests" if "id" in msg else "server_notifications"
            return (snap.methods(kind).get(method) or {}).get("params")
        asked = method.removeprefix("response to ")
        return (snap.methods("client_requests").get(asked) or {}).get("response")

    def _walk(self, snap: Any, schema: Any, instance: Any, path: str,
              depth: int = 0) -> Iterator[tuple[str, str, Any]]:
        """(path, named type, instance) for every $ref the instance passes through."""
        if depth > 60 or not isinstance(schema, dict):
            return
        if "$ref" in schema:
            yield path, ref_name(schema["$ref"]), instance
            try:
                target = snap.resolve(schema["$ref"])
            except KeyError:
                return
            yield from self._walk(snap, target, instance, path, depth + 1)
            return
        for part in schema.get("allOf") or ():
            yield from self._walk(snap, part, instance, path, depth + 1)
        alternatives = schema.get("oneOf") or schema.get("anyOf")
        if alternatives:
            checker = self._validators[id(snap)]
            chosen = next((a for a in alternatives if checker.validator(a).is_valid(instance)), None)
            if chosen is not None:
                yield from self._walk(snap, chosen, instance, path, depth + 1)
        if isinstance(instance, dict):
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            for name, value in instance.items():
                sub = props.get(name, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    yield from self._walk(snap, sub, value, f"{path}.{name}", depth + 1)
        elif isinstance(instance, list) and instance and isinstance(schema.get("items"), dict):
            yield from self._walk(snap, schema["items"], instance[0], f"{path}.0", depth + 1)

    def _novelty(self, target: _Target, path: str, instance: Any) -> Novelty | None:
        if target.variant is not None and not _is_variant(instance, target.variant):
            return None
        for field in target.fields:
            if not isinstance(instance, dict) or field not in instance:
                return None
            instance, path = instance[field], f"{path}.{field}"
        if target.what == "enum":
            return Novelty(path, target.value, source=target.source, label=target.value)
        if target.what == "field":
            if not isinstance(instance, dict) or target.value in instance:
                return None
            value = self._field_example(target)
            return Novelty(f"{path}.{target.value}", value, add=True, source=target.source)
        new_variant = self._variant_example(target, instance)
        if new_variant is None:
            return None
        return Novelty(path, new_variant, source=target.source, label=target.value.partition("=")[2] or target.value)

    def _definition(self, name: str) -> Any:
        from harness.drift.snapshot import definition_names

        ref = definition_names(self.new.bundle).get(name)
        return self.new.resolve(ref) if ref else None

    def _field_example(self, target: _Target) -> Any:
        node = self._definition(target.type)
        if target.variant is not None:
            node = _find_variant(node, target.variant, self.new)
        for field in (*target.fields, target.value):
            node = self.new.follow(((node or {}).get("properties") or {}).get(field))
        return example(node, self.new)

    def _variant_example(self, target: _Target, instance: Any) -> Any:
        alternative = _find_variant(self._definition(target.type), target.value, self.new)
        if alternative is None:
            return None
        value = example(alternative, self.new)
        if isinstance(value, dict) and isinstance(instance, dict):
            props = (self.new.follow(alternative) or {}).get("properties") or {}
            value.update({k: v for k, v in instance.items() if k in props and k not in value})
        return value


def _is_variant(instance: Any, key: str) -> bool:
    if not isinstance(instance, dict):
        return False
    if "=" in key:
        name, _, value = key.partition("=")
        return str(instance.get(name)) == value
    if key.startswith("{") and key.endswith("}"):
        return key[1:-1] in instance
    return False


def _find_variant(node: Any, key: str, snap: Any) -> Any:
    node = snap.follow(node)
    for alternative in (node or {}).get("oneOf") or (node or {}).get("anyOf") or ():
        alt = snap.follow(alternative)
        props = (alt or {}).get("properties") or {}
        if "=" in key:
            name, _, value = key.partition("=")
            tag = snap.follow(props.get(name)) or {}
            if value in [str(v) for v in tag.get("enum", [])] or str(tag.get("const")) == value:
                return alt
        elif key.startswith("{") and key[1:-1] in props and len(props) == 1:
            return alt
    return None


def example(node: Any, snap: Any, depth: int = 0) -> Any:
    """The smallest value a schema allows, preferring a non-null one."""
    node = snap.follow(node)
    if not isinstance(node, dict) or depth > 12:
        return None
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    alternatives = node.get("oneOf") or node.get("anyOf")
    if alternatives:
        usable = [a for a in alternatives if snap.follow(a) != {"type": "null"}] or alternatives
        return example(usable[0], snap, depth + 1)
    types = node.get("type")
    if isinstance(types, list):
        types = next((t for t in types if t != "null"), "null")
    if types == "object" or "properties" in node:
        props = node.get("properties") or {}
        return {name: example(props.get(name), snap, depth + 1) for name in node.get("required") or ()}
    return {"array": [], "string": "novel", "integer": 0, "number": 0, "boolean": True}.get(str(types))
