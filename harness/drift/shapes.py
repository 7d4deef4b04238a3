"""A JSON Schema node in normal form: the JSON values it allows, grouped by kind.

The generator writes the same set of values in many ways: an enum or a ``oneOf``
of enums, ``type: [string, null]`` or ``anyOf [.., {type: null}]``, a ``$ref`` or
the type it names inline, an object whose own properties sit beside a ``oneOf``
of variants. Comparing two versions label by label reports all of those as
changes; comparing their normal forms reports only what a peer can observe.

A `Shape` holds branches: ``null``, one `Scalar` per JSON scalar kind (with its
value set, if restricted), the array's item schema, and object variants keyed by
their discriminator (``type=image``), each an `Obj`. Object properties stay raw
schema nodes: they are normalised when compared, so recursive types are fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

# Words that never change what a message may contain.
COSMETIC = frozenset({"description", "title", "$schema", "examples", "default"})
SCALAR_KINDS = ("string", "integer", "number", "boolean")
# Preferred discriminators, in order; any other single-valued property comes after.
DISCRIMINATORS = ("type", "method", "kind", "status")


class Bundle(Protocol):
    """What every ``$ref`` resolves in: a snapshot (harness.drift.snapshot.Snapshot.resolve)."""

    def resolve(self, ref: str) -> Any: ...


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


@dataclass
class Scalar:
    kind: str                                  # string | integer | number | boolean
    values: frozenset[Any] | None = None       # None: any value of the kind
    facets: dict[str, Any] = field(default_factory=dict)   # format, minimum, pattern...
    docs: dict[Any, str] = field(default_factory=dict)     # value -> description of its branch
    known: frozenset[Any] = frozenset()        # values named by an enum, even when any is allowed


@dataclass
class Obj:
    key: str                                   # discriminator label: "type=image", "{granular}", "object"
    props: dict[str, list[Any]]                # name -> raw schema nodes (several if alternatives differ)
    required: frozenset[str]                   # required in every alternative
    req_sets: tuple[frozenset[str], ...]       # required set of each alternative
    additional: Any = None                     # additionalProperties as written (None: not said)
    via: str | None = None                     # definition name it came through
    doc: str = ""
    tags: dict[str, Any] = field(default_factory=dict)  # single-valued properties: name -> value

    def node(self, name: str) -> Any:
        nodes = self.props[name]
        return nodes[0] if len(nodes) == 1 else {"anyOf": nodes}


@dataclass
class Shape:
    any: bool = False
    null: bool = False
    scalars: dict[str, Scalar] = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)          # raw item schemas of the array branch
    array: bool = False
    array_facets: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, Obj] = field(default_factory=dict)
    via: dict[str, str] = field(default_factory=dict)       # kind -> definition name it came through
    doc: str = ""

    def kinds(self) -> set[str]:
        out = set(self.scalars)
        if self.array:
            out.add("array")
        if self.objects:
            out.add("object")
        return out

    def items_node(self) -> Any:
        return self.items[0] if len(self.items) == 1 else {"anyOf": self.items}


# ---------------------------------------------------------------- normalising


def shape_of(node: Any, bundle: Bundle, _seen: frozenset[str] = frozenset()) -> Shape:
    """The normal form of a schema node (refs at its top resolved, properties left raw)."""
    if node is True or node == {}:
        return Shape(any=True)
    if node is False or not isinstance(node, dict):
        return Shape()
    if "$ref" in node:
        ref = node["$ref"]
        if ref in _seen:  # a type that is only itself: nothing to say about it
            return Shape(any=True)
        try:
            target = bundle.resolve(ref)
        except (KeyError, TypeError):
            return Shape(any=True)
        inner = shape_of(target, bundle, _seen | {ref})
        name = ref_name(ref)
        for kind in inner.kinds():
            inner.via.setdefault(kind, name)
        for obj in inner.objects.values():
            obj.via = obj.via or name
        return inner
    doc = node.get("description", "")
    if "allOf" in node and isinstance(node["allOf"], list):
        rest = {k: v for k, v in node.items() if k != "allOf"}
        parts = [shape_of(p, bundle, _seen) for p in node["allOf"]]
        if _has_own(rest):
            parts.append(shape_of(rest, bundle, _seen))
        out = _intersect(parts)
        out.doc = out.doc or doc
        return out
    for key in ("oneOf", "anyOf"):
        alts = node.get(key)
        if isinstance(alts, list):
            own = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
            out = _alternatives(own, alts, bundle, _seen)
            out.doc = doc
            return out
    return _plain(node, bundle)


def _has_own(node: dict[str, Any]) -> bool:
    return any(k not in COSMETIC for k in node)


def _alternatives(own: dict[str, Any], alts: list[Any], bundle: Bundle, seen: frozenset[str]) -> Shape:
    """A oneOf/anyOf: each alternative's values; an object's own properties merged into each
    object alternative (`{properties: {a}, anyOf: [{required: [b]}, ...]}`)."""
    own_is_object = own.get("type") == "object" or "properties" in own
    shapes = []
    for alt in alts:
        if own_is_object and isinstance(alt, dict) and "$ref" not in alt and _object_like(alt):
            shapes.append(shape_of(_merge_objects(own, alt), bundle, seen))
        else:
            shapes.append(shape_of(alt, bundle, seen))
    out = union(shapes)
    if own_is_object and not out.objects:
        out = union([out, _plain(own, bundle)])
    elif not own_is_object and _has_own(own) and "type" in own:
        out = _intersect([out, _plain(own, bundle)])
    return out


def _object_like(alt: dict[str, Any]) -> bool:
    return alt.get("type") in ("object", None) and ("properties" in alt or "required" in alt)


def _merge_objects(own: dict[str, Any], alt: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in own.items() if k not in ("oneOf", "anyOf")}
    merged["type"] = "object"
    merged["properties"] = {**(own.get("properties") or {}), **(alt.get("properties") or {})}
    merged["required"] = sorted(set(own.get("required") or []) | set(alt.get("required") or []))
    if "additionalProperties" in alt:
        merged["additionalProperties"] = alt["additionalProperties"]
    if alt.get("description"):
        merged["description"] = alt["description"]
    for key in ("oneOf", "anyOf"):  # the alternative's own alternatives (a variant with url | fileId)
        if key in alt:
            merged[key] = alt[key]
    return merged


def _plain(node: dict[str, Any], bundle: Bundle) -> Shape:
    """A node without $ref or composition: its `type` (one or a list), enum/const, facets."""
    out = Shape(doc=node.get("description", ""))
    types = node.get("type")
    kinds = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    values: list[Any] | None = None
    if "const" in node:
        values = [node["const"]]
    elif isinstance(node.get("enum"), list):
        values = list(node["enum"])
    if not kinds:
        if values is not None:
            kinds = sorted({_kind_of(v) for v in values})
        elif "properties" in node or "required" in node or "additionalProperties" in node:
            kinds = ["object"]
        elif "items" in node:
            kinds = ["array"]
        else:
            return Shape(any=True, doc=out.doc)
    facets = {k: v for k, v in node.items() if k not in COSMETIC and k not in (
        "type", "enum", "const", "properties", "required", "additionalProperties", "items",
        "minItems", "maxItems", "uniqueItems")}
    doc = node.get("description", "")
    for kind in kinds:
        if kind == "null":
            out.null = True
        elif kind in SCALAR_KINDS:
            kvals = None if values is None else frozenset(v for v in values if _kind_of(v) == kind
                                                         or (kind == "number" and _kind_of(v) == "integer"))
            out.scalars[kind] = Scalar(kind, kvals, dict(facets),
                                       {v: doc for v in kvals} if kvals and doc else {},
                                       kvals or frozenset())
        elif kind == "array":
            out.array = True
            items = node.get("items", True)
            out.items = [items] if not isinstance(items, list) else [{"anyOf": items}]
            out.array_facets = {k: node[k] for k in ("minItems", "maxItems", "uniqueItems") if k in node}
        elif kind == "object":
            obj = _obj(node)
            out.objects[obj.key] = obj
    if values is not None and None in values:
        out.null = True
    _key_objects(out)
    return out


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _obj(node: dict[str, Any]) -> Obj:
    props = {k: [v] for k, v in (node.get("properties") or {}).items()}
    req = frozenset(node.get("required") or [])
    tags = {}
    for name, [schema] in props.items():
        if isinstance(schema, dict):
            if "const" in schema:
                tags[name] = schema["const"]
            elif isinstance(schema.get("enum"), list) and len(schema["enum"]) == 1:
                tags[name] = schema["enum"][0]
    return Obj(key="object", props=props, required=req, req_sets=(req,),
               additional=node.get("additionalProperties"), doc=node.get("description", ""), tags=tags)


# ---------------------------------------------------------------- combining


def union(shapes: Iterable[Shape]) -> Shape:
    """Values allowed by any of the shapes; object variants re-keyed over the whole union."""
    out = Shape()
    objs: list[Obj] = []
    for s in shapes:
        out.any |= s.any
        out.null |= s.null
        for kind, sc in s.scalars.items():
            have = out.scalars.get(kind)
            if have is None:
                out.scalars[kind] = Scalar(kind, sc.values, dict(sc.facets), dict(sc.docs), sc.known)
            else:
                have.values = None if have.values is None or sc.values is None else have.values | sc.values
                have.docs.update(sc.docs)
                have.known = have.known | sc.known
                if have.facets != sc.facets:
                    have.facets = {k: v for k, v in have.facets.items() if sc.facets.get(k) == v}
        if s.array:
            out.array = True
            out.items += s.items
            out.array_facets = out.array_facets or s.array_facets
        objs += s.objects.values()
        for kind, name in s.via.items():
            out.via.setdefault(kind, name)
    out.objects = {str(i): o for i, o in enumerate(objs)}
    _key_objects(out)
    return out


def _intersect(shapes: list[Shape]) -> Shape:
    """allOf, as the generator uses it: one $ref plus siblings, or objects to merge."""
    shapes = [s for s in shapes if not s.any] or shapes[:1]
    if len(shapes) == 1:
        return shapes[0]
    out = shapes[0]
    for s in shapes[1:]:
        out.null = out.null and s.null
        for kind in list(out.scalars):
            if kind in s.scalars and s.scalars[kind].values is not None:
                mine = out.scalars[kind].values
                out.scalars[kind].values = s.scalars[kind].values if mine is None else mine & s.scalars[kind].values
        if out.objects and s.objects:
            [a, *_], [b, *_] = out.objects.values(), s.objects.values()
            merged = Obj(a.key, {**a.props, **b.props}, a.required | b.required,
                         (a.required | b.required,), b.additional if b.additional is not None else a.additional,
                         a.via or b.via, a.doc or b.doc, {**a.tags, **b.tags})
            out.objects = {merged.key: merged}
    _key_objects(out)
    return out


def _key_objects(shape: Shape) -> None:
    """Key object variants by what tells them apart; variants with one key are alternatives
    of one object (the own properties of a type merged into each of its alternatives)."""
    objs = list(shape.objects.values())
    if not objs:
        return
    disc = None
    if len(objs) > 1:
        common = set.intersection(*(set(o.tags) for o in objs))
        ranked = [d for d in DISCRIMINATORS if d in common] + sorted(common - set(DISCRIMINATORS))
        # a discriminator tells at least two variants apart
        disc = next((d for d in ranked if len({repr(o.tags[d]) for o in objs}) > 1), None)
    keyed: dict[str, Obj] = {}
    for o in objs:
        if disc is not None:
            key = f"{disc}={o.tags[disc]}"
        elif len(objs) == 1:
            key = "object"
        else:
            key = _own_key(o)
        o.key = key
        keyed[key] = _combine(keyed[key], o) if key in keyed else o
    shape.objects = keyed


def _own_key(o: Obj) -> str:
    for d in DISCRIMINATORS:
        if d in o.tags:
            return f"{d}={o.tags[d]}"
    if o.tags:
        name = sorted(o.tags)[0]
        return f"{name}={o.tags[name]}"
    if len(o.props) == 1 and o.required == frozenset(o.props):
        return "{" + next(iter(o.props)) + "}"  # externally tagged: {"granular": {...}}
    return "object"


def _combine(a: Obj, b: Obj) -> Obj:
    """Two alternatives with one key: one object whose fields are the union and whose
    required fields are those every alternative requires."""
    props = {k: list(v) for k, v in a.props.items()}
    for name, nodes in b.props.items():
        have = props.setdefault(name, [])
        have += [n for n in nodes if n not in have]
    return Obj(a.key, props, a.required & b.required, a.req_sets + b.req_sets,
               a.additional if a.additional == b.additional else None, a.via or b.via,
               a.doc, {k: v for k, v in a.tags.items() if b.tags.get(k) == v})
