"""The cassette: format v1 (JSONL), loading with file:line errors, and the writer.

Line 1 is the header ``{"codex_cassette": 1, "meta": {...}}``; every later line
is one event. The writer appends to ``<path>.partial`` (a header saying
``complete: false`` first, then one flushed line per event), so a recording cut
short by any kind of death still loads; ``finish()`` sets the final header and
renames onto the target in one atomic step.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from harness.errors import CassetteError
from harness.wire import decode, encode

FORMAT_VERSION = 1
SIDES = ("client", "server")
FAULT_KINDS = ("delay", "exit", "garbage", "partial", "stall", "close_stdout")
# One of these payload keys makes a line an event; each event has exactly one.
PAYLOADS = ("msg", "raw", "raw_b64", "eof", "exit", "fault")
EVENT_KEYS = {"i", "from", "t", "match", "nonl", "note", *PAYLOADS}


@dataclass(slots=True)
class Event:
    """One thing a side did: sent a message or a non-JSON line, closed, exited."""

    side: str
    t: float = 0.0
    msg: Any = None
    raw: bytes | None = None      # a line that was not JSON, verbatim
    newline: bool = True          # False for a final line that had no newline
    eof: bool = False
    exit: int | str | None = None  # exit code, or a signal name
    fault: dict[str, Any] | None = None
    match: dict[str, Any] | None = None  # per-event matching options (scenarios)
    index: int = 0                # "i": position in the recording
    line: int = 0                 # line in the cassette file (0: not from a file)
    # msg's own bytes (and newline) as the file holds them, for a server notification or
    # request in a line laid out as the writer lays it out: what a fake sends as is.
    # Code that changes a loaded msg must set wire to None (or use with_msg).
    wire: bytes | None = None

    def with_msg(self, msg: Any) -> "Event":
        """This event saying ``msg`` instead (the recorded bytes no longer apply)."""
        return dataclasses.replace(self, msg=msg, wire=None)

    @property
    def kind(self) -> str:
        if self.msg is not None:
            return "msg"
        if self.raw is not None:
            return "raw"
        if self.eof:
            return "eof"
        if self.exit is not None:
            return "exit"
        return "fault"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"i": self.index, "from": self.side, "t": round(self.t, 6)}
        if self.msg is not None:
            out["msg"] = self.msg
        elif self.raw is not None:
            try:
                out["raw"] = self.raw.decode("utf-8")
            except UnicodeDecodeError:
                out["raw_b64"] = base64.b64encode(self.raw).decode("ascii")
        elif self.eof:
            out["eof"] = True
        elif self.exit is not None:
            out["exit"] = self.exit
        elif self.fault is not None:
            out["fault"] = self.fault
        if not self.newline:
            out["nonl"] = True
        if self.match:
            out["match"] = self.match
        return out

    def describe(self) -> str:
        """A short human label: `client turn/start (id 3)`."""
        if self.msg is not None:
            msg = self.msg if isinstance(self.msg, dict) else {}
            name = msg.get("method") or ("error response" if "error" in msg else "response")
            rid = f" (id {msg['id']!r})" if "id" in msg else ""
            return f"{self.side} {name}{rid}"
        if self.raw is not None:
            return f"{self.side} non-JSON line {self.raw[:60]!r}"
        if self.eof:
            return f"{self.side} closes its stream"
        if self.exit is not None:
            return f"{self.side} exits with {self.exit}"
        return f"{self.side} fault {self.fault}"


@dataclass
class Cassette:
    path: Path | None
    meta: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", False))

    def where(self, event: Event) -> str:
        return f"{self.path}:{event.line}" if self.path and event.line else f"event {event.index}"

    def messages(self, side: str | None = None) -> Iterable[Event]:
        return (e for e in self.events if e.msg is not None and (side is None or e.side == side))

    def dump(self, path: str | Path) -> Path:
        """Write the whole cassette atomically (used for scenarios and rewrites)."""
        writer = CassetteWriter(path, self.meta)
        for event in self.events:
            writer.write(event)
        return writer.finish(complete=self.meta.get("complete", True))


def _fail(path: Path, line: int, message: str) -> CassetteError:
    return CassetteError(path, line, message)


def parse_header(path: Path, line_no: int, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or "codex_cassette" not in obj:
        raise _fail(path, line_no, "the first line must be the cassette header "
                    '{"codex_cassette": 1, "meta": {...}}; this file does not start with one '
                    "(is it a cassette at all?)")
    version = obj["codex_cassette"]
    if version != FORMAT_VERSION:
        raise _fail(path, line_no, f"cassette format version {version!r} is not supported; "
                    f"this codex-cassette reads version {FORMAT_VERSION}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail(path, line_no, "the header's meta must be an object")
    return meta


def parse_event(path: Path, line_no: int, obj: Any) -> Event:
    if not isinstance(obj, dict):
        raise _fail(path, line_no, f"an event must be a JSON object, not {type(obj).__name__}")
    side = obj.get("from")
    if side not in SIDES:
        raise _fail(path, line_no, f"unknown sender {side!r} in 'from': expected 'client' or 'server'")
    present = [k for k in PAYLOADS if k in obj]
    if len(present) != 1:
        what = "none" if not present else " and ".join(present)
        raise _fail(path, line_no, f"an event carries exactly one of msg, raw, eof, exit, fault; this one has {what}")
    unknown = set(obj) - EVENT_KEYS
    if unknown:
        raise _fail(path, line_no, f"unknown event field(s) {sorted(unknown)}")
    t = obj.get("t", 0.0)
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        raise _fail(path, line_no, f"'t' must be a number of seconds, not {t!r}")
    ev = Event(side=side, t=float(t), index=int(obj.get("i", line_no - 1)), line=line_no,
               newline=not obj.get("nonl", False), match=obj.get("match"))
    key = present[0]
    value = obj[key]
    if key == "msg":
        if not isinstance(value, dict):
            raise _fail(path, line_no, "'msg' must be a JSON-RPC message object")
        ev.msg = value
    elif key == "raw":
        if not isinstance(value, str):
            raise _fail(path, line_no, "'raw' must be a string")
        ev.raw = value.encode("utf-8")
    elif key == "raw_b64":
        try:
            ev.raw = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise _fail(path, line_no, "'raw_b64' is not valid base64") from None
    elif key == "eof":
        if value is not True:
            raise _fail(path, line_no, "'eof' must be true")
        ev.eof = True
    elif key == "exit":
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            raise _fail(path, line_no, "'exit' must be an exit code or a signal name")
        ev.exit = value
    else:
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in FAULT_KINDS:
            raise _fail(path, line_no, f"'fault' must be an object with one of {', '.join(FAULT_KINDS)}, "
                        f"not {value!r}")
        ev.fault = value
    return ev


# The head of an event line as the writer lays it out: i, from and t, then msg, last.
_WRITER_HEAD = re.compile(rb'\{"i":\d+,"from":"(?:client|server)","t":[-+.0-9eE]+,"msg":')


def _verbatim_msg(raw: bytes, obj: dict[str, Any]) -> bytes | None:
    """The bytes of ``msg`` in an event line laid out as the writer lays it out, else
    None; None too for a message holding a placeholder marker, which a replay must
    substitute."""
    head = _WRITER_HEAD.match(raw)
    if head is None or len(obj) != 4 or not raw.endswith(b"}") or b"{{" in raw:
        return None  # four keys: i, from, t and msg, which is therefore the last
    return raw[head.end():-1] + b"\n"


def load_cassette(path: str | Path) -> Cassette:
    """Load a cassette; every problem is a CassetteError naming file and line.

    A cassette whose header says ``complete: false`` was cut short while being
    written, so a torn last line is dropped instead of refused.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CassetteError(path, None, f"cannot read the cassette: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise CassetteError(path, None, "the file is empty; a cassette starts with a header line")
    cassette = Cassette(path=path)
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = decode(raw)
        except ValueError as exc:
            last = n == len(lines)
            if last and n > 1 and not cassette.complete:
                break  # torn final write of an interrupted recording
            raise _fail(path, n, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if n == 1:
            cassette.meta = parse_header(path, n, obj)
        else:
            event = parse_event(path, n, obj)
            if event.side == "server" and event.msg is not None and "method" in event.msg:
                # What a fake plays as is: server notifications and requests (a response
                # carries the live request's id, so it is always encoded anew).
                event.wire = _verbatim_msg(raw, obj)
            cassette.events.append(event)
    return cassette


def open_cassette(path: str | Path) -> Cassette:
    """A recorded cassette (.jsonl) or a YAML scenario compiled into one."""
    if Path(path).suffix in (".yaml", ".yml"):
        from harness.scenario import load_scenario  # scenario imports this module
        return load_scenario(path)
    return load_cassette(path)


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
