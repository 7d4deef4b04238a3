"""A re-record written over an old cassette keeps every line whose meaning is unchanged.

``stable_bytes(old, new)`` takes the bytes of the cassette on disk and of the one just
recorded and returns the bytes to write: the old line, byte for byte, for each new
event that means the same as an old one; a new line only where the meaning changed.

How (docs/recording.md, "Re-recording over a cassette"):

1. Each event gets a key: sender, payload kind, and its body with every minted value
   masked (harness.format.minted). The two key sequences are aligned
   (difflib.SequenceMatcher, after the common head and tail are taken off), then the
   events left over on both sides are paired by key when they sit among the same events
   of the other side (a race: two server notifications swapped, a notification before or
   after the client's next request).
2. From each pair, the minted ids at the same places give a renaming new -> old. A value
   that would take two names (or two values one name) is no renaming and is left out.
3. The renaming is applied to every new event, client messages included (a client
   quoting a server's thread id gets the old id too). A pair whose renamed new event
   equals the old one once volatile values (times, token counts) are masked keeps the
   old line; its ``t`` is the old ``t``. Any other event is a new line, renamed, with a
   ``t`` fitted between its kept neighbours (``t`` never goes back on one side).
4. Events are written in the old order where they were paired (a race keeps the old
   order) and numbered again (``i``); a line whose number moved keeps its bytes but
   the number.

The header keeps its old bytes when only ``recorded_at`` would change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from harness.format.minted import DEFAULT, MintedValues
from harness.format.wire import NotJSON, decode, encode

_HEAD = re.compile(rb'\{"i":(\d+),"from":"(client|server)","t":([0-9.eE+-]+),')
# Only the last seconds of a changed stretch can be fitted between kept lines.
_PAYLOADS = ("msg", "raw", "raw_b64", "eof", "exit", "fault")


@dataclass(slots=True)
class _Line:
    data: bytes           # the line as the file holds it, newline included
    obj: dict[str, Any]   # parsed
    side: str
    t: float
    key: int = 0          # the masked body, interned


@dataclass(slots=True)
class StableResult:
    data: bytes
    kept: int      # events written as their old line
    written: int   # events written new
    header_kept: bool


def _lines(data: bytes) -> tuple[bytes, list[_Line]] | None:
    """The header line and the events of a cassette in the writer's layout; None when
    the bytes are not such a cassette (then nothing of it is kept)."""
    parts = data.splitlines(keepends=True)
    if not parts or not parts[-1].endswith(b"\n"):
        return None
    header = _meta_without_date(parts[0])
    if not isinstance(header, dict) or "codex_cassette" not in header:
        return None
    out: list[_Line] = []
    for raw in parts[1:]:
        if not raw.strip():
            return None
        try:
            obj = decode(raw)
        except (NotJSON, ValueError, RecursionError):
            return None
        if not isinstance(obj, dict) or obj.get("from") not in ("client", "server"):
            return None
        t = obj.get("t", 0.0)
        if type(t) not in (int, float):
            return None
        out.append(_Line(raw, obj, obj["from"], float(t)))
    return parts[0], out


def _body(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("i", "t")}


def _on_msg(body: dict[str, Any], change: Any) -> dict[str, Any]:
    """``body`` with its message (paths are counted from it) passed through ``change``."""
    return {**body, "msg": change(body["msg"])} if "msg" in body else body


def _meta_without_date(header: bytes) -> Any:
    try:
        obj = decode(header)
    except (NotJSON, ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("meta"), dict):
        obj = {**obj, "meta": {k: v for k, v in obj["meta"].items() if k != "recorded_at"}}
    return obj


def _epochs(lines: list[_Line]) -> list[tuple[int, int]]:
    """Per event, how many events of each side came before it."""
    seen = {"client": 0, "server": 0}
    out = []
    for line in lines:
        out.append((seen["client"], seen["server"]))
        seen[line.side] += 1
    return out


def _match(old: list[_Line], new: list[_Line]) -> dict[int, int]:
    """new index -> old index for the events that stand for each other."""
    pairs: dict[int, int] = {}
    a = [x.key for x in old]
    b = [x.key for x in new]
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        pairs[head] = head
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        pairs[len(b) - 1 - tail] = len(a) - 1 - tail
        tail += 1
    mid_a, mid_b = a[head:len(a) - tail], b[head:len(b) - tail]
    if mid_a and mid_b:
        matcher = SequenceMatcher(None, mid_a, mid_b, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                pairs[head + block.b + k] = head + block.a + k
    _pair_races(old, new, pairs)
    return pairs


def _pair_races(old: list[_Line], new: list[_Line], pairs: dict[int, int]) -> None:
    """Pair the leftovers of the same key that moved only among events of their own side
    or across events of the other side that were not themselves changed: a race."""
    used = set(pairs.values())
    waiting: dict[int, list[int]] = {}
    for n, line in enumerate(old):
        if n not in used:
            waiting.setdefault(line.key, []).append(n)
    if not waiting:
        return
    # Where the new event sits among the paired ones: between the old positions of its
    # paired neighbours. A leftover old event of the same key within a few events of
    # that place is taken to be it.
    last_old = -1
    for j, line in enumerate(new):
        if j in pairs:
            last_old = pairs[j]
            continue
        candidates = waiting.get(line.key)
        if not candidates:
            continue
        best = min(candidates, key=lambda n: abs(n - last_old))
        if abs(best - last_old) <= RACE_WINDOW:
            candidates.remove(best)
            pairs[j] = best


# How far (in events) a paired event may have moved for its old place to be kept.
RACE_WINDOW = 8


def _renaming(old: list[_Line], new: list[_Line], pairs: dict[int, int],
              minted: MintedValues) -> dict[Any, Any]:
    found: list[tuple[Any, Any]] = []
    for j, n in pairs.items():
        minted.id_pairs(new[j].obj.get("msg"), old[n].obj.get("msg"), found)
    names: dict[Any, Any] = {}
    back: dict[Any, Any] = {}
    bad: set[Any] = set()
    for nv, ov in found:
        nk, ok = (type(nv), nv), (type(ov), ov)
        if nk[0] is not ok[0]:
            bad.add(nk)
            continue
        forward, backward = names.setdefault(nk, ov), back.setdefault(ok, nv)
        if forward != ov or backward != nv:
            bad.update((nk, (type(backward), backward)))
    for key in bad:
        names.pop(key, None)
    return names


def _fit_times(out: list[tuple[_Line, bool, float]]) -> list[float]:
    """``t`` for every output line: a kept line's old ``t``; a new line's ``t`` taken from
    the recording, moved by the offset of the kept line before it, kept between its
    side's kept neighbours (t never goes back on one side)."""
    times = [0.0] * len(out)
    next_kept = {"client": float("inf"), "server": float("inf")}
    limit = [0.0] * len(out)
    for k in range(len(out) - 1, -1, -1):
        line, kept, _ = out[k]
        limit[k] = next_kept[line.side]
        if kept:
            next_kept[line.side] = line.t
    prev = {"client": 0.0, "server": 0.0}
    offset = 0.0
    for k, (line, kept, new_t) in enumerate(out):
        if kept:
            t = line.t
            offset = line.t - new_t
        else:
            t = min(max(new_t + offset, prev[line.side]), max(limit[k], prev[line.side]))
        t = round(t, 6)
        times[k] = t
        prev[line.side] = t
    return times


