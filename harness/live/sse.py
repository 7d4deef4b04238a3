"""Server-sent events of the Responses API: one streamed answer, and builders for its events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from harness.live.http import ClientGone


class SseStream:
    """One chunked `text/event-stream` response, watching for the client leaving."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._seq = 0
        # A streaming client sends nothing more on this connection until the
        # answer ends, so a read that returns means it hung up.
        self._watch = asyncio.ensure_future(reader.read(1))

    def stop_watching(self) -> None:
        self._watch.cancel()

    def _check(self) -> None:
        if self._watch.done() or self._writer.is_closing():
            raise ClientGone()

    async def _write(self, data: bytes) -> None:
        self._check()
        self._writer.write(data)
        try:
            await asyncio.wait_for(self._writer.drain(), 10.0)
        except (ConnectionError, asyncio.TimeoutError):
            raise ClientGone() from None

    async def start(self) -> None:
        await self._write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )

    async def event(self, kind: str, data: dict[str, Any]) -> None:
        self._seq += 1
        payload = {"type": kind, "sequence_number": self._seq, **data}
        text = f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()
        await self._write(b"%x\r\n%s\r\n" % (len(text), text))

    async def finish(self) -> None:
        await self._write(b"0\r\n\r\n")

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await self.wait_or_gone(asyncio.sleep(seconds), seconds + 1.0)

    async def wait_or_gone(self, awaitable: Any, timeout: float) -> bool:
        """Wait for `awaitable`; False on timeout, ClientGone if the client leaves first."""
        waiter = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({waiter, self._watch}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
        if self._watch in done:
            raise ClientGone()
        return waiter in done


async def message_added(s: SseStream, item_id: str) -> None:
    await s.event(
        "response.output_item.added",
        {
            "output_index": 0,
            "item": {"type": "message", "role": "assistant", "id": item_id, "status": "in_progress", "content": []},
        },
    )


async def deltas(s: SseStream, item_id: str, pieces: list[str], delay: float) -> None:
    for i, piece in enumerate(pieces):
        if i and delay:
            await s.sleep(delay)
        await s.event(
            "response.output_text.delta",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece},
        )


async def message_done(s: SseStream, item_id: str, text: str) -> None:
    await s.event(
        "response.output_item.done",
        {
            "output_index": 0,
            "item": {
                "type": "message",
                "role": "assistant",
                "id": item_id,
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        },
    )


async def stream_message(s: SseStream, item_id: str, pieces: list[str], delay: float) -> None:
    await message_added(s, item_id)
    await deltas(s, item_id, pieces, delay)
    await message_done(s, item_id, "".join(pieces))


async def completed(s: SseStream, resp_id: str) -> None:
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    await s.event("response.completed", {"response": {"id": resp_id, "status": "completed", "usage": usage}})


async def failed(s: SseStream, resp_id: str, message: str) -> None:
    await s.event(
        "response.failed",
        {"response": {"id": resp_id, "status": "failed", "error": {"code": "server_error", "message": message}}},
    )
