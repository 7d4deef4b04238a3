"""Comparing two schema snapshots, classified for a CLIENT of the protocol.

Every change gets a severity (rules in docs/drift.md):

- ``breaking``: a client written against OLD can fail against NEW;
- ``risky``: it fails only if the client is strict (exhaustive enums, a server
  request it does not answer);
- ``additive``: a client written against OLD keeps working.

Whether a change breaks depends on who sends the type: a field becoming required
hurts when the client must send it, not when the server does. Each definition's
direction comes from the methods that reach it (params of client requests and
notifications and results of server requests are sent by the client; the rest
by the server); a type reached both ways gets the worse of the two verdicts.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from deepdiff import DeepDiff

from harness.drift.snapshot import UNIONS, Snapshot, definition_names

SEVERITIES = ("breaking", "risky", "additive")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
# Words that never change what a message may contain.
_COSMETIC = {"description", "title", "$schema", "examples"}
# Who sends the params and who sends the result of each method kind.
_SENDER = {
    "client_requests": ("client", "server"),
    "client_notifications": ("client", None),
    "server_requests": ("server", "client"),
    "server_notifications": ("server", None),
}
_KIND_LABEL = {
    "client_requests": "client request",
    "client_notifications": "client notification",
    "server_requests": "server request",
    "server_notifications": "server notification",
}


@dataclass
class Change:
    severity: str
    kind: str       # e.g. field-removed, enum-value-added, method-added
    where: str      # "ThreadStartParams.cwd", "thread/start"
    detail: str
    sender: str     # client | server | both | none


# ---------------------------------------------------------------- severity rules

def _verdict(kind: str, sender: str) -> str:
    """Severity of a change of `kind` in a type that `sender` sends."""
    if sender == "none":
        return "additive"  # no stable method reaches the type: nothing changes on the wire
    if kind in ("field-removed", "field-renamed", "type-changed"):
        return "breaking"
    if kind in ("field-added-optional",):
        return "additive"
    if kind == "other":
        return "risky"
    by_sender = {
        # the client must now send something it did not send before
        "field-added-required": ("breaking", "additive"),
        "became-required": ("breaking", "additive"),
        "became-non-nullable": ("breaking", "additive"),
        # the client may now receive a missing/null value it always got before
        "became-optional": ("additive", "breaking"),
        "became-nullable": ("additive", "breaking"),
        # the client may receive a value it does not know
        "enum-value-added": ("additive", "risky"),
        "variant-added": ("additive", "risky"),
        # the client may send a value the server no longer takes
        "enum-value-removed": ("breaking", "additive"),
        "variant-removed": ("breaking", "additive"),
    }
    client, server = by_sender[kind]
    if sender == "client":
        return client
    if sender == "server":
        return server
    if sender == "both":
        return min(client, server, key=_RANK.__getitem__)
    return "additive"  # a type no method reaches changes nothing on the wire


# ---------------------------------------------------------------- type structure

def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _COSMETIC}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _signature(node: Any) -> str:
    return json.dumps(_strip(node), sort_keys=True)


def _split_null(node: Any) -> tuple[Any, bool]:
    """(node without its null alternative, whether null was allowed)."""
    if not isinstance(node, dict):
        return node, False
    types = node.get("type")
    if isinstance(types, list) and "null" in types:
        rest = [t for t in types if t != "null"]
        return {**node, "type": rest[0] if len(rest) == 1 else rest}, True
    for key in ("anyOf", "oneOf"):
        alts = node.get(key)
        if isinstance(alts, list) and any(a == {"type": "null"} for a in alts):
            rest = [a for a in alts if a != {"type": "null"}]
            extra = {k: v for k, v in node.items() if k != key}
            if len(rest) == 1:
                return {**extra, **rest[0]}, True
            return {**extra, key: rest}, True
    if node.get("type") == "null":
        return node, False
    allof = node.get("allOf")
    if isinstance(allof, list) and len(allof) == 1:
        extra = {k: v for k, v in node.items() if k != "allOf"}
        return _split_null({**extra, **allof[0]})
    return node, False


def _shape(node: Any) -> str:
    if not isinstance(node, dict) or not node:
        return "any"
    if "$ref" in node:
        return "ref:" + node["$ref"].rsplit("/", 1)[-1]
    t = node.get("type")
    if t == "object" or "properties" in node:
        return "object"
    if "oneOf" in node or "anyOf" in node:
        return "union"
    if "enum" in node:
        return "enum"
    if t == "array":
        return "array"
    if isinstance(t, list):
        return "types:" + ",".join(sorted(t))
    return f"{t}" if t else "any"


def _variants(node: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Keyed object variants and the plain string values of a oneOf/anyOf."""
    keyed: dict[str, Any] = {}
    values: set[str] = set()
    for i, alt in enumerate(node.get("oneOf") or node.get("anyOf") or []):
        if not isinstance(alt, dict):
            continue
        if "enum" in alt and alt.get("type") in ("string", None) and "properties" not in alt:
            values.update(str(v) for v in alt["enum"])
            continue
        key = None
        for pname, pschema in sorted((alt.get("properties") or {}).items()):
            enum = pschema.get("enum") if isinstance(pschema, dict) else None
            if isinstance(enum, list) and len(enum) == 1:
                key = f"{pname}={enum[0]}"
                break
        if key is None and alt.get("required") and len(alt.get("properties") or {}) == 1:
            key = "{" + next(iter(alt["properties"])) + "}"  # externally tagged: {"granular": ...}
        if key is None:
            key = alt.get("title") or _shape(alt)
            if key in keyed:
                key += f"#{i}"
        keyed[key] = alt
    return keyed, values


