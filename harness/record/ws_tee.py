"""WebSocket bytes into cassette events, read passively with websockets' Sans-I/O layer.

The socket recorder (and the stdio recorder in front of `codex app-server proxy`,
whose stdio carries a WebSocket session) forwards bytes unchanged and hands each
direction's copy to a ``WsStream``: the HTTP head first (``websockets.http11``),
then the frames (``websockets.protocol.Protocol`` opened on that side). Nothing
here writes a frame or answers one: both ends of the connection do that.

A text frame is a message (recorded as a line would be); a binary frame a raw
event marked ``binary``; a close frame ends that side's stream with its code and
reason; pings and pongs are not events. A stream that ends without a close frame
is a dropped connection: a plain eof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from harness.format.cassette import Event
from harness.format.wire import Line

# What one direction yields: ("upgrade", Request) / ("accepted", Response) from the head,
# ("refused", head) for a connection that is no WebSocket session (a /readyz probe, a 401),
# ("text" | "binary", bytes), ("close", {"code", "reason"}), ("broken", why).
Item = tuple[str, Any]


@dataclass
class WsStream:
    """One direction of a connection: ``side`` is who sends these bytes."""

    side: str
    max_size: int | None = None
    _reader: Any = None
    _head: Any = None
    _protocol: Any = None
    _fragments: list[bytes] = field(default_factory=list)
    _fragment_kind: str = "text"
    _done: bool = False  # refused, closed or broken: later bytes are not parsed

    def __post_init__(self) -> None:
        from websockets.http11 import Request, Response
        from websockets.streams import StreamReader

        self._reader = StreamReader()
        if self.side == "client":
            self._head = Request.parse(self._reader.read_line)
        else:
            self._head = Response.parse(self._reader.read_line, self._reader.read_exact,
                                        self._reader.read_to_eof)

    def feed(self, data: bytes) -> list[Item]:
        if self._done:
            return []
        if self._protocol is not None:
            return self._frames(data)
        from websockets.exceptions import WebSocketException

        self._reader.feed_data(data)
        try:
            next(self._head)
            return []  # the head is not complete yet
        except StopIteration as parsed:
            head = parsed.value
        except (EOFError, ValueError, NotImplementedError, WebSocketException) as exc:
            self._done = True
            return [("refused", f"not an HTTP request or response: {exc}")]
        return self._after_head(head)

    def end(self) -> list[Item]:
        """The stream ended (no more bytes will come)."""
        items: list[Item] = []
        if self._fragments and not self._done:
            items.append(("broken", "the stream ended inside a fragmented message"))
        self._done = True
        return items

    def _after_head(self, head: Any) -> list[Item]:
        from websockets.protocol import Protocol, Side, State

        if self.side == "client":
            if head.headers.get("Upgrade", "").lower() != "websocket":
                self._done = True
                return [("refused", head)]
            item: Item = ("upgrade", head)
        else:
            if head.status_code != 101:
                self._done = True
                return [("refused", head)]
            if "Sec-WebSocket-Extensions" in head.headers:
                # Compressed frames need the negotiated extension to be read; codex negotiates none.
                self._done = True
                return [("accepted", head), ("broken", "the connection negotiated "
                         f"{head.headers['Sec-WebSocket-Extensions']!r}, which the recorder cannot read")]
            item = ("accepted", head)
        # Frames the client sends are masked, as a server reads them; and the other way round.
        self._protocol = Protocol(Side.SERVER if self.side == "client" else Side.CLIENT,
                                  state=State.OPEN, max_size=self.max_size)
        rest = bytes(self._reader.buffer)
        return [item, *self._frames(rest)] if rest else [item]

    def _frames(self, data: bytes) -> list[Item]:
        from websockets.frames import Close, Opcode

        protocol = self._protocol
        protocol.receive_data(data)
        protocol.data_to_send()  # the answers it would give (pongs, its close) are the peers' to send
        items: list[Item] = []
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                self._fragment_kind = "text" if opcode is Opcode.TEXT else "binary"
                self._fragments = [bytes(frame.data)]
            elif opcode is Opcode.CONT:
                self._fragments.append(bytes(frame.data))
            elif opcode is Opcode.CLOSE:
                close = Close.parse(frame.data) if frame.data else None
                items.append(("close", {"code": close.code, "reason": close.reason} if close else
                              {"code": 1005, "reason": ""}))
                self._done = True
                continue
            else:
                continue  # ping, pong
            if frame.fin:
                items.append((self._fragment_kind, b"".join(self._fragments)))
                self._fragments = []
        if protocol.parser_exc is not None and not self._done:
            self._done = True
            items.append(("broken", f"not a valid WebSocket frame: {protocol.parser_exc}"))
        return items


class WsFeed:
    """A connection's two ``WsStream``s recorded through a Tee (harness.record.tee).

    ``tee`` may be None until the server accepts the upgrade: ``on_session()`` then
    gives it (a socket connection becomes a session, with its own cassette, only then).
    """

    def __init__(self, tee: Any = None, on_session: Callable[[], Any] | None = None,
                 max_size: int | None = None) -> None:
        self.tee = tee
        self.on_session = on_session
        self.streams = {side: WsStream(side, max_size) for side in ("client", "server")}
        self.problem: str | None = None  # why some of the session could not be recorded
        self.closes: dict[str, dict[str, Any]] = {}  # side -> the close frame it sent
        self.first_close: str | None = None           # the side that sent the first close frame

    def feed(self, side: str, data: bytes, t: float) -> Iterator[None]:
        """Record what ``data`` completes; one step per event, so the caller can pause."""
        for kind, value in self.streams[side].feed(data):
            if self.record(side, kind, value, t):
                yield

    def record(self, side: str, kind: str, value: Any, t: float) -> bool:
        """One item as an event; False when it is none (heads, a refused connection)."""
        if kind == "accepted" and self.tee is None and self.on_session is not None:
            self.tee = self.on_session()
        tee = self.tee
        if kind == "broken":
            self.problem = self.problem or value
            return False
        if tee is None:
            return False  # not (yet) a session: its HTTP head, a refused upgrade
        if kind == "text":
            tee.line(side, Line(value), t)
        elif kind == "binary":
            tee.writer.write(Event(side=side, t=t, raw=tee.redactor.scrub_bytes(value), binary=True))
        elif kind == "close":
            reason = tee.redactor.scrub(value["reason"]) if value["reason"] else ""
            self.closes[side] = {"code": value["code"], "reason": reason}
            self.first_close = self.first_close or side
            tee.eof(side, t, close=self.closes[side])
        else:
            return False
        return True
