"""Just enough HTTP/1.1 for the mock model: bodies (length, chunked, compressed) and plain JSON answers."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class ClientGone(Exception):
    """The HTTP client closed the connection while we were answering."""


class BadRequest(Exception):
    """A request the mock cannot read; answered 400."""


async def send_plain(writer: asyncio.StreamWriter, status: int, body: dict[str, Any], close: bool = False) -> None:
    reason = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
        + ("connection: close\r\n" if close else "")
        + "\r\n"
    )
    writer.write(head.encode() + data)
    try:
        await asyncio.wait_for(writer.drain(), 10.0)
    except (ConnectionError, asyncio.TimeoutError):
        raise ClientGone() from None


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 30.0)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            # Trailers (rare) end with an empty line.
            while (await asyncio.wait_for(reader.readuntil(b"\r\n"), 30.0)) != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise BadRequest("chunked body over the size limit")
        parts.append(await asyncio.wait_for(reader.readexactly(size), 30.0))
        await asyncio.wait_for(reader.readexactly(2), 30.0)


def decode_content(raw: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return raw
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(raw)
    except zlib.error as exc:
        raise BadRequest(f"unreadable {encoding} body ({exc})") from None
    if encoding == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise BadRequest("zstd request body but the `zstandard` package is not installed") from None
        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    raise BadRequest(f"unsupported content-encoding {encoding!r}")