def _alias(node: Any, snap: Snapshot | None) -> Any:
    """A $ref to a plain scalar type (AbsolutePathBuf = string) stands for that scalar."""
    if snap is None or not isinstance(node, dict) or "$ref" not in node:
        return node
    try:
        target = snap.resolve(node["$ref"])
    except KeyError:
        return node
    if isinstance(target, dict) and _shape(target) in ("string", "integer", "number", "boolean"):
        return _strip(target)
    return node


class _Differ:
    def __init__(self, old: Snapshot | None = None, new: Snapshot | None = None):
        self.old, self.new = old, new
        self.changes: list[Change] = []

    def add(self, kind: str, where: str, detail: str, sender: str) -> None:
        self.changes.append(Change(_verdict(kind, sender), kind, where, detail, sender))

    def compare(self, old: Any, new: Any, where: str, sender: str) -> None:
        if _signature(old) == _signature(new):
            return
        o, o_null = _split_null(old)
        n, n_null = _split_null(new)
        o, n = _alias(o, self.old), _alias(n, self.new)
        if _signature(o) == _signature(n) and o_null == n_null:
            return  # only a scalar alias was swapped (string -> AbsolutePathBuf)
        if o_null and not n_null:
            self.add("became-non-nullable", where, "no longer allows null", sender)
        elif n_null and not o_null:
            self.add("became-nullable", where, "now allows null", sender)
        so, sn = _shape(o), _shape(n)
        if so != sn:
            self.add("type-changed", where, f"type {so} -> {sn}", sender)
            return
        if so == "enum":
            self._values(set(map(str, o["enum"])), set(map(str, n["enum"])), where, sender,
                         "enum-value")
        elif so == "object":
            self._object(o, n, where, sender)
        elif so == "array":
            self.compare(o.get("items", {}), n.get("items", {}), where + "[]", sender)
        elif so == "union":
            ko, vo = _variants(o)
            kn, vn = _variants(n)
            self._values(vo, vn, where, sender, "enum-value")
            self._values(set(ko), set(kn), where, sender, "variant")
            for key in sorted(set(ko) & set(kn)):
                self.compare(ko[key], kn[key], f"{where}<{key}>", sender)
        elif so.startswith("ref:"):
            return  # the referenced definition is compared on its own
        elif _signature({k: v for k, v in o.items() if k != "format"}) != _signature(
                {k: v for k, v in n.items() if k != "format"}) or o.get("format") != n.get("format"):
            self.add("other", where, _deep_summary(o, n), sender)

    def _values(self, old: set[str], new: set[str], where: str, sender: str, what: str) -> None:
        for v in sorted(new - old):
            self.add(f"{what}-added", where, f"{what.replace('-', ' ')} {v!r} added", sender)
        for v in sorted(old - new):
            self.add(f"{what}-removed", where, f"{what.replace('-', ' ')} {v!r} removed", sender)

    def _object(self, o: dict[str, Any], n: dict[str, Any], where: str, sender: str) -> None:
        if any(k in o or k in n for k in ("oneOf", "anyOf")):
            # an object that also constrains itself with alternatives (url | fileId)
            ko, _ = _variants(o)
            kn, _ = _variants(n)
            self._values(set(ko), set(kn), where, sender, "variant")
        op, np_ = o.get("properties") or {}, n.get("properties") or {}
        oreq, nreq = set(o.get("required") or []), set(n.get("required") or [])
        removed = sorted(set(op) - set(np_))
        added = sorted(set(np_) - set(op))
        # Rename heuristic: one removed and one added field with the same schema.
        for r in list(removed):
            same = [a for a in added if _signature(op[r]) == _signature(np_[a])]
            if len(same) == 1:
                removed.remove(r)
                added.remove(same[0])
                self.add("field-renamed", f"{where}.{r}", f"renamed to {same[0]!r} "
                         "(a field of the same type was removed and one added)", sender)
        for r in removed:
            self.add("field-removed", f"{where}.{r}", "field removed", sender)
        for a in added:
            req = a in nreq
            self.add("field-added-required" if req else "field-added-optional", f"{where}.{a}",
                     f"{'required' if req else 'optional'} field added ({_shape(np_[a])})", sender)
        for f in sorted(set(op) & set(np_)):
            if f in oreq and f not in nreq:
                self.add("became-optional", f"{where}.{f}", "required -> optional", sender)
            elif f in nreq and f not in oreq:
                self.add("became-required", f"{where}.{f}", "optional -> required", sender)
            self.compare(op[f], np_[f], f"{where}.{f}", sender)
        oa, na = o.get("additionalProperties"), n.get("additionalProperties")
        if isinstance(oa, dict) and isinstance(na, dict):
            self.compare(oa, na, f"{where}.*", sender)
        elif oa != na and not (isinstance(oa, dict) or isinstance(na, dict)):
            if na is False:
                self.add("other", where, "unknown fields are now rejected", sender)


