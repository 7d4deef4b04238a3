"""Comparing two schema snapshots structurally, judged for a CLIENT of the protocol.

Both sides are brought to normal form (harness.drift.shapes): ``$ref``s resolved, unions
flattened, an object's own properties merged into each of its alternatives, variants
paired by their discriminator. A definition is compared once under its own name; a use
site that swaps one definition for another compares what the two point to. Changes
found identically in every variant of a union are reported once for the union.

Every change has a severity by who sends the type (harness.drift.verdicts): ``breaking``
(a client written against OLD can fail against NEW), ``risky`` (only a strict client
fails) or ``additive``. Its JSON path starts at the definition (``ThreadItem[type=
imageGeneration].result``); the methods that reach it and a path into one of their
messages come along. Additions a client only sees after opting in through an initialize
capability are marked gated and are additive.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.drift.reach import KIND_LABEL, SENDERS, Use, reach, sender_of
from harness.drift.shapes import COSMETIC, Bundle, Obj, Scalar, Shape, shape_of
from harness.drift.change_words import alternatives, facet_text, kinds, req_sets, spread, variant_tags
from harness.drift.snapshot import UNIONS, Snapshot, definition_names
from harness.drift.verdicts import GATEABLE, RANK, SEVERITIES, VERDICTS, Gates, experimental, verdict

# Top-level keys of a method union's variants that are the envelope, not the method's data.
_ENVELOPE = {"id", "method", "params", "jsonrpc"}
_INT_RANGES = {
    "int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1), "int32": (-2**31, 2**31 - 1),
    "int64": (-2**63, 2**63 - 1), "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1), "uint": (0, 2**64 - 1),
}


@dataclass
class Change:
    severity: str
    kind: str          # e.g. field-removed, enum-value-added, method-added (docs/drift.md)
    path: str          # JSON path from the definition or method: ThreadItem[type=plan].text
    detail: str
    sender: str        # client | server | both | none (no stable method reaches it)
    methods: list[str] = field(default_factory=list)   # methods whose messages reach it
    example: str = ""  # one of them, with the path inside its message
    gated: str | None = None  # the initialize capability a client must opt into to see it
    also: list[str] = field(default_factory=list)       # other paths where the same swap happened
    at: dict[str, str] = field(default_factory=dict)    # method -> JSON path in its messages
    by_sender: dict[str, list[str]] = field(default_factory=dict)  # client/server -> methods


@dataclass
class _Ctx:
    uses: list[Use]
    root: str          # the definition (or method part) the path starts at

    @property
    def senders(self) -> set[str]:
        return {u.sender for u in self.uses}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in COSMETIC}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _same(a: Any, b: Any) -> bool:
    return json.dumps(_strip(a), sort_keys=True) == json.dumps(_strip(b), sort_keys=True)


class Differ:
    def __init__(self, old: Snapshot, new: Snapshot):
        self.old, self.new = old, new
        self.gates = Gates(new.bundle)
        self.changes: list[Change] = []
        self._swaps: dict[tuple[str, str], list[Change] | None] = {}

    # -- emitting

    def add(self, kind: str, path: str, detail: str, ctx: _Ctx, *, gate_texts: tuple[str, ...] = (),
            gate_names: tuple[str, ...] = (), severity: str | None = None) -> None:
        gated = (self.gates.gate(gate_texts, gate_names) or self._experimental(ctx)) if kind in GATEABLE else None
        sev = severity or verdict(kind, ctx.senders)
        if gated:
            sev = "additive"
        elif severity is None and ctx.senders == {"client", "server"}:
            by_client, by_server = VERDICTS[kind]
            if by_client != by_server:
                detail += f" ({by_server} where the server sends it, {by_client} where the client does)"
        self.changes.append(Change(sev, kind, path, detail, sender_of(ctx.uses),
                                   sorted({u.label for u in ctx.uses}), _example(path, ctx), gated,
                                   at=_at(path, ctx), by_sender=_by_sender(ctx)))

    def _experimental(self, ctx: _Ctx) -> str | None:
        """`experimentalApi` when the change sits on an experimental surface: its definition,
        or every method part that reaches it, is described "EXPERIMENTAL - ..."."""
        docs = [self._doc(ctx.root)]
        if ctx.uses and not experimental(docs[0]):
            docs = [self._doc(self.new.methods(u.kind).get(u.method, {}).get(
                "params_type" if u.part == "params" else "response_type") or "") for u in ctx.uses]
        return "experimentalApi" if docs and all(map(experimental, docs)) else None

    def _doc(self, name: str) -> str:
        defs = self.new.bundle.get("definitions", {})
        node = defs.get("v2", {}).get(name) or defs.get(name) or {}
        return str(node.get("description", "")) if isinstance(node, dict) else ""

    # -- nodes and shapes

    def node(self, old: Any, new: Any, path: str, ctx: _Ctx) -> None:
        if _same(old, new):
            return
        swap = _swap(old, new)
        if swap:
            if swap in self._swaps:
                for c in self._swaps[swap] or []:  # None: being compared further up (recursion)
                    c.also.append(path)
                return
            self._swaps[swap] = None
            start = len(self.changes)
            self.shapes(shape_of(old, self.old), shape_of(new, self.new), path, ctx)
            self._swaps[swap] = self.changes[start:]
            return
        self.shapes(shape_of(old, self.old), shape_of(new, self.new), path, ctx)

    def shapes(self, o: Shape, n: Shape, path: str, ctx: _Ctx) -> None:
        if o.any or n.any:
            if n.any and not o.any:
                self.add("type-widened", path, f"any JSON value now (was {kinds(o)})", ctx, gate_texts=(n.doc,))
            elif o.any and not n.any:
                self.add("type-narrowed", path, f"only {kinds(n)} now (was any JSON value)", ctx)
            return
        if o.null != n.null:
            self.add("became-nullable" if n.null else "became-non-nullable", path,
                     "null allowed now" if n.null else "null no longer allowed", ctx)
        ko, kn = o.kinds(), n.kinds()
        if "integer" in ko - kn and "number" in kn - ko:
            self.add("range-widened", path, "integer -> number", ctx)
            ko, kn = ko - {"integer"}, kn - {"number"}
        elif "number" in ko - kn and "integer" in kn - ko:
            self.add("range-narrowed", path, "number -> integer", ctx)
            ko, kn = ko - {"number"}, kn - {"integer"}
        if ko and kn and not ko & kn:
            self.add("type-changed", path, f"{kinds(o)} -> {kinds(n)}", ctx)
            return
        for k in sorted(kn - ko):
            via = n.via.get(k)
            self.add("type-widened", path, f"may now be {'an' if k[0] in 'aeio' else 'a'} {k}"
                     + (f" ({via})" if via else ""), ctx, gate_texts=(n.doc,))
        for k in sorted(ko - kn):
            self.add("type-narrowed", path, f"no longer {'an' if k[0] in 'aeio' else 'a'} {k}", ctx)
        for k in sorted(ko & kn & set(o.scalars)):
            if o.via.get(k) and o.via.get(k) == n.via.get(k):
                continue  # the same definition on both sides: compared under its own name
            self.scalar(o.scalars[k], n.scalars[k], path, ctx, n.doc)
        if o.array and n.array and not (o.via.get("array") and o.via.get("array") == n.via.get("array")):
            if o.array_facets != n.array_facets:
                self.add("constraint-changed", path, f"array {o.array_facets} -> {n.array_facets}", ctx)
            self.node(o.items_node(), n.items_node(), f"{path}[*]", ctx)
        if o.objects and n.objects:
            self.objects(o.objects, n.objects, path, ctx)

    def scalar(self, a: Scalar, b: Scalar, path: str, ctx: _Ctx, doc: str) -> None:
        if a.values is not None and b.values is not None:
            for v in sorted(b.values - a.values, key=str):
                self.add("enum-value-added", path, f"value {v!r} added", ctx,
                         gate_texts=(b.docs.get(v, ""),), gate_names=(str(v),))
            for v in sorted(a.values - b.values, key=str):
                self.add("enum-value-removed", path, f"value {v!r} removed", ctx)
        elif a.values is None and b.values is None:
            for v in sorted(b.known - a.known, key=str):
                self.add("known-value-added", path, f"value {v!r} named (any {b.kind} was allowed already)",
                         ctx, gate_texts=(b.docs.get(v, ""),), gate_names=(str(v),))
            for v in sorted(a.known - b.known, key=str):
                self.add("known-value-removed", path, f"value {v!r} no longer named (any {b.kind} is "
                         "still allowed)", ctx)
        elif a.values is not None:
            named = sorted(b.known - a.values, key=str)
            self.add("enum-opened", path, f"any {b.kind} now (was one of {len(a.values)} values)"
                     + (f"; newly named: {', '.join(map(repr, named))}" if named else ""), ctx)
        elif b.values is not None:
            self.add("enum-closed", path, f"only {sorted(b.values, key=str)} now (was any {a.kind})", ctx)
        if a.facets == b.facets:
            return
        if a.kind in ("integer", "number"):
            lo_a, hi_a = _range(a.facets)
            lo_b, hi_b = _range(b.facets)
            if (lo_a, hi_a) != (lo_b, hi_b):
                wider = lo_b <= lo_a and hi_b >= hi_a
                narrower = lo_b >= lo_a and hi_b <= hi_a
                kind = "range-widened" if wider else "range-narrowed" if narrower else "constraint-changed"
                self.add(kind, path, f"{facet_text(a.facets)} -> {facet_text(b.facets)}", ctx)
            return
        self.add("constraint-changed", path, f"{facet_text(a.facets)} -> {facet_text(b.facets)}", ctx)

    # -- objects and their variants

    def objects(self, olds: dict[str, Obj], news: dict[str, Obj], path: str, ctx: _Ctx) -> None:
        pairs = [(k, olds[k], news[k]) for k in sorted(set(olds) & set(news))]
        gone = sorted(set(olds) - set(news))
        came = sorted(set(news) - set(olds))
        split = ""  # how one object became a union (or the reverse), said with what all variants got
        if len(gone) == 1 and len(came) == 1 and (len(olds) == 1 or "object" in (gone[0], came[0])):
            pairs.append((came[0], olds[gone[0]], news[came[0]]))  # one object each side: the same one
            gone, came = [], []
        elif len(olds) == 1 and gone and len(came) > 1:
            pairs += self._split(olds[gone[0]], {k: news[k] for k in came}, path, ctx, old_side=True)
            split = f"the object became a union of {variant_tags(came)}"
            gone, came = [], []
        elif len(news) == 1 and came and len(gone) > 1:
            pairs += self._split(news[came[0]], {k: olds[k] for k in gone}, path, ctx, old_side=False)
            split = f"a union of {variant_tags(gone)} became one object"
            gone, came = [], []
        keyed = len(news) > 1 or len(olds) > 1
        for key in came:
            obj = news[key]
            self.add("variant-added", f"{path}[{key}]", f"variant {key} added"
                     + ("" if obj.props else " (any object)"), ctx,
                     gate_texts=(obj.doc,), gate_names=tuple(str(v) for v in obj.tags.values()))
        for key in gone:
            self.add("variant-removed", f"{path}[{key}]", f"variant {key} removed", ctx)
        compared = [(k, a, b) for k, a, b in pairs if not (a.via and a.via == b.via)]
        if not keyed or len(compared) < 2:
            for key, a, b in compared:
                self.obj(a, b, f"{path}[{key}]" if keyed else path, ctx)
            return
        # Compare each pair apart; what every variant got alike is said once, for the union.
        per_pair: list[list[Change]] = []
        outer = self.changes
        try:
            for key, a, b in compared:
                self.changes = []
                self.obj(a, b, f"{path}[{key}]", ctx)
                per_pair.append(self.changes)
        finally:
            self.changes = outer
        # Only when every variant was compared here (none is a definition compared on its own).
        common = set.intersection(*({_rel(c, path) for c in cs} for cs in per_pair)) \
            if len(compared) == len(pairs) else set()
        for cs in per_pair:
            self.changes += [c for c in cs if _rel(c, path) not in common]
        for rel in sorted(common):
            first = next(c for c in per_pair[0] if _rel(c, path) == rel)
            first.path = path + rel[1]
            first.detail += f" ({spread(rel, split, olds, news, len(per_pair))})"
            first.example = _example(first.path, ctx)
            first.at = _at(first.path, ctx)
            self.changes.append(first)

    def _split(self, single: Obj, variants: dict[str, Obj], path: str, ctx: _Ctx,
               old_side: bool) -> list[tuple[str, Obj, Obj]]:
        """One object became a union of tagged variants (or the reverse): the single one is
        paired with each variant; its tag field, an enum on the single side, is compared
        once with the set of variant tags."""
        tag = _tag_name(variants)
        if tag is not None and tag in single.props:
            tags = {"enum": sorted({str(v.tags[tag]) for v in variants.values()})}
            old, new = (single.node(tag), tags) if old_side else (tags, single.node(tag))
            self.node(old, new, f"{path}.{tag}", ctx)
            single = _without(single, tag)
            variants = {k: _without(v, tag) for k, v in variants.items()}
        return [(k, single, v) if old_side else (k, v, single) for k, v in sorted(variants.items())]

    def obj(self, a: Obj, b: Obj, path: str, ctx: _Ctx) -> None:
        removed = sorted(set(a.props) - set(b.props))
        added = sorted(set(b.props) - set(a.props))
        for r in list(removed):  # one removed and one added field of the same schema: a rename
            same = [x for x in added if _same(a.node(r), b.node(x)) and (r in a.required) == (x in b.required)]
            if len(same) == 1:
                removed.remove(r)
                added.remove(same[0])
                self.add("field-renamed", f"{path}.{r}", f"renamed to {same[0]!r} (a field of the same "
                         "schema was removed and one added)", ctx)
        for r in removed:
            kind = "required-field-removed" if r in a.required else "optional-field-removed"
            self.add(kind, f"{path}.{r}", "field removed", ctx)
        alts = alternatives(b)
        for x in added:
            req = x in b.required
            node = b.node(x)
            self.add("field-added-required" if req else "field-added-optional", f"{path}.{x}",
                     f"{'required' if req else 'optional'} field added ({kinds(shape_of(node, self.new))})"
                     + (f"; {alts}" if alts and any(x in s for s in b.req_sets) else ""), ctx,
                     gate_texts=_docs(node, self.new), gate_names=(x,))
        per_field = False
        for f in sorted(set(a.props) & set(b.props)):
            if f in a.required and f not in b.required:
                per_field = True
                self.add("became-optional", f"{path}.{f}", "required -> optional"
                         + (f"; {alts}" if alts else ""), ctx)
            elif f in b.required and f not in a.required:
                per_field = True
                self.add("became-required", f"{path}.{f}", "optional -> required", ctx)
            self.node(a.node(f), b.node(f), f"{path}.{f}", ctx)
        if not per_field:
            self._req_sets(a, b, path, ctx)
        self._additional(a.additional, b.additional, path, ctx)

    def _req_sets(self, a: Obj, b: Obj, path: str, ctx: _Ctx) -> None:
        # Fields added or removed were reported as such: compare what both know of.
        both = frozenset(a.props) & frozenset(b.props)
        olds, news = {s & both for s in a.req_sets}, {s & both for s in b.req_sets}
        if olds == news:
            return
        # Every old message must still fit (client side), every new one must fit the old (server side).
        narrowed = any(not any(nb <= oa for nb in news) for oa in olds)
        widened = any(not any(oa <= nb for oa in olds) for nb in news)
        if not (narrowed or widened):
            return
        kind = ("type-changed" if narrowed and widened else
                "alternatives-narrowed" if narrowed else "alternatives-widened")
        self.add(kind, path, f"required fields {req_sets(tuple(olds))} -> {req_sets(tuple(news))}", ctx)

    def _additional(self, a: Any, b: Any, path: str, ctx: _Ctx) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            self.node(a, b, f"{path}.*", ctx)
        elif b is False and a is not False:
            self.add("unknown-fields-rejected", path, "unknown fields are now rejected", ctx)
        elif a is False and b is not False:
            self.add("unknown-fields-accepted", path, "unknown fields are now allowed", ctx)


# ---------------------------------------------------------------- helpers


def _swap(old: Any, new: Any) -> tuple[str, str] | None:
    """(old name, new name) when a use site points at another definition."""
    ro = old.get("$ref") if isinstance(old, dict) else None
    rn = new.get("$ref") if isinstance(new, dict) else None
    return (ro, rn) if ro and rn and ro != rn else None


def _tag_name(variants: dict[str, Obj]) -> str | None:
    names = {k.split("=", 1)[0] for k in variants if "=" in k}
    return names.pop() if len(names) == 1 and all("=" in k for k in variants) else None


def _without(o: Obj, name: str) -> Obj:
    return Obj(o.key, {k: v for k, v in o.props.items() if k != name}, o.required - {name},
               tuple(s - {name} for s in o.req_sets), o.additional, o.via, o.doc,
               {k: v for k, v in o.tags.items() if k != name})


def _example(path: str, ctx: _Ctx) -> str:
    """The change's place in a message of the first method that reaches it."""
    if not ctx.uses:
        return ""
    return f"{ctx.uses[0].label}: {ctx.uses[0].path}{path[len(ctx.root):]}"


