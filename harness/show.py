"""`codex-cassette show PATH`: a cassette as a two-column conversation timeline.

People would rather look at a conversation than read JSONL: client on the
left, server on the right, approvals and interrupts flagged, runs of streamed
deltas folded into one row with the text they add up to.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from rich.cells import cell_len, chop_cells, set_cell_size

from harness.format.cassette import Cassette, Event

from harness.format.load import open_cassette
from harness.format.wire import Kind, classify
from harness.safe_text import printable

APPROVALS = ("requestApproval", "execCommandApproval", "applyPatchApproval", "requestUserInput", "elicitation")
FOLDABLE_SUFFIXES = ("/delta", "Delta", "/outputDelta")


@dataclass
class Row:
    line: int
    t: float
    side: str
    text: str
    mark: str = " "


def _dict(value: Any) -> dict[str, Any]:
    """A message part as a mapping, whatever the file holds there (a cassette may hold anything)."""
    return value if isinstance(value, dict) else {}


def _method(msg: dict[str, Any], default: str = "") -> str:
    method = msg.get("method", default)
    return method if isinstance(method, str) else repr(method)


def _brief(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _params_hint(msg: dict[str, Any]) -> str:
    """The one field that says most about a message, for its row."""
    method = _method(msg)
    params = _dict(msg.get("params"))
    if method.endswith("requestApproval") or method in ("execCommandApproval", "applyPatchApproval"):
        command = params.get("command")
        if isinstance(command, list):
            command = " ".join(map(str, command))
        return f"`{command}`" if command else params.get("reason") or ""
    if method == "turn/start":
        inputs = params.get("input") if isinstance(params.get("input"), list) else []
        texts = [str(i.get("text", "")) for i in inputs if isinstance(i, dict)]
        model = f" model={params['model']}" if params.get("model") else ""
        return f"\"{' '.join(texts)}\"{model}"
    if method == "turn/completed":
        return f"status={_dict(params.get('turn')).get('status')}"
    if method in ("item/started", "item/completed"):
        item = _dict(params.get("item"))
        extra = item.get("text") or item.get("command") or ""
        return f"{item.get('type')} {_brief(extra, 40)}".strip()
    if method == "thread/status/changed":
        return _brief(params.get("status"), 40)
    if method == "error":
        return _brief(_dict(params.get("error")).get("message"), 60)
    return ""


def _result_hint(result: Any) -> str:
    """What a result is about, in a few words: its well-known ids and values, else its keys."""
    if not isinstance(result, dict):
        return _brief(result, 60)
    if not result:
        return "{}"
    picks = []
    for key in ("thread", "turn"):
        if isinstance(result.get(key), dict) and "id" in result[key]:
            status = result[key].get("status")
            picks.append(f"{key} {_brief(result[key]['id'], 40)}" + (f" {status}" if isinstance(status, str) else ""))
    for key in ("model", "modelProvider", "userAgent", "decision"):
        if isinstance(result.get(key), str):
            picks.append(f"{key}={_brief(result[key], 40)}")
    if "data" in result and isinstance(result["data"], list):
        picks.append(f"{len(result['data'])} item(s)")
    return ", ".join(picks) if picks else "{" + ", ".join(list(result)[:6]) + ("…" if len(result) > 6 else "") + "}"


def _message_row(event: Event) -> Row:
    msg = event.msg if isinstance(event.msg, dict) else {}
    kind = classify(msg)
    rid = f" #{msg['id']}" if "id" in msg else ""
    mark = " "
    if kind is Kind.RESPONSE:
        if "error" in msg:
            err = msg["error"] if isinstance(msg["error"], dict) else {}
            text = f"error{rid} {err.get('code')}: {err.get('message')}"
            mark = "!"
        else:
            result = msg.get("result")
            decision = result.get("decision") if isinstance(result, dict) else None
            text = (f"decision{rid}: {_brief(decision, 40)}" if decision is not None
                    else f"result{rid} {_result_hint(result)}")
            if decision is not None:
                mark = "✓" if decision in ("accept", "acceptForSession") else "✗"
    else:
        method = _method(msg, "?")
        hint = _params_hint(msg)
        arrow = "⇢" if kind is Kind.NOTIFICATION else "→"
        text = f"{arrow} {method}{rid} {hint}".rstrip()
        if kind is Kind.REQUEST and any(a in method for a in APPROVALS):
            mark = "?"
        elif method == "turn/interrupt":
            mark = "✋"
        elif method == "error" or (method == "turn/completed" and "failed" in hint):
            mark = "!"
    return Row(event.line, event.t, event.side, text, mark)


def _delta_key(event: Event) -> str | None:
    msg = event.msg
    if not isinstance(msg, dict) or classify(msg) is not Kind.NOTIFICATION:
        return None
    method = msg.get("method", "")
    return method if isinstance(method, str) and method.endswith(FOLDABLE_SUFFIXES) else None


def rows(cassette: Cassette, fold: bool = True) -> list[Row]:
    out: list[Row] = []
    events = cassette.events
    i = 0
    while i < len(events):
        ev = events[i]
        key = _delta_key(ev) if fold else None
        if key:
            j = i
            text = []
            while j < len(events) and events[j].side == ev.side and _delta_key(events[j]) == key:
                delta = _dict(events[j].msg.get("params")).get("delta")
                text.append(delta if isinstance(delta, str) else "")
                j += 1
            if j - i > 1:
                out.append(Row(ev.line, ev.t, ev.side, f"⇢ {key} ×{j - i} \"{''.join(text)}\"", "…"))
                i = j
                continue
        if ev.msg is not None:
            out.append(_message_row(ev))
        elif ev.raw is not None:
            nl = "" if ev.newline else " (no newline)"
            out.append(Row(ev.line, ev.t, ev.side, f"non-JSON line{nl}: {ev.raw[:200].decode('utf-8', 'replace')}", "!"))
        elif ev.eof:
            out.append(Row(ev.line, ev.t, ev.side, "closes its stream (EOF)", "■"))
        elif ev.exit is not None:
            out.append(Row(ev.line, ev.t, ev.side, f"process exits: {ev.exit}", "■"))
        else:
            out.append(Row(ev.line, ev.t, ev.side, f"fault {json.dumps(ev.fault)}", "!"))
        i += 1
    return out


def _wrap(text: str, width: int) -> list[str]:
    """At most three pieces of ``width`` terminal cells (a CJK character or an emoji takes two)."""
    if width <= 0 or cell_len(text) <= width:
        return [text]
    return chop_cells(text, width)[:3]


def render(cassette: Cassette, out: TextIO, width: int | None = None, fold: bool = True) -> None:
    width = width or shutil.get_terminal_size((140, 40)).columns
    meta = cassette.meta
    client = meta.get("client") or {}
    client_s = f"{client.get('name')} {client.get('version')}" if isinstance(client, dict) and client else "?"
    # Everything printed is escaped: a cassette's strings can hold terminal escape sequences.
    head = (f"{cassette.path}  codex {_brief(meta.get('codex_version', '?'), 40)}  client {_brief(client_s, 60)}  "
            f"recorded {_brief(meta.get('recorded_at', '?'), 40)}  {'complete' if cassette.complete else 'INCOMPLETE'}")
    out.write(printable(head, keep="") + "\n")
    prefix = 5 + 1 + 8 + 2 + 2
    col = max(20, (width - prefix - 3) // 2)
    out.write(f"{'line':>5} {'t(s)':>8}    {'CLIENT':<{col}} │ SERVER\n")
    out.write("─" * min(width, prefix + 2 * col + 3) + "\n")
    for row in rows(cassette, fold):
        pieces = _wrap(printable(row.text, keep=""), col)
        for n, piece in enumerate(pieces):
            line = f"{row.line:>5} {row.t:>8.3f}" if n == 0 else " " * 14
            # Padded by terminal cells, not characters: wide text would push the divider right.
            mark = row.mark if n == 0 else " "
            mark = " " * max(0, 2 - cell_len(mark)) + mark  # right-aligned in two cells (✋ takes both)
            if row.side == "client":
                out.write(f"{line} {mark} {set_cell_size(piece, col)} │\n")
            else:
                out.write(f"{line} {mark} {'':<{col}} │ {piece}\n")
    counts = {s: sum(1 for e in cassette.events if e.side == s) for s in ("client", "server")}
    out.write(f"{len(cassette.events)} events: {counts['client']} from the client, {counts['server']} from the server\n")


if os.environ.get("PYTHONIOENCODING") is None and hasattr(sys.stdout, "reconfigure"):
    # The timeline uses a few box-drawing and check-mark characters.
    try:
        sys.stdout.reconfigure(errors="replace")
    except (AttributeError, ValueError):
        pass
