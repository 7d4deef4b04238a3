"""The append-only cassette writer with an atomic finish.

The writer appends to ``<path>.partial`` (a header saying ``complete: false``
first, then one flushed line per event), so a recording cut short by any kind of
death still loads; ``finish()`` sets the final header and renames onto the
target in one atomic step.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.format.cassette import FORMAT_VERSION, Cassette, Event
from harness.format.wire import encode


class CassetteWriter:
    """Append-only, crash-safe cassette writer.

    Events go to ``<path>.partial`` as they happen, each line flushed, so a
    killed recorder leaves a loadable, ``complete: false`` cassette behind.
    Inside ``batch()`` (a burst the recorder already holds in memory) lines are
    flushed once at its end instead: a burst of small lines costs one write.
    """

    def __init__(self, path: str | Path, meta: dict[str, Any] | None = None, *,
                 clock: Any = time.monotonic) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.meta = dict(meta or {})
        self.meta.setdefault("recorded_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.meta["complete"] = False
        self._clock = clock
        self._t0: float | None = None
        self._count = 0
        self._closed = False
        self._autoflush = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.partial, "wb")
        self._line(self._header())

    def _header(self) -> dict[str, Any]:
        return {"codex_cassette": FORMAT_VERSION, "meta": self.meta}

    def _line(self, obj: dict[str, Any]) -> None:
        self._fh.write(encode(obj))
        if self._autoflush:
            self._fh.flush()

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._autoflush = False
        try:
            yield
        finally:
            self._autoflush = True
            if not self._closed:
                self._fh.flush()

    def now(self) -> float:
        t = self._clock()
        if self._t0 is None:
            self._t0 = t
        return t - self._t0

    def write(self, event: Event) -> Event:
        if self._closed:
            raise RuntimeError("cassette writer already finished")
        self._count += 1
        event.index = self._count
        self._line(event.to_json())
        return event

    def write_verbatim(self, side: str, t: float, msg_json: bytes, newline: bool = True) -> int:
        """Append a message event around the peer's own JSON bytes (already known to be a
        JSON object on one line): no re-encoding, and the cassette keeps what was said."""
        if self._closed:
            raise RuntimeError("cassette writer already finished")
        self._count += 1
        head = b'{"i":%d,"from":"%s","t":%s,"msg":' % (self._count, side.encode(), repr(round(t, 6)).encode())
        self._fh.write(head + msg_json.strip() + (b"}\n" if newline else b',"nonl":true}\n'))
        if self._autoflush:
            self._fh.flush()
        return self._count

    def record(self, side: str, **payload: Any) -> Event:
        """Append an event stamped with the time since the first event."""
        return self.write(Event(side=side, t=self.now(), **payload))

    @property
    def count(self) -> int:
        return self._count

    def finish(self, *, complete: bool = True, **meta: Any) -> Path:
        """Close, set the final header, and move the cassette into place atomically."""
        if self._closed:
            return self.path
        self._closed = True
        self._fh.close()
        self.meta.update(meta)
        self.meta["complete"] = complete
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(self.partial, "rb") as src, open(tmp, "wb") as dst:
            src.readline()  # the provisional header
            dst.write(encode(self._header()))
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)
        os.unlink(self.partial)
        return self.path


def dump_cassette(cassette: Cassette, path: str | Path) -> Path:
    """Write a whole cassette atomically (compiled scenarios, rewrites)."""
    writer = CassetteWriter(path, cassette.meta)
    for event in cassette.events:
        writer.write(event)
    return writer.finish(complete=cassette.meta.get("complete", True))