def _by_sender(ctx: _Ctx) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in ctx.uses:
        out.setdefault(u.sender, [])
        if u.label not in out[u.sender]:
            out[u.sender].append(u.label)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _at(path: str, ctx: _Ctx) -> dict[str, str]:
    rel = path[len(ctx.root):]
    return {u.label: u.path + rel for u in ctx.uses}


def _rel(c: Change, path: str) -> tuple[str, str, str]:
    """A change of one variant relative to the union: (kind, path after the variant key, detail)."""
    rest = c.path[len(path):]
    after = rest[rest.index("]") + 1:] if rest.startswith("[") else rest
    return c.kind, after, c.detail


def _range(facets: dict[str, Any]) -> tuple[float, float]:
    lo, hi = _INT_RANGES.get(str(facets.get("format")), (float("-inf"), float("inf")))
    if "minimum" in facets:
        lo = max(lo, facets["minimum"])
    if "maximum" in facets:
        hi = min(hi, facets["maximum"])
    return lo, hi


def _docs(node: Any, bundle: Bundle) -> tuple[str, ...]:
    """Descriptions that may say a field is gated: its own and its type's."""
    out = []
    if isinstance(node, dict):
        out.append(str(node.get("description", "")))
    s = shape_of(node, bundle)
    out.append(s.doc)
    out += [o.doc for o in s.objects.values()]
    for name in set(s.via.values()):
        for ref in (f"#/definitions/v2/{name}", f"#/definitions/{name}"):
            try:
                out.append(str(bundle.resolve(ref).get("description", "")))
                break
            except (KeyError, AttributeError):
                continue
    return tuple(out)


