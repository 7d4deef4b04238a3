"""The tee: wire bytes into cassette events (split, parse, redact, templatize), and the header."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from harness.format.cassette import Event
from harness.format.codex_version import find_codex_version
from harness.format.placeholders import HOST, Placeholders, host_name
from harness.format.redact import Redactor
from harness.format.wire import Line, LineSplitter
from harness.format.writer import CassetteWriter

def default_placeholders(extra: Mapping[str, str] | None = None,
                         env: Mapping[str, str] | None = None) -> Placeholders:
    """cwd, home and codex_home (when set), the host name, plus the user's; trivial values
    are skipped because templatizing "/" would rewrite every path."""
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    for name, value in (("cwd", os.getcwd()), ("home", env.get("HOME", "")),
                        ("codex_home", env.get("CODEX_HOME", ""))):
        if value and len(value.rstrip("/")) > 1:
            values[name] = value.rstrip("/")
    host = host_name()
    if host:
        values[HOST] = host
    values.update(extra or {})
    return Placeholders(values)


class Tee:
    """Turns wire bytes into cassette events: split, parse, redact, templatize.

    Also notes what the header wants to know (client info, codex version, transport).
    ``transport`` is "ws" or "unix" for a socket session (WebSocket frames), else
    decided by the first bytes: lines ("stdio"), or WebSocket over the byte streams
    ("ws-stdio", a client of `codex app-server proxy`) when the client starts with an
    HTTP request.
    """

    def __init__(self, writer: CassetteWriter, placeholders: Placeholders, redactor: Redactor,
                 transport: str | None = None) -> None:
        self.writer = writer
        self.placeholders = placeholders
        self.redactor = redactor
        self.transport = transport
        self.frames: Any = None  # harness.record.ws_tee.WsFeed once the streams carry WebSocket
        if transport in ("ws", "unix"):
            self._read_frames()
        self._splitters = {"client": LineSplitter(), "server": LineSplitter()}
        # Raw lines of one side are a stream: a private key block spans several of them.
        self._raw_scrubbers = {"client": redactor.line_scrubber(), "server": redactor.line_scrubber()}
        self.eofs: set[str] = set()
        self.client_info: dict[str, Any] | None = None
        self.codex_version: str | None = None
        self._init_id: Any = None

    def _read_frames(self) -> None:
        from harness.record.ws_tee import WsFeed

        self.frames = WsFeed(self)

    def chunk(self, side: str, data: bytes, t: float) -> None:
        for _ in self.feed(side, data, t):
            pass

    def feed(self, side: str, data: bytes, t: float) -> Iterator[None]:
        """Record what a chunk completes, one step per event, so a caller can pause between."""
        if self.transport is None and data:
            self.transport = "ws-stdio" if side == "client" and data.startswith(b"GET ") else "stdio"
            if self.transport == "ws-stdio":
                self._read_frames()
        if self.frames is not None:
            yield from self.frames.feed(side, data, t)
            return
        for line in self.split(side, data):
            self.line(side, Line(line), t)
            yield

    def split(self, side: str, data: bytes) -> list[bytes]:
        """The complete lines a chunk finishes (a partial tail waits for the next)."""
        return self._splitters[side].feed(data)

    def items(self, side: str, item: bytes | str, t: float) -> None:
        """One item of a line iterator (with or without its newline)."""
        data = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else bytes(item)
        splitter = LineSplitter()
        for part in splitter.feed(data):
            self.line(side, Line(part), t)
        rest = splitter.rest()
        if rest:  # an item without its newline is still a whole line (the iterator ended it)
            self.line(side, Line(rest), t)

    def eof(self, side: str, t: float, close: dict[str, Any] | None = None) -> None:
        """The side's stream ended; on a socket ``close`` is the close frame that ended it."""
        if side in self.eofs:
            return
        rest = self._splitters[side].rest()
        if rest:
            self.line(side, Line(rest, newline=False), t)
        self.eofs.add(side)
        self.writer.write(Event(side=side, t=t, eof=True, close=close))

    def exit(self, status: int | str, t: float) -> None:
        self.writer.write(Event(side="server", t=t, exit=status))

    def line(self, side: str, line: Line, t: float) -> None:
        msg, ok = line.parse()
        if ok and isinstance(msg, dict):
            try:
                self._message(side, line, msg, t)
                return
            except RecursionError:
                pass  # parsed, but too deep to walk or write as a message: kept as a raw line
        raw = self._raw_scrubbers[side].scrub_bytes(line.data)
        try:
            raw = self.placeholders.templatize(raw.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            raw = self.placeholders.templatize_bytes(raw)
        self.writer.write(Event(side=side, t=t, raw=raw, newline=line.newline))

    def _message(self, side: str, line: Line, msg: dict[str, Any], t: float) -> None:
        source = line.data.decode("utf-8", "replace")
        kept = self.redactor.scrub(msg, source)
        self._notice(side, kept)
        if "\\u" in source or any(v and v in source for v in self.placeholders.values.values()):
            kept = self.placeholders.templatize(kept)
        # Nothing to hide or generalise: keep the peer's own bytes (a WebSocket frame may
        # hold a newline, which a cassette line cannot).
        if kept is msg and b"\n" not in line.data:
            self.writer.write_verbatim(side, t, line.data, line.newline)
        else:
            self.writer.write(Event(side=side, t=t, msg=kept, newline=line.newline))

    def _notice(self, side: str, msg: dict[str, Any]) -> None:
        if side == "client" and msg.get("method") == "initialize" and self.client_info is None:
            params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
            info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
            self.client_info = {k: info[k] for k in ("name", "version") if k in info}
            self._init_id = msg.get("id")
        elif side == "server" and self._init_id is not None and msg.get("id") == self._init_id:
            result = msg.get("result") if isinstance(msg.get("result"), dict) else {}
            self.codex_version = find_codex_version(str(result.get("userAgent", ""))) or self.codex_version

    @property
    def closed_by_frame(self) -> bool:
        """Whether a WebSocket close frame (either side's) ended the session."""
        return self.frames is not None and self.frames.first_close is not None

    def finish(self, complete: bool, end: str, **extra: Any) -> Path:
        """Write the cassette with what the tee noticed and how the session ended (``meta.end``)."""
        return self.writer.finish(complete=complete, **self.final_meta(), end=end, **extra)

    def final_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"redactions": sorted(self.redactor.applied),
                                "redaction_rules": self.redactor.rules_meta(), "transport": self.transport or "stdio"}
        if self.frames is not None and self.frames.problem:
            meta["transport_problem"] = self.frames.problem
        if self.client_info:
            meta["client"] = self.client_info
        if self.codex_version:
            meta["codex_version"] = self.codex_version
        return meta


def header_meta(argv: Sequence[str], placeholders: Placeholders, redactor: Redactor,
                recorder: str) -> dict[str, Any]:
    return {
        "recorder": recorder,
        "command": placeholders.templatize(redactor.scrub_argv(list(argv))),
        "placeholders": sorted(placeholders.values),
        "redactions": [],
        # Which rules scrub this cassette (names, never values): replay applies the same ones.
        "redaction_rules": redactor.rules_meta(),
    }