def _deep_summary(old: Any, new: Any) -> str:
    diff = DeepDiff(_strip(old), _strip(new), ignore_order=True, verbose_level=2)
    parts = []
    for kind, items in diff.items():
        for path, val in (items.items() if isinstance(items, dict) else [(str(i), None) for i in items]):
            short = path.replace("root", "")
            if isinstance(val, dict) and "old_value" in val:
                parts.append(f"{short or 'value'}: {val['old_value']!r} -> {val['new_value']!r}")
            else:
                parts.append(f"{kind.replace('_', ' ')} {short}")
    return "; ".join(parts)[:300] or "changed"


# ---------------------------------------------------------------- reachability

_REF = re.compile(r'"\$ref": "(#/definitions/[^"]+)"')


def _senders(snap: Snapshot) -> dict[str, str]:
    """Definition pointer -> client | server | both, from the methods that reach it."""
    roots: dict[str, set[str]] = {"client": set(), "server": set()}
    for kind, (p_sender, r_sender) in _SENDER.items():
        for entry in snap.methods(kind).values():
            roots[p_sender].update(_REF.findall(json.dumps(entry.get("params"))))
            if r_sender and entry.get("response"):
                roots[r_sender].add(entry["response"]["$ref"])
    reach: dict[str, set[str]] = {}
    for side, todo in roots.items():
        seen: set[str] = set()
        stack = list(todo)
        while stack:
            ref = stack.pop()
            if ref in seen:
                continue
            seen.add(ref)
            try:
                stack.extend(_REF.findall(json.dumps(snap.resolve(ref))))
            except KeyError:
                continue
        for ref in seen:
            reach.setdefault(ref, set()).add(side)
    return {ref: ("both" if len(s) == 2 else next(iter(s))) for ref, s in reach.items()}


def _merge_sender(a: str | None, b: str | None) -> str:
    got = {x for x in (a, b) if x and x != "none"}
    if not got:
        return "none"
    return "both" if len(got) > 1 or "both" in got else got.pop()


# ---------------------------------------------------------------- the diff

@dataclass
class SchemaDiff:
    old_version: str
    new_version: str
    changes: list[Change]

    def count(self, severity: str) -> int:
        return sum(1 for c in self.changes if c.severity == severity)

    @property
    def breaking(self) -> bool:
        return self.count("breaking") > 0

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old_version, "new": self.new_version,
                "summary": {s: self.count(s) for s in SEVERITIES},
                "changes": [asdict(c) for c in self.changes]}


def diff_snapshots(old: Snapshot, new: Snapshot) -> SchemaDiff:
    so, sn = _senders(old), _senders(new)
    d = _Differ(old, new)
    # Methods, per direction.
    for kind, (p_sender, r_sender) in _SENDER.items():
        label = _KIND_LABEL[kind]
        om, nm = old.methods(kind), new.methods(kind)
        for m in sorted(set(nm) - set(om)):
            sev = "risky" if kind == "server_requests" else "additive"
            d.changes.append(Change(sev, "method-added", m, f"new {label}", p_sender))
        for m in sorted(set(om) - set(nm)):
            sev = "additive" if kind == "server_requests" else "breaking"
            d.changes.append(Change(sev, "method-removed", m, f"{label} removed", p_sender))
        for m in sorted(set(om) & set(nm)):
            oe, ne = om[m], nm[m]
            if oe.get("params_required") != ne.get("params_required"):
                k = "became-required" if ne.get("params_required") else "became-optional"
                d.add(k, f"{m} params", f"params {k.split('-')[1]}", p_sender)
            _compare_named(d, old, new, oe.get("params_type"), ne.get("params_type"),
                           f"{m} params", p_sender,
                           old_required=bool(oe.get("params_required")),
                           new_required=bool(ne.get("params_required")))
            if r_sender:
                _compare_named(d, old, new, oe.get("response_type"), ne.get("response_type"),
                               f"{m} result", r_sender)
    # Types, by name; the method unions were covered above.
    on, nn = definition_names(old.bundle), definition_names(new.bundle)
    skip = set(UNIONS)
    for name in sorted(set(on) | set(nn)):
        if name in skip or name.startswith("JSONRPC"):
            continue
        if name not in nn:
            d.changes.append(Change("additive", "type-removed", name,
                                    "type no longer defined (uses of it are listed apart)", "none"))
            continue
        if name not in on:
            d.changes.append(Change("additive", "type-added", name, "new type",
                                    sn.get(nn[name], "none")))
            continue
        sender = _merge_sender(so.get(on[name]), sn.get(nn[name]))
        d.compare(old.resolve(on[name]), new.resolve(nn[name]), name, sender)
    order = {k: i for i, k in enumerate(SEVERITIES)}
    d.changes.sort(key=lambda c: (order[c.severity], c.kind, c.where))
    return SchemaDiff(old.version, new.version, d.changes)