# ---------------------------------------------------------------- the diff


@dataclass
class SchemaDiff:
    old_version: str
    new_version: str
    changes: list[Change]
    types_added: list[str] = field(default_factory=list)
    types_removed: list[str] = field(default_factory=list)

    def count(self, severity: str) -> int:
        return sum(1 for c in self.changes if c.severity == severity)

    @property
    def breaking(self) -> bool:
        return self.count("breaking") > 0

    def gated(self) -> list[Change]:
        return [c for c in self.changes if c.gated]

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old_version, "new": self.new_version,
                "summary": {**{s: self.count(s) for s in SEVERITIES}, "gated": len(self.gated()),
                            "types_added": len(self.types_added), "types_removed": len(self.types_removed)},
                "changes": [asdict(c) for c in self.changes],
                "types_added": self.types_added, "types_removed": self.types_removed}


def diff_snapshots(old: Snapshot, new: Snapshot) -> SchemaDiff:
    d = Differ(old, new)
    old_reach, new_reach = reach(old), reach(new)
    _methods(d, old, new)
    on, nn = definition_names(old.bundle), definition_names(new.bundle)
    # A change shows in the messages of methods both versions have: a method new in NEW is
    # reported as added (all of it is new), one gone from it as removed.
    both = {(kind, m) for kind in SENDERS for m in set(old.methods(kind)) & set(new.methods(kind))}

    def kept(uses: list[Use]) -> list[Use]:
        return [u for u in uses if (u.kind, u.method) in both]

    for name in sorted(set(on) & set(nn)):
        if name in UNIONS or name.startswith("JSONRPC"):
            continue
        ctx = _Ctx(kept(new_reach.get(name, [])) or kept(old_reach.get(name, [])), name)
        d.node(old.resolve(on[name]), new.resolve(nn[name]), name, ctx)
    d.changes.sort(key=lambda c: (RANK[c.severity], c.path, c.kind, c.detail))
    return SchemaDiff(old.version, new.version, d.changes,
                      sorted(set(nn) - set(on)), sorted(set(on) - set(nn)))


