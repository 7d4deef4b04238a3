"""JSONL framing of the app-server wire.

codex speaks JSON-RPC 2.0 without the ``"jsonrpc"`` field, one object per line.
Lines can be huge (a command's whole output, a file's diff), so nothing here uses
``StreamReader.readline`` and its 64 KiB limit: lines are split out of raw chunks.

One line policy for every reader (proxy, tee, channels, SSH, process handles):
a line is what lies between two ``\n``; a ``\r`` before the ``\n`` stays part of
the line's bytes (recorded and replayed byte for byte), and JSON parsing reads
it as the whitespace it is.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

CHUNK = 1 << 16

# orjson (a dependency) encodes a message ~15x and decodes it ~3.5x faster than json;
# encoding is most of the replay engine's work per streamed message
# (bench/replay_throughput.py). Same bytes as json.dumps but for very small floats
# (1e-05 -> 0.00001) and NaN (-> null). Importing it costs a cold fake ~2.8 ms (it
# brings datetime, uuid and platform), more than json spends on a handshake: so the
# standard library handles the first FAST_AFTER bytes, and orjson the rest. On the
# shipped cassettes orjson saves ~5 us per KB decoded and ~9 us per KB encoded, so its
# import pays for itself after some 300-400 KB; switching a little early costs a
# mid-sized cassette under a millisecond, switching late would cost a big one more.
# A process that has orjson imported already (the fork server, a pytest run) uses it
# at once. CODEX_CASSETTE_NO_ORJSON=1 keeps the standard library throughout.
FAST_AFTER = 256 * 1024
_orjson: Any = None  # the module, once in use
_stdlib_bytes = 0    # JSON bytes the standard library handled so far
_want_orjson = not os.environ.get("CODEX_CASSETTE_NO_ORJSON")


def _fast() -> Any:
    """orjson once it pays (or is loaded already), else None."""
    global _orjson, _want_orjson
    if _want_orjson and (_stdlib_bytes > FAST_AFTER or "orjson" in sys.modules):
        _want_orjson = False  # decided, either way
        try:
            import orjson
        except ImportError:  # a fake launched with -S without it
            return None
        _orjson = orjson
    return _orjson


class Kind(str, enum.Enum):
    REQUEST = "request"            # id + method: the sender waits for a response
    NOTIFICATION = "notification"  # method, no id
    RESPONSE = "response"          # id + result or error
    INVALID = "invalid"            # JSON, but not a JSON-RPC message


def classify(msg: Any) -> Kind:
    if not isinstance(msg, dict):
        return Kind.INVALID
    has_id = "id" in msg and msg["id"] is not None
    if "method" in msg:
        return Kind.REQUEST if has_id else Kind.NOTIFICATION
    if has_id and ("result" in msg or "error" in msg):
        return Kind.RESPONSE
    return Kind.INVALID


def encode(msg: Any) -> bytes:
    """One message as codex writes it: compact JSON, one line."""
    global _stdlib_bytes
    fast = _orjson if _orjson is not None else _fast()
    if fast is not None:
        try:
            return fast.dumps(msg, option=fast.OPT_APPEND_NEWLINE)
        except TypeError:  # what orjson refuses (ints over 64 bits, lone surrogates) json still writes
            pass
    text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
    try:
        data = text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (a peer may send "\ud800") has no UTF-8 form: escaped, it is still
        # the same JSON string.
        data = json.dumps(msg, separators=(",", ":")).encode("ascii") + b"\n"
    _stdlib_bytes += len(data)
    return data


# orjson reads an integer beyond 64 bits as a float, silently: a document with a
# run of 19+ digits anywhere goes to the standard library, which keeps it exact.
_LONG_DIGITS = re.compile(rb"\d{19}")

# Deeper JSON is refused: codex's messages nest about 12 levels, and every walk of a
# message (matching, placeholders, diffs, reports) is recursive.
MAX_DEPTH = 100


class NotJSON(ValueError):
    """A line that is not one JSON document we accept; ``reason`` says why, for a person."""

    def __init__(self, reason: str, column: int | None = None) -> None:
        self.reason = reason
        self.column = column
        super().__init__(reason if column is None else f"{reason} at column {column}")


def decode(data: bytes) -> Any:
    """Parse one JSON document; NotJSON (a ValueError) when it is not one we accept.

    orjson is several times faster; what it would change (huge integers) or
    refuses (NaN, lone surrogates) is parsed by the standard library instead.
    Not UTF-8 and nested deeper than MAX_DEPTH are refused too."""
    global _stdlib_bytes
    fast = _orjson if _orjson is not None else _fast()
    if fast is not None and not _LONG_DIGITS.search(data):
        try:
            obj = fast.loads(data)
        except fast.JSONDecodeError as exc:
            if "depth" in exc.msg:  # orjson's own limit, far past ours: no second parser needed
                raise NotJSON(f"nested deeper than {MAX_DEPTH} levels") from None
        else:
            return _shallow(data, obj)
    _stdlib_bytes += len(data)
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise NotJSON(exc.msg, exc.colno) from None
    except UnicodeDecodeError as exc:
        raise NotJSON(f"not UTF-8 (byte 0x{data[exc.start]:02x})", exc.start + 1) from None
    except RecursionError:
        raise NotJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    return _shallow(data, obj)


def _shallow(data: bytes, obj: Any) -> Any:
    """obj, unless it nests deeper than MAX_DEPTH. Counting brackets costs next to
    nothing and bounds the depth, so most documents are never walked."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return obj
    if depth_over(obj, MAX_DEPTH):
        raise NotJSON(f"nested deeper than {MAX_DEPTH} levels")
    return obj


def depth_over(obj: Any, limit: int) -> bool:
    """Whether a JSON value nests containers more than ``limit`` deep (no recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


@dataclass
class Line:
    """One line off the wire: the bytes without the newline, and whether it had one."""

    data: bytes
    newline: bool = True

    def parse(self) -> tuple[Any, bool]:
        """(message, True) for a JSON line, (None, False) otherwise: also for JSON the
        parsers refuse to hold (nested deeper than Python's recursion allows)."""
        try:
            return decode(self.data), True
        except (ValueError, RecursionError):
            return None, False


class LineSplitter:
    """Feeds raw chunks in, gets complete lines out. Keeps the partial tail."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._parts.append(chunk)
            return []
        pieces = chunk.split(b"\n")
        if self._parts:
            self._parts.append(pieces[0])
            pieces[0] = b"".join(self._parts)
            self._parts = []
        tail = pieces.pop()
        if tail:
            self._parts.append(tail)
        return pieces

    def rest(self) -> bytes:
        rest = b"".join(self._parts)
        self._parts = []
        return rest


def request_key(request_id: Any) -> str:
    """A JSON-RPC id as a dictionary key: 1 and "1" are different ids, so kept apart."""
    if type(request_id) is int:  # the usual id; what json.dumps gives, without its cost
        return str(request_id)
    return json.dumps(request_id, sort_keys=True)