def _number(number: int, t: float, line: _Line, renamed: Any | None) -> bytes:
    head = _HEAD.match(line.data)
    if renamed is None and head is not None:
        if int(head.group(1)) == number and float(head.group(3)) == t:
            return line.data
        return (b'{"i":%d,"from":"%s","t":%s,' % (number, head.group(2), repr(t).encode())
                + line.data[head.end():])
    obj = dict(line.obj)
    if renamed is not None:
        obj.update(renamed)
    return encode({"i": number, "from": line.side, "t": t,
                   **{k: v for k, v in obj.items() if k not in ("i", "from", "t")}})


def stable_bytes(old_data: bytes, new_data: bytes, minted: MintedValues = DEFAULT) -> StableResult | None:
    """The cassette to write for ``new_data`` recorded over ``old_data``; None when the old
    bytes are not a cassette whose lines can be kept (the new recording is then written
    as it is)."""
    old_parsed, new_parsed = _lines(old_data), _lines(new_data)
    if old_parsed is None or new_parsed is None:
        return None
    (old_header, old), (new_header, new) = old_parsed, new_parsed
    interned: dict[bytes, int] = {}
    for line in (*old, *new):
        body = _on_msg(_body(line.obj), lambda m: minted.masked(m, ids=True))
        line.key = interned.setdefault(encode(body), len(interned))
    pairs = _match(old, new)
    names = _renaming(old, new, pairs, minted)

    # Decide per new event: kept (old line) or written new (renamed).
    old_pos: list[float] = []
    chosen: list[tuple[_Line, bool, float, Any | None]] = []
    last_old = -1.0
    for j, line in enumerate(new):
        body = _body(line.obj)
        renamed = _on_msg(body, lambda m: minted.renamed(m, names)) if names else body
        n = pairs.get(j)
        if n is not None and (_on_msg(renamed, lambda m: minted.masked(m, ids=False))
                              == _on_msg(_body(old[n].obj), lambda m: minted.masked(m, ids=False))):
            chosen.append((old[n], True, line.t, None))
            old_pos.append(float(n))
            last_old = float(n)
            continue
        if n is not None:
            last_old = float(n)
        last_old += 1e-6
        old_pos.append(n if n is not None else last_old)
        chosen.append((line, False, line.t, renamed if renamed != body else None))
    order = sorted(range(len(new)), key=lambda k: (old_pos[k], k))
    out = [chosen[k] for k in order]
    times = _fit_times([(line, kept, t) for line, kept, t, _ in out])

    header_kept = _meta_without_date(old_header) == _meta_without_date(new_header)
    parts = [old_header if header_kept else new_header]
    kept_count = 0
    for number, ((line, kept, _, renamed), t) in enumerate(zip(out, times), start=1):
        kept_count += kept
        parts.append(_number(number, t, line, renamed))
    return StableResult(b"".join(parts), kept_count, len(out) - kept_count, header_kept)