def _methods(d: Differ, old: Snapshot, new: Snapshot) -> None:
    for kind, (p_sender, r_sender) in SENDERS.items():
        label = KIND_LABEL[kind]
        om, nm = old.methods(kind), new.methods(kind)
        for m in sorted(set(nm) - set(om)):
            ctx = _Ctx([Use(m, kind, "params", p_sender, "$.params")], m)
            params_docs = _docs(nm[m].get("params"), d.new) if nm[m].get("params") else ()
            sev = "risky" if kind == "server_requests" else "additive"
            d.add("method-added", m, f"new {label}", ctx, gate_texts=params_docs, gate_names=(m,),
                  severity=sev)
        for m in sorted(set(om) - set(nm)):
            ctx = _Ctx([Use(m, kind, "params", p_sender, "$.params")], m)
            sev = "additive" if kind == "server_requests" else "breaking"
            d.add("method-removed", m, f"{label} removed", ctx, severity=sev)
        for m in sorted(set(om) & set(nm)):
            oe, ne = om[m], nm[m]
            ctx = _Ctx([Use(m, kind, "params", p_sender, "$.params")], f"{m}.params")
            if bool(oe.get("params_required")) != bool(ne.get("params_required")):
                k = "became-required" if ne.get("params_required") else "became-optional"
                d.add(k, f"{m}.params", f"params {k.split('-')[1]}", ctx)
            d.node(oe.get("params") or {"type": "null"}, ne.get("params") or {"type": "null"},
                   f"{m}.params", ctx)
            if r_sender and (oe.get("response") or ne.get("response")):
                rctx = _Ctx([Use(m, kind, "result", r_sender, "$.result")], f"{m}.result")
                d.node(oe.get("response") or {}, ne.get("response") or {}, f"{m}.result", rctx)
    # Envelope fields a union declares beside method and params (emittedAtMs).
    for union, kind in UNIONS.items():
        sender = SENDERS[kind][0]
        ctx = _Ctx([Use(f"every {KIND_LABEL[kind]}", kind, "params", sender, "$")], union)
        d.node(_envelope(old, union), _envelope(new, union), union, ctx)


def _envelope(snap: Snapshot, union: str) -> dict[str, Any]:
    node = snap.bundle.get("definitions", {}).get(union, {})
    props = {k: v for k, v in (node.get("properties") or {}).items() if k not in _ENVELOPE}
    return {"type": "object", "properties": props}
