"""How bad a schema change is for a client, by who sends the changed type; and gates.

What the client sends may widen safely and breaks when narrowed; what the server sends
may narrow safely and is risky or breaking when widened (docs/drift.md has the table).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

SEVERITIES = ("breaking", "risky", "additive")
RANK = {s: i for i, s in enumerate(SEVERITIES)}

# kind -> (severity when the client sends the type, when the server sends it)
VERDICTS: dict[str, tuple[str, str]] = {
    "field-added-required": ("breaking", "additive"),
    "field-added-optional": ("additive", "additive"),
    "required-field-removed": ("breaking", "breaking"),
    "optional-field-removed": ("breaking", "risky"),
    "field-renamed": ("breaking", "breaking"),
    "became-required": ("breaking", "additive"),
    "became-optional": ("additive", "breaking"),
    "became-nullable": ("additive", "breaking"),
    "became-non-nullable": ("breaking", "additive"),
    "enum-value-added": ("additive", "risky"),
    "enum-value-removed": ("breaking", "additive"),
    "known-value-added": ("additive", "additive"),
    "known-value-removed": ("risky", "additive"),
    "enum-opened": ("additive", "risky"),
    "enum-closed": ("breaking", "additive"),
    "variant-added": ("additive", "risky"),
    "variant-removed": ("breaking", "additive"),
    "type-widened": ("additive", "breaking"),
    "type-narrowed": ("breaking", "additive"),
    "type-changed": ("breaking", "breaking"),
    "range-widened": ("additive", "risky"),
    "range-narrowed": ("breaking", "additive"),
    "alternatives-widened": ("additive", "breaking"),
    "alternatives-narrowed": ("breaking", "additive"),
    "unknown-fields-accepted": ("additive", "risky"),
    "unknown-fields-rejected": ("breaking", "additive"),
    "constraint-changed": ("risky", "risky"),
}
# Additions a client only sees once it opted in: gated, they cannot reach a client that did not.
# A surface codex labels "EXPERIMENTAL - ..." (every thread/realtime/* notification, its
# ThreadRealtimeItem): only a client that opted into `experimentalApi` starts it.
EXPERIMENTAL = re.compile(r"^\s*EXPERIMENTAL\s+-")
GATEABLE = {"enum-value-added", "known-value-added", "enum-opened", "variant-added", "type-widened", "field-added-optional",
            "method-added"}


def worst(severities: Iterable[str]) -> str:
    return min(severities, key=RANK.__getitem__, default="additive")


def verdict(kind: str, senders: set[str]) -> str:
    """The severity of a change of `kind` to a type the given sides send (none: additive)."""
    client, server = VERDICTS[kind]
    got = [client] if "client" in senders else []
    got += [server] if "server" in senders else []
    return worst(got)


class Gates:
    """Initialize capabilities that gate parts of the protocol, read from the schema itself:
    a description that names a boolean capability (`requiredHumanApproval`) or
    `experimentalApi`, a description that starts "EXPERIMENTAL -" (experimentalApi), or a
    capability whose description names the added thing."""

    def __init__(self, bundle: dict[str, Any]):
        defs = bundle.get("definitions", {})
        caps = (defs.get("v2", {}).get("InitializeCapabilities") or defs.get("InitializeCapabilities") or {})
        self.caps = {name: str(schema.get("description", ""))
                     for name, schema in (caps.get("properties") or {}).items()
                     if isinstance(schema, dict) and _is_boolean(schema)}

    def gate(self, texts: Iterable[str], names: Iterable[str] = ()) -> str | None:
        for text in texts:
            if not text:
                continue
            if EXPERIMENTAL.match(text):
                return "experimentalApi"
            for cap in sorted(self.caps, key=lambda c: (c == "experimentalApi", c)):
                if f"`{cap}`" in text:
                    return cap
            if re.search(r"\bexperimentalApi\b", text):
                return "experimentalApi"
        for name in names:
            for cap, doc in sorted(self.caps.items()):
                if f"`{name}`" in doc:
                    return cap
        return None


def experimental(text: str) -> bool:
    return bool(EXPERIMENTAL.match(text or ""))


def _is_boolean(schema: dict[str, Any]) -> bool:
    t = schema.get("type")
    return t == "boolean" or (isinstance(t, list) and "boolean" in t and "object" not in t and "array" not in t)
