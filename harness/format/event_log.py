"""A cassette's events read lazily: the file's bytes kept, one offset per event line,
each line decoded when it is first asked for.

A 100 MB recording parsed up front took seconds before a fake answered its first
request and held 8 bytes of objects per byte of file; indexed, it answers at once
and holds little more than its bytes. The checks stay the loader's own, only later:
a line is parsed by the same function, the order of ``i`` and ``t`` is checked as the
lines are first decoded (always front to back), and a bad line is a CassetteError
naming file and line when the play reaches it.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar, overload

if TYPE_CHECKING:
    from pathlib import Path

# What a line decodes to: harness.format.cassette's Event (this module sits below it).
Event = TypeVar("Event")

# The head of an event line as the writer lays it out, up to the sender's first letter:
# enough to index a line's side without decoding it.
_HEAD = re.compile(rb'\{"i":\d+,"from":"(?:(c)lient|(s)erver)"')
_SIDES = {ord("c"): "client", ord("s"): "server"}
WINDOW = 4096  # decoded events kept: a played burst and the peer messages around it

# parse(line number, line bytes) -> (the event, whether its line said "i")
Parse = Callable[[int, bytes], "tuple[Any, bool]"]


class Order:
    """Events come in the order they happened: ``i`` only grows; ``t`` never goes back on one
    side. (Across sides a recording may step back by microseconds: the proxy stamps the two
    directions from two threads.)"""

    def __init__(self, path: Path, fail: Callable[[Path, int, str], Exception]) -> None:
        self.path, self.fail = path, fail
        self.last_i: tuple[int, int] | None = None  # (i, line)
        self.last_t: dict[str, tuple[float, int]] = {}

    def check(self, line_no: int, has_i: bool, event: Any) -> None:
        if has_i:
            if self.last_i is not None and event.index <= self.last_i[0]:
                raise self.fail(self.path, line_no, f"'i' goes backwards: {event.index} after {self.last_i[0]} "
                                f"at line {self.last_i[1]} (events must stay in the order they happened)")
            self.last_i = (event.index, line_no)
        before = self.last_t.get(event.side)
        if before is not None and event.t < before[0]:
            raise self.fail(self.path, line_no, f"'t' goes backwards on the {event.side} side: {event.t:g} s "
                            f"after {before[0]:g} s at line {before[1]} (events must stay in the order they "
                            "happened)")
        self.last_t[event.side] = (event.t, line_no)


class EventLog(Sequence[Event]):
    """The event lines of one cassette file, from ``start`` (the byte after the header)."""

    def __init__(self, data: bytes, start: int, first_line: int, parse: Parse, order: Order,
                 drop_torn_last: Callable[[bytes], bool]) -> None:
        self._data, self._parse, self._order = data, parse, order
        self._starts, self._ends, self._lines = array("q"), array("q"), array("q")
        self._sides = bytearray()   # ord("c") / ord("s") per event, 0 until known
        self._cache: dict[int, Event] = {}
        self._checked = 0           # events decoded and order-checked so far, front to back
        self._index(start, first_line)
        last = len(self._starts) - 1  # a torn line is the file's last, with or without its newline
        if last >= 0 and self._ends[last] >= len(data) - 1 and drop_torn_last(self._raw(last)):
            self._pop_last()

    def _index(self, pos: int, line_no: int) -> None:
        data, find, head = self._data, self._data.find, _HEAD.match
        starts, ends, lines, sides = self._starts, self._ends, self._lines, self._sides
        size = len(data)
        while pos < size:
            nl = find(b"\n", pos)
            if nl < 0:
                nl = size
            if data[pos] != 123 and not data[pos:nl].strip():  # 123: "{"; blank lines are passed over
                pos, line_no = nl + 1, line_no + 1
                continue
            m = head(data, pos, nl)
            sides.append(0 if m is None else 99 if m.group(1) else 115)  # 0: learnt when asked
            starts.append(pos)
            ends.append(nl)
            lines.append(line_no)
            pos, line_no = nl + 1, line_no + 1

    def _pop_last(self) -> None:
        for column in (self._starts, self._ends, self._lines):
            column.pop()
        self._sides.pop()

    def _raw(self, p: int) -> bytes:
        return self._data[self._starts[p]:self._ends[p]]

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, p: int) -> Event: ...

    @overload
    def __getitem__(self, p: slice) -> list[Event]: ...

    def __getitem__(self, p: Any) -> Any:
        try:
            return self._cache[p]
        except (KeyError, TypeError):  # not decoded lately; or a slice
            pass
        if isinstance(p, slice):
            return [self[q] for q in range(*p.indices(len(self)))]
        n = len(self._starts)
        if p < 0:
            p += n
        if not 0 <= p < n:
            raise IndexError("event position out of range")
        if p < self._checked:
            return self._keep(p, self._parse(self._lines[p], self._raw(p))[0])
        while self._checked < p:  # lines skipped over are checked all the same, in order
            self._keep(self._checked, self._first_read())
        return self._keep(p, self._first_read())

    def __iter__(self) -> Iterator[Event]:
        return (self[p] for p in range(len(self)))

    def _first_read(self) -> Any:
        """Decode the next line not yet seen, and check its place in the order."""
        q = self._checked
        line = self._lines[q]
        event, has_i = self._parse(line, self._raw(q))
        if self._sides[q] and self._sides[q] != ord(event.side[0]):
            # Its head says one sender, its JSON (a second "from" key, the last one) another:
            # the index and the play must not disagree on whose turn it is.
            raise self._order.fail(self._order.path, line, "'from' is given twice, with two senders")
        self._order.check(line, has_i, event)
        self._checked = q + 1
        return event

    def _keep(self, p: int, event: Event) -> Event:
        cache = self._cache
        if len(cache) >= WINDOW:  # drop the older half: plays move forward
            self._cache = cache = dict(islice(cache.items(), WINDOW // 2, None))
        cache[p] = event
        return event

    def side_of(self, p: int) -> str:
        """The sender of the event at ``p``: known from the index for a line laid out as the
        writer lays it out, read from the line itself for any other."""
        if not self._sides[p]:
            self._sides[p] = ord(self._parse(self._lines[p], self._raw(p))[0].side[0])
        return _SIDES[self._sides[p]]

    def position_of(self, line: int) -> int:
        """Where the event of file line ``line`` sits; len(self) if no event is there."""
        lines = self._lines
        p = bisect_left(lines, line)
        return p if p < len(lines) and lines[p] == line else len(lines)

    def materialize(self) -> list[Event]:
        """Every event, decoded and checked, as a list (what a small cassette is loaded as)."""
        seen = [self[p] for p in range(self._checked)]
        return seen + [self._first_read() for _ in range(self._checked, len(self))]