def _compare_named(d: _Differ, old: Snapshot, new: Snapshot, otype: str | None,
                   ntype: str | None, where: str, sender: str, *,
                   old_required: bool = True, new_required: bool = True) -> None:
    """A method whose params/result type was swapped for another: compare the two."""
    if otype == ntype:
        return
    if not otype or not ntype:
        required = new_required if ntype else old_required
        if ntype and not required:  # params appeared, optional: old callers still fine
            d.add("field-added-optional", where, f"optional params {ntype} added", sender)
        elif ntype:
            d.add("field-added-required", where, f"required params {ntype} added", sender)
        else:
            d.add("field-removed", where, f"params {otype} removed", sender)
        return
    try:
        o = old.resolve(definition_names(old.bundle)[otype])
        n = new.resolve(definition_names(new.bundle)[ntype])
    except KeyError:
        return
    before = len(d.changes)
    d.compare(o, n, f"{where} ({otype} -> {ntype})", sender)
    if len(d.changes) == before:
        d.changes.append(Change("additive", "type-renamed", where,
                                f"type renamed {otype} -> {ntype}, same shape", sender))


# ---------------------------------------------------------------- rendering

def _by_severity(diff: SchemaDiff) -> Iterable[tuple[str, list[Change]]]:
    for sev in SEVERITIES:
        items = [c for c in diff.changes if c.severity == sev]
        if items:
            yield sev, items


def render_text(diff: SchemaDiff) -> str:
    lines = [f"schema {diff.old_version} -> {diff.new_version}: "
             + ", ".join(f"{diff.count(s)} {s}" for s in SEVERITIES)]
    for sev, items in _by_severity(diff):
        lines.append("")
        lines.append(f"{sev.upper()} ({len(items)})")
        for c in items:
            lines.append(f"  [{c.kind}] {c.where}: {c.detail} (sent by {c.sender})")
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    return text.replace("|", "\\|")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(diff: SchemaDiff) -> str:
    verdict = "**breaking changes**" if diff.breaking else "no breaking change"
    out = [f"## Codex app-server schema: {diff.old_version} → {diff.new_version}", "",
           f"Result: {verdict}. Severities are for a client of the protocol "
           "(rules: docs/drift.md).", "",
           "| severity | changes |", "|---|---|"]
    out += [f"| {s} | {diff.count(s)} |" for s in SEVERITIES]
    method_kinds = ("method-added", "method-removed")
    methods = [c for c in diff.changes if c.kind in method_kinds]
    if methods:
        out += ["", "### Methods", "", "| severity | change | method | direction |",
                "|---|---|---|---|"]
        out += [f"| {c.severity} | {c.detail} | `{c.where}` | sent by {c.sender} |"
                for c in methods]
    rest = [c for c in diff.changes if c.kind not in method_kinds]
    for sev in SEVERITIES:
        items = [c for c in rest if c.severity == sev]
        if not items:
            continue
        title = f"{sev.capitalize()} type changes ({len(items)})"
        fold = sev == "additive"  # long and harmless: folded in a job summary
        out += ["", f"<details><summary>{title}</summary>" if fold else f"### {title}", "",
                "| kind | where | detail | sent by |", "|---|---|---|---|"]
        out += [f"| {c.kind} | `{_code(c.where)}` | {_md(c.detail)} | {c.sender} |" for c in items]
        if fold:
            out += ["", "</details>"]
    return "\n".join(out) + "\n"


def render(diff: SchemaDiff, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(diff.to_json(), indent=2) + "\n"
    if fmt == "markdown":
        return render_markdown(diff)
    return render_text(diff)
