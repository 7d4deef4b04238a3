"""Shared pieces of the benchmarks: synthetic cassettes, timing, tables.

The benchmarks live outside tests/ on purpose: they measure, they do not
assert, and they take longer than a unit test should. Each one prints a table
of ratios measured side by side in the same run, so a slow machine slows both
sides alike.
"""

from __future__ import annotations

import asyncio

import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a source checkout
    sys.path.insert(0, str(ROOT))

from harness.format.cassette import Cassette, Event  # noqa: E402
from harness.format.wire import encode  # noqa: E402

CWD = "/work/project"          # the cwd optio's CodexConversation is given
THREAD = "thr_bench"
TURN = "turn_bench"
ITEM = "msg_bench"
PROMPT = "stream please"

# What optio-codex 0.1.0 sends during bootstrap() (reference/optio-codex-driver.md).
INIT_PARAMS = {"clientInfo": {"name": "optio_codex", "title": "Optio", "version": "0.1.0"},
               "capabilities": {"optOutNotificationMethods": ["item/commandExecution/outputDelta"]}}


def bootstrap_events() -> list[Event]:
    """initialize .. thread/start as optio's driver and codex 0.163.0 exchange them."""
    c = lambda msg: Event(side="client", msg=msg)  # noqa: E731
    s = lambda msg: Event(side="server", msg=msg)  # noqa: E731
    return [
        c({"id": 1, "method": "initialize", "params": INIT_PARAMS}),
        s({"id": 1, "result": {"userAgent": "codex_cli_rs/0.163.0 (bench)", "codexHome": "/tmp/codex",
                               "platformFamily": "unix", "platformOs": "linux"}}),
        c({"method": "initialized"}),
        c({"id": 2, "method": "account/read", "params": {"refreshToken": False}}),
        s({"id": 2, "result": {"account": None, "requiresOpenaiAuth": False}}),
        c({"id": 3, "method": "model/list", "params": {}}),
        s({"id": 3, "result": {"data": [{"id": "gpt-5.5", "displayName": "gpt-5.5", "hidden": False,
                                         "isDefault": True}], "nextCursor": None}}),
        c({"id": 4, "method": "thread/start", "params": {"cwd": CWD, "sandbox": "workspace-write",
                                                        "approvalPolicy": "never"}}),
        s({"id": 4, "result": {"thread": {"id": THREAD}, "model": "gpt-5.5", "modelProvider": "mock"}}),
        s({"method": "thread/started", "params": {"thread": {"id": THREAD}}}),
    ]


def delta_text(i: int, size: int) -> str:
    return (f"w{i} " * size)[:size] if size > 0 else ""


def turn_events(n_deltas: int, delta_size: int = 8) -> list[Event]:
    """One turn: the turn/start request, its ACK, n deltas, item/completed, turn/completed."""
    pieces = [delta_text(i, delta_size) for i in range(n_deltas)]
    base = {"threadId": THREAD, "turnId": TURN}
    events = [
        Event(side="client", msg={"id": 5, "method": "turn/start",
                                  "params": {"threadId": THREAD, "input": [{"type": "text", "text": PROMPT}]}}),
        Event(side="server", msg={"id": 5, "result": {"turn": {"id": TURN, "status": "inProgress", "items": []}}}),
        Event(side="server", msg={"method": "turn/started",
                                  "params": {"threadId": THREAD, "turn": {"id": TURN, "status": "inProgress"}}}),
        Event(side="server", msg={"method": "item/started",
                                  "params": {**base, "item": {"type": "agentMessage", "id": ITEM, "text": ""}}}),
    ]
    events += [Event(side="server", msg={"method": "item/agentMessage/delta",
                                         "params": {**base, "itemId": ITEM, "delta": p}}) for p in pieces]
    events += [
        Event(side="server", msg={"method": "item/completed",
                                  "params": {**base, "item": {"type": "agentMessage", "id": ITEM,
                                                              "text": "".join(pieces)}}}),
        Event(side="server", msg={"method": "turn/completed",
                                  "params": {"threadId": THREAD, "turn": {"id": TURN, "status": "completed"}}}),
    ]
    return events


def turn_cassette(n_deltas: int, delta_size: int = 8) -> Cassette:
    """bootstrap + one turn of n deltas + the client hanging up + exit 0."""
    events = bootstrap_events() + turn_events(n_deltas, delta_size)
    events += [Event(side="client", eof=True), Event(side="server", exit=0)]
    for n, ev in enumerate(events, 1):
        ev.index = n
        ev.t = n * 1e-4
    return Cassette(path=None, meta={"codex_version": "0.163.0", "complete": True}, events=events)


def server_blocks(cassette: Cassette) -> list[list[bytes]]:
    """The server's lines, pre-encoded, grouped by the client line that releases them:
    block 0 goes out at once, block k after the k-th client message arrived."""
    blocks: list[list[bytes]] = [[]]
    for ev in cassette.events:
        if ev.side == "client" and ev.msg is not None:
            blocks.append([])
        elif ev.side == "server" and ev.msg is not None:
            blocks[-1].append(encode(ev.msg))
    return blocks


# -- measuring and printing -------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table (pastes straight into docs/performance.md)."""
    text = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(list(headers)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in text]
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        import orjson  # noqa: F401
        fast = "orjson installed"
    except ImportError:
        fast = "no orjson"
    if os.environ.get("CODEX_CASSETTE_NO_ORJSON"):
        fast = "orjson disabled"
    return (f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {load}, {fast}")


def fmt(x: float, digits: int = 3) -> str:
    if x != x:  # nan
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


async def end_process(proc: "asyncio.subprocess.Process", grace: float = 10.0) -> int:
    """Close a child's stdin and wait for it (bounded); kill it if it does not go."""
    proc.stdin.close()
    try:
        return await asyncio.wait_for(proc.wait(), grace)
    except asyncio.TimeoutError:
        proc.kill()
        return await proc.wait()
