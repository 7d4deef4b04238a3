"""Which methods reach each type of a snapshot, who sends it there, and at what JSON path.

A type's direction decides whether a change to it breaks a client (docs/drift.md): params
of client requests and notifications and results of server requests are sent by the
client, the rest by the server. Walking each method's params and result breadth first
gives, per definition, the shortest path where it sits in that method's messages
(``$.params.item[type=imageGeneration]``), so a change is reported with the methods that
reach it and a path into a real message.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from harness.drift.shapes import Bundle, shape_of
from harness.drift.snapshot import Snapshot

# index key -> (sender of params, sender of the result)
SENDERS = {
    "client_requests": ("client", "server"),
    "client_notifications": ("client", None),
    "server_requests": ("server", "client"),
    "server_notifications": ("server", None),
}
KIND_LABEL = {
    "client_requests": "client request",
    "client_notifications": "client notification",
    "server_requests": "server request",
    "server_notifications": "server notification",
}


@dataclass(frozen=True)
class Use:
    """One place a definition sits: in the params or result of one method."""

    method: str
    kind: str        # index key: client_requests, server_notifications...
    part: str        # params | result
    sender: str      # client | server
    path: str        # JSON path of the definition inside the message: $.params.item

    @property
    def label(self) -> str:
        return self.method if self.part == "params" else f"{self.method} result"


def method_roots(snap: Snapshot) -> list[tuple[str, str, str, str, Any]]:
    """(kind, method, part, sender, schema node) for every params and result in the index."""
    roots = []
    for kind, (p_sender, r_sender) in SENDERS.items():
        for method, entry in snap.methods(kind).items():
            if entry.get("params") is not None:
                roots.append((kind, method, "params", p_sender, entry["params"]))
            if r_sender and entry.get("response"):
                roots.append((kind, method, "result", r_sender, entry["response"]))
    return roots


def children(node: Any, path: str, bundle: Bundle) -> tuple[set[str], list[tuple[Any, str]]]:
    """The definitions a node is made of (its top-level refs) and its inner nodes with paths."""
    shape = shape_of(node, bundle)
    names = set(shape.via.values()) | {o.via for o in shape.objects.values() if o.via}
    inner: list[tuple[Any, str]] = []
    keyed = len(shape.objects) > 1
    for key, obj in sorted(shape.objects.items()):
        prefix = f"{path}[{key}]" if keyed else path
        for name in sorted(obj.props):
            inner.append((obj.node(name), f"{prefix}.{name}"))
        if isinstance(obj.additional, dict):
            inner.append((obj.additional, f"{prefix}.*"))
    if shape.array:
        inner.append((shape.items_node(), f"{path}[*]"))
    return names, inner


def reach(snap: Snapshot) -> dict[str, list[Use]]:
    """Definition name -> every method part that reaches it, with its shortest path there."""
    bundle = snap
    out: dict[str, list[Use]] = {}
    for kind, method, part, sender, root in method_roots(snap):
        seen: set[str] = set()
        queue: deque[tuple[Any, str]] = deque([(root, f"$.{part}")])
        while queue:
            node, path = queue.popleft()
            names, inner = children(node, path, bundle)
            fresh = names - seen
            for name in sorted(fresh):
                out.setdefault(name, []).append(Use(method, kind, part, sender, path))
            seen |= names
            if names and not fresh:
                continue  # a type already walked for this method (recursive types end here)
            queue.extend(inner)
    return out


def sender_of(uses: list[Use]) -> str:
    got = {u.sender for u in uses}
    if not got:
        return "none"
    return "both" if len(got) > 1 else got.pop()
