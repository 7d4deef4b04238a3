"""The cassette: format v1 (JSONL), its events, and loading with file:line errors.

Line 1 is the header ``{"codex_cassette": 1, "meta": {...}}``; every later line
is one event. Writing lives in harness.format.writer; opening either a cassette
or a YAML scenario by its file name in harness.format.load.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.errors import CassetteError
from harness.format.wire import decode

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
