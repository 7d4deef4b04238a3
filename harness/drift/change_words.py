"""How the schema differ words a change: JSON kinds, facets, required sets, and how far
across a union's variants a change found alike in all of them goes (harness.drift.schema_diff)."""

from __future__ import annotations

from typing import Any

from harness.drift.shapes import Obj, Shape


def variant_tags(keys: list[str]) -> str:
    """`3 variants, mode=block|hide|show`: the tags of a union's variants."""
    names = {k.split("=", 1)[0] for k in keys}
    if len(names) == 1 and all("=" in k for k in keys):
        return f"{len(keys)} variants, {names.pop()}=" + "|".join(sorted(k.split("=", 1)[1] for k in keys))
    return f"{len(keys)} variants"


def spread(rel: tuple[str, str, str], split: str, olds: dict[str, Obj], news: dict[str, Obj], n: int) -> str:
    """Where a change found alike in all `n` compared variants is, counted on the side it is
    about: what was removed in the old variants, what was added in the new ones (a variant
    new in NEW counts when it has the added field too)."""
    kind, after = rel[0], rel[1]
    removal = kind.endswith("-removed") or kind == "field-renamed"
    if split.startswith("the object"):  # one object became a union: say what its variants have
        return f"{split}; " + ("none has it" if removal else "all have it" if kind.startswith("field-added")
                               else "in all of them")
    if split:
        return split
    side, other = (olds, news) if removal else (news, olds)
    extra = [k for k in side if k not in other]
    field_ = after[1:] if after.startswith(".") and after.count(".") == 1 and "[" not in after else None
    if not extra or (not removal and kind.startswith("field-added") and field_
                     and all(field_ in side[k].props for k in extra)):
        return f"in all {len(side)} variants"
    return (f"in all {n} variants both versions have, {len(extra)} {'old' if removal else 'new'} "
            f"one{'' if len(extra) == 1 else 's'} aside")


def kinds(s: Shape) -> str:
    if s.any:
        return "any"
    parts = []
    for k in sorted(s.kinds()):
        sc = s.scalars.get(k)
        parts.append(f"{k} enum" if sc is not None and sc.values is not None else k)
    if s.null:
        parts.append("null")
    return " | ".join(parts) or "nothing"


def facet_text(f: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(f.items())) or "no constraint"


def req_sets(sets: tuple[frozenset[str], ...]) -> str:
    return " | ".join("{" + ", ".join(sorted(s)) + "}" for s in sorted(set(sets), key=sorted))


def alternatives(b: Obj) -> str:
    if len(set(b.req_sets)) < 2:
        return ""
    common = b.required
    return "now one of " + " | ".join(
        "{" + ", ".join(sorted(s - common)) + "}" for s in sorted(set(b.req_sets), key=sorted))
