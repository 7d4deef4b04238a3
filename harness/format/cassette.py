"""The cassette: format v1 (JSONL), its events, and loading with file:line errors.

Line 1 is the header ``{"codex_cassette": 1, "meta": {...}}``; every later line
is one event. Writing lives in harness.format.writer; opening either a cassette
or a YAML scenario by its file name in harness.format.load.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.safe_text import pointed, quoted
from harness.errors import CassetteError
from harness.format.event_log import EventLog, Order
from harness.format.values import problem, seconds
from harness.format.wire import NotJSON, decode

FORMAT_VERSION = 1
SIDES = ("client", "server")
FAULT_KINDS = ("delay", "exit", "garbage", "partial", "stall", "close_stdout")
# One of these payload keys makes a line an event; each event has exactly one.
PAYLOADS = ("msg", "raw", "raw_b64", "eof", "exit", "fault")
MATCH_MODES = ("exact", "subset", "method")
# Modifiers on a payload: nonl (a raw line), binary (a raw WebSocket binary frame), close
# (the close frame that ended a WebSocket connection: on eof).
EVENT_KEYS = {"i", "from", "t", "match", "nonl", "note", "binary", "close", *PAYLOADS}
# What the harness reads of a header's meta (the rest is for people): checked by its rule.
HEADER_FIELDS = ("complete", "codex_version")
# From this size a cassette is indexed and decoded as it plays, not parsed up front.
LAZY_FROM = 4 << 20


@dataclass(slots=True)
class Event:
    """One thing a side did: sent a message or a non-JSON line, closed, exited."""

    side: str
    t: float = 0.0
    msg: Any = None
    raw: bytes | None = None      # a line that was not JSON, verbatim
    newline: bool = True          # False for a final line that had no newline
    eof: bool = False
    # On a socket, eof is the end of the connection: with the close frame that ended it
    # ({"code": 1000, "reason": ""}), or None when it dropped without one.
    close: dict[str, Any] | None = None
    binary: bool = False          # raw: a WebSocket binary frame, not a text line
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
                import base64  # a rare event: not on every fake's start-up

                out["raw_b64"] = base64.b64encode(self.raw).decode("ascii")
            if self.binary:
                out["binary"] = True
        elif self.eof:
            out["eof"] = True
            if self.close is not None:
                out["close"] = self.close
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
        if self.eof and self.close is not None:
            return f"{self.side} closes the connection (close frame {self.close.get('code')})"
        if self.eof:
            return f"{self.side} closes its stream"
        if self.exit is not None:
            return f"{self.side} exits with {self.exit}"
        return f"{self.side} fault {self.fault}"


@dataclass
class Cassette:
    path: Path | None
    meta: dict[str, Any] = field(default_factory=dict)
    # A list, or for a big file an EventLog: a sequence that decodes as it is read.
    events: list[Event] | EventLog[Event] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", False))

    def where(self, event: Event) -> str:
        return f"{self.path}:{event.line}" if self.path and event.line else f"event {event.index}"

    def side_of(self, pos: int) -> str:
        """The sender of the event at ``pos`` (an indexed one is not decoded for it)."""
        events = self.events
        return events.side_of(pos) if isinstance(events, EventLog) else events[pos].side

    def position_of(self, event: Event) -> int:
        """Where ``event`` sits among this cassette's events; len(events) if nowhere."""
        events = self.events
        if isinstance(events, EventLog):
            return events.position_of(event.line)
        return next((n for n, e in enumerate(events) if e is event), len(events))

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
        raise _fail(path, line_no, f"cassette format version {quoted(version, 80)} is not supported; "
                    f"this codex-cassette reads version {FORMAT_VERSION}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail(path, line_no, "the header's meta must be an object")
    for key in HEADER_FIELDS:
        if key in meta:
            _check(path, line_no, "meta." + key, meta[key])
    return meta


def parse_event(path: Path, line_no: int, obj: Any) -> Event:
    if not isinstance(obj, dict):
        raise _fail(path, line_no, f"an event must be a JSON object, not {type(obj).__name__}")
    side = obj.get("from")
    if side not in SIDES:
        raise _fail(path, line_no, f"unknown sender {quoted(side, 80)} in 'from': expected 'client' or 'server'")
    present = [k for k in PAYLOADS if k in obj]
    if len(present) != 1:
        what = "none" if not present else " and ".join(present)
        raise _fail(path, line_no, f"an event carries exactly one of msg, raw, eof, exit, fault; this one has {what}")
    unknown = set(obj) - EVENT_KEYS
    if unknown:
        raise _fail(path, line_no, f"unknown event field(s) {quoted(sorted(unknown), 80)}")
    for key in _CHECKED_FIELDS:
        if key in obj:
            _check(path, line_no, key, obj[key])
    ev = Event(side=side, t=float(obj.get("t", 0.0)), index=obj.get("i", line_no - 1), line=line_no,
               newline=not obj.get("nonl", False), match=_match_options(path, line_no, obj.get("match")))
    key = present[0]
    if "close" in obj and key != "eof":
        raise _fail(path, line_no, "'close' (a WebSocket close frame) goes only on an eof event")
    if "binary" in obj:
        if key not in ("raw", "raw_b64"):
            raise _fail(path, line_no, "'binary' goes only on a raw event, as true")
        ev.binary = True
    value = obj[key]
    if key == "msg":
        ev.msg = value
    elif key == "raw":
        ev.raw = value.encode("utf-8", "surrogatepass")  # a hand-written "\\ud800" too
    elif key == "raw_b64":
        import base64  # a rare event: not on every fake's start-up

        try:
            ev.raw = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise _fail(path, line_no, "'raw_b64' is not valid base64") from None
    elif key == "eof":
        ev.eof = True
        ev.close = _close_frame(path, line_no, obj.get("close"))
    elif key == "exit":
        ev.exit = value
    else:
        ev.fault = _fault(path, line_no, value)
    return ev


# The fields of an event checked by their rule (harness.format.values); from, match, fault
# and close have a shape of their own, checked here.
_CHECKED_FIELDS = ("i", "t", "nonl", "binary", "note", "msg", "raw", "raw_b64", "eof", "exit")


def _check(path: Path, line_no: int, key: str, value: Any) -> None:
    said = problem(key, value)
    if said is not None:
        raise _fail(path, line_no, said)


def _match_options(path: Path, line_no: int, match: Any) -> dict[str, Any] | None:
    """The per-event matching options, checked here so a replay never trips on them."""
    if match is None:
        return None
    if not isinstance(match, dict) or set(match) - {"mode", "ignore"}:
        raise _fail(path, line_no, "'match' must be an object with 'mode' and/or 'ignore'")
    if "mode" in match and match["mode"] not in MATCH_MODES:
        raise _fail(path, line_no, f"'match.mode' must be one of {', '.join(MATCH_MODES)}, "
                    f"not {quoted(match['mode'], 80)}")
    ignore = match.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise _fail(path, line_no, "'match.ignore' must be a list of dotted paths")
    return match


def _fault(path: Path, line_no: int, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in FAULT_KINDS:
        raise _fail(path, line_no, f"'fault' must be an object with one of {', '.join(FAULT_KINDS)}, "
                    f"not {quoted(value, 80)}")
    (kind, arg), = value.items()
    _check(path, line_no, "fault " + kind, arg)
    return value


def _close_frame(path: Path, line_no: int, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    code = value.get("code") if isinstance(value, dict) else None
    if (not isinstance(code, int) or isinstance(code, bool) or not 1000 <= code <= 4999
            or not isinstance(value.get("reason", ""), str) or set(value) - {"code", "reason"}):
        raise _fail(path, line_no, "'close' must be a WebSocket close frame such as "
                    '{"code": 1000, "reason": ""} (code 1000-4999)')
    return {"code": code, "reason": value.get("reason", "")}


# An event line as the writer lays it out: i, from and t (JSON's own number forms), then
# msg, last. Such a line is read by decoding its msg alone (a replay's bulk: streamed deltas).
_WRITER_HEAD = re.compile(rb'\{"i":(0|[1-9][0-9]*),"from":"(client|server)",'
                          rb'"t":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?),"msg":')


def _writer_line(line_no: int, raw: bytes) -> Event | None:
    """The event of a line in the writer's layout, else None (the full parse then decides).

    Exact: msg's bytes decode alone only if the line holds nothing after it, so the line has
    the four keys and nothing else, each one valid; what the full parse would check of them
    is checked here. A server notification or request keeps msg's own bytes (``wire``): what
    a fake sends as is (a response carries the live request's id, so it is encoded anew; a
    message with a marker must have it substituted)."""
    head = _WRITER_HEAD.match(raw)
    if head is None or not raw.endswith(b"}"):
        return None
    body = raw[head.end():-1]
    try:
        msg = decode(body)
    except NotJSON:
        return None
    i, sender, t = head.groups()
    t = float(t)
    if not isinstance(msg, dict) or not seconds(t):
        return None
    side = "client" if sender == b"client" else "server"
    event = Event(side=side, t=t, msg=msg, index=int(i), line=line_no)
    if side == "server" and "method" in msg and b"{{" not in raw:
        event.wire = body + b"\n"
    return event


def read_event(path: Path, line_no: int, raw: bytes) -> tuple[Event, bool]:
    """One event line, checked: the event, and whether the line said its ``i``."""
    event = _writer_line(line_no, raw)
    if event is not None:
        return event, True
    try:
        obj = decode(raw)
    except NotJSON as exc:
        raise _not_json(path, line_no, raw, exc) from None
    return parse_event(path, line_no, obj), "i" in obj


def _not_json(path: Path, line_no: int, raw: bytes, exc: NotJSON) -> CassetteError:
    """The error of a line that is not JSON, with the line's text around the column and a caret:
    a hand-edited cassette's missing comma is found by looking, not by counting columns."""
    if exc.column is None:
        return _fail(path, line_no, f"not valid JSON: {exc}")
    try:
        text = raw.decode("utf-8")
        before, after = text[:exc.column - 1], text[exc.column - 1:]  # the parser counted characters
    except UnicodeDecodeError:  # the column is the bad byte's
        before = raw[:exc.column - 1].decode("utf-8", "replace")
        after = raw[exc.column - 1:].decode("utf-8", "replace")
    message = f"not valid JSON: {exc}"
    # A hand-edited line may hold a secret: shown scrubbed, as everything the harness prints.
    from harness.format.redact import Redactor  # only for a broken line

    scrub = Redactor.widened({}, os.environ).scrub_raw
    shown_before, shown_after = scrub(before), scrub(after)
    if shown_before + shown_after != scrub(before + after):  # a secret across the column: not cut in two
        return _fail(path, line_no, message + " (the line is not shown: it holds a secret)")
    return CassetteError(path, line_no, message, pointed(shown_before + shown_after, len(shown_before)))


def load_cassette(path: str | Path, lazy_from: int = LAZY_FROM) -> Cassette:
    """Load a cassette; every problem is a CassetteError naming file and line.

    A cassette whose header says ``complete: false`` was cut short while being
    written, so a torn last line is dropped instead of refused. Line 1 is the
    header, always; blank lines after it are passed over. A file of ``lazy_from``
    bytes or more is indexed, not parsed (harness.format.event_log): its events are
    decoded, and a bad line found, as they are played.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CassetteError(path, None, f"cannot read the cassette: {exc.strerror or exc}") from None
    if not data:
        raise CassetteError(path, None, "the file is empty; a cassette starts with a header line")
    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    if not data[:end].strip():
        raise _fail(path, 1, "line 1 is blank; a cassette starts with its header "
                    '{"codex_cassette": 1, "meta": {...}} on line 1')
    try:
        header = decode(data[:end])
    except NotJSON as exc:
        raise _not_json(path, 1, data[:end], exc) from None
    cassette = Cassette(path=path, meta=parse_header(path, 1, header))

    def torn(raw: bytes) -> bool:  # the final write of an interrupted recording
        if cassette.complete:
            return False
        try:
            decode(raw)
        except NotJSON:
            return True
        return False

    log = EventLog(data, end + 1, 2, lambda n, raw: read_event(path, n, raw), Order(path, _fail), torn)
    cassette.events = log if len(data) >= lazy_from else log.materialize()
    return cassette
