"""A re-record written over an old cassette keeps every line whose meaning is unchanged.

``stable_bytes(old, new)`` takes the bytes of the cassette on disk and of the one just
recorded and returns the bytes to write: the old line, byte for byte, for each new
event that means the same as an old one; a new line only where the meaning changed.

How (docs/recording.md, "Re-recording over a cassette"):

1. Each event gets a key: sender, payload kind, and its message with every minted value
   masked (harness.format.minted), and the list of ids it masked. The key sequences are
   aligned: the common head and tail, then difflib (or, for a long stretch between them,
   a greedy walk that resynchronises on the nearest confirmed match). Events left over
   on both sides are paired by key when they moved a few events at most: a race.
2. From each pair, the ids at the same places give a renaming new -> old. A value that
   would take two names (or two values one name) is no renaming and is left out.
3. A pair whose ids all rename to the old event's keeps the old line, byte for byte
   (its ``t``, times and counts are the old ones). Any other event is a new line with
   the renaming applied to its message, client messages included (a client quoting a
   server's thread id gets the old id too), and a ``t`` fitted between its kept
   neighbours (``t`` never goes back on one side).
4. Paired events are written in the old order (a race keeps the old order), a new one
   after the event before it, and numbered again (``i``); a kept line whose number
   moved keeps its bytes but the number.

The header keeps its old bytes when only ``recorded_at`` would change.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from harness.format.minted import DEFAULT, MintedValues
from harness.format.wire import NotJSON, decode, encode

_HEAD = re.compile(rb'\{"i":(\d+),"from":"(client|server)","t":([0-9.eE+-]+),')


@dataclass(slots=True)
class _Line:
    data: bytes           # the line as the file holds it, newline included
    side: str
    t: float
    payload: bytes | None  # what follows i, from and t in the writer's layout (None: another layout)
    obj: dict[str, Any] | None = None  # parsed, when it had to be
    key: int = 0          # the masked body, interned
    ids: list[Any] = field(default_factory=list)  # the minted ids it masked, in order


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
        head = _HEAD.match(raw)
        if head is not None:
            try:
                out.append(_Line(raw, head.group(2).decode(), float(head.group(3)), raw[head.end():]))
                continue
            except ValueError:
                pass  # not a number after all: parsed below
        line = _Line(raw, "", 0.0, None)
        if _parse(line) is None:
            return None
        out.append(line)
    return parts[0], out


def _parse(line: _Line) -> dict[str, Any] | None:
    """The event of ``line`` (parsed once, when first needed); None if it is no event."""
    if line.obj is None:
        try:
            obj = decode(line.data)
        except (NotJSON, ValueError, RecursionError):
            return None
        if not isinstance(obj, dict) or obj.get("from") not in ("client", "server"):
            return None
        t = obj.get("t", 0.0)
        if type(t) not in (int, float) or isinstance(t, bool):
            return None
        if line.payload is not None and (obj["from"] != line.side or float(t) != line.t):
            return None
        line.obj, line.side, line.t = obj, obj["from"], float(t)
    return line.obj


def _sign(lines: list[_Line], minted: MintedValues, interned: dict[bytes, int],
          seen: dict[bytes, tuple[int, list[Any]]]) -> bool:
    """Give each line its key and ids; False when one is not an event. A payload met before
    (a big answer with nothing minted in it is the same bytes in both recordings) is
    neither parsed nor masked again."""
    for line in lines:
        known = seen.get(line.payload) if line.payload is not None else None
        if known is not None:
            line.key, line.ids = known
            continue
        obj = _parse(line)
        if obj is None:
            return False
        body = _body(obj)
        if "msg" in body:  # paths are counted from the message
            body["msg"], line.ids = minted.signature(body["msg"])
        line.key = interned.setdefault(encode(body), len(interned))
        if line.payload is not None:
            seen[line.payload] = (line.key, line.ids)
    return True


def _body(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("i", "t")}




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
        found = _greedy(mid_a, mid_b) if max(len(mid_a), len(mid_b)) > DIFFLIB_UP_TO else _difflib(mid_a, mid_b)
        pairs.update((head + j, head + i) for j, i in found)
    _pair_races(old, new, pairs)
    return pairs


# Up to this many events left between the common head and tail, difflib aligns them (its
# matching blocks are the longest runs); past it, difflib's time grows with the square of
# a key's repeats (a long session repeats the same masked delta thousands of times), so
# a greedy walk that resynchronises on the nearest confirmed match takes over.
DIFFLIB_UP_TO = 2000
CONFIRM = 3  # keys after a resynchronisation point that must agree too
REPLACED_UP_TO = 8  # events changed in place that the greedy walk looks past


def _difflib(a: list[int], b: list[int]) -> list[tuple[int, int]]:
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return [(block.b + k, block.a + k) for block in matcher.get_matching_blocks() for k in range(block.size)]


def _greedy(a: list[int], b: list[int]) -> list[tuple[int, int]]:
    """(new, old) pairs walking both sequences: equal keys pair; at a difference, the
    nearest place where the two agree again (for CONFIRM more keys) is where they go on;
    none: both events count as changed."""
    where_a: dict[int, list[int]] = {}
    where_b: dict[int, list[int]] = {}
    for n, key in enumerate(a):
        where_a.setdefault(key, []).append(n)
    for n, key in enumerate(b):
        where_b.setdefault(key, []).append(n)

    def agree(i: int, j: int) -> bool:
        k = min(CONFIRM, len(a) - i, len(b) - j)
        return k > 0 and a[i:i + k] == b[j:j + k] or i == len(a) and j == len(b)

    def next_at(places: list[int], after: int) -> int | None:
        k = bisect_left(places, after)
        return places[k] if k < len(places) else None

    found: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            found.append((j, i))
            i, j = i + 1, j + 1
            continue
        # The cheapest explanation that the next keys confirm: r events changed in place,
        # or a run of new events, or a run of events gone.
        options = [(r, i + r, j + r) for r in range(1, REPLACED_UP_TO + 1) if agree(i + r, j + r)][:1]
        inserted = next_at(where_b.get(a[i], []), j)   # b[j:inserted] are new events
        if inserted is not None and agree(i, inserted):
            options.append((inserted - j, i, inserted))
        deleted = next_at(where_a.get(b[j], []), i)    # a[i:deleted] are gone
        if deleted is not None and agree(deleted, j):
            options.append((deleted - i, deleted, j))
        _, i, j = min(options) if options else (0, i + 1, j + 1)
    return found


def _pair_races(old: list[_Line], new: list[_Line], pairs: dict[int, int]) -> None:
    """Pair the leftovers of the same key that moved by RACE_WINDOW events at most (two
    notifications swapped, one before or after the client's next request): a race."""
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


def _renaming(old: list[_Line], new: list[_Line], pairs: dict[int, int]) -> dict[Any, Any]:
    """new id -> old id, from the ids at the same places of paired events (their masked
    forms are equal, so their ids line up one to one)."""
    found: list[tuple[Any, Any]] = []
    for j, n in pairs.items():
        found.extend(zip(new[j].ids, old[n].ids))
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
    # A renaming onto a value the new recording also holds unrenamed would make two ids
    # one (request ids shifted by an extra request): none of those is a renaming either.
    present = {(type(v), v) for line in new for v in line.ids}
    clashing = True
    while clashing:
        clashing = False
        for key, value in list(names.items()):
            target = (type(value), value)
            if target != key and target in present and target not in names:
                del names[key]
                clashing = True
    return names


def _same_ids(new: list[Any], old: list[Any], names: dict[Any, Any]) -> bool:
    """Whether each id of a paired new event is renamed to the old event's id there."""
    missing = object()
    return all(names.get((type(nv), nv), missing) == ov and type(nv) is type(ov) for nv, ov in zip(new, old))


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
    obj = dict(_parse(line) or {})
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
    seen: dict[bytes, tuple[int, list[Any]]] = {}
    if not (_sign(old, minted, interned, seen) and _sign(new, minted, interned, seen)):
        return None
    pairs = _match(old, new)
    names = _renaming(old, new, pairs)

    # Decide per new event: kept (old line) or written new (renamed).
    old_pos: list[float] = []
    chosen: list[tuple[_Line, bool, float, Any | None]] = []
    last_old = -1.0
    for j, line in enumerate(new):
        n = pairs.get(j)
        if n is not None and _same_ids(line.ids, old[n].ids, names):
            chosen.append((old[n], True, line.t, None))
            old_pos.append(float(n))
            last_old = float(n)
            continue
        if n is not None:
            last_old = float(n)
        last_old += 1e-6
        old_pos.append(n if n is not None else last_old)
        msg = _parse(line).get("msg")  # type: ignore[union-attr]
        renamed = minted.renamed(msg, names) if names and msg is not None else msg
        chosen.append((line, False, line.t, {"msg": renamed} if renamed != msg else None))
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
