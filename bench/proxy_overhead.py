"""The recording proxy's cost: added latency per message, and throughput.

A small Python peer speaks newline-delimited JSON on stdio. It is reached two
ways, side by side in one run (alternating):

  direct   the peer as a child process, over pipes
  proxy    `python -m harness record -o X -- python peer.py`: the same peer
           behind the recording proxy, which writes a cassette of everything

Latency: ping-pong of one small message at a time (the peer echoes it); the
added latency is the proxy's round-trip percentile minus the direct one.
Throughput: the peer streams M messages as fast as it can; messages/second at
the client. Goals: p99 added < 1 ms; proxied throughput >= 0.9 x direct.

    python bench/proxy_overhead.py [--quick] [--pings 2000] [--stream 300000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, median, percentile, table, verdict  # noqa: E402

from fake_server import FakeCodexCommand  # noqa: E402  (only for its PYTHONPATH-setting env)

WAIT = 60.0
GOAL_P99_MS = 1.0
GOAL_THROUGHPUT = 0.9

PEER = r'''
import json, sys
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    msg = json.loads(line)
    if msg.get("method") == "stream":
        n, item = msg["params"]["count"], msg["params"]["item"]
        batch = []
        for i in range(n):
            batch.append(b'{"method":"item/agentMessage/delta","params":{"i":%d,"delta":%s}}\n'
                         % (i, json.dumps(item).encode()))
            if len(batch) == 256:
                out.write(b"".join(batch)); batch = []
        out.write(b"".join(batch))
        out.write(b'{"id":%d,"result":{"done":true}}\n' % msg["id"])
    else:
        out.write(line)
    out.flush()
'''


async def spawn(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env, limit=1 << 24)


async def close(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), WAIT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


async def pings(proc: asyncio.subprocess.Process, count: int) -> list[float]:
    """Round-trip seconds of `count` echoes, one in flight at a time."""
    assert proc.stdin and proc.stdout
    rtts = []
    for i in range(count):
        line = b'{"id":%d,"method":"ping","params":{"text":"hello there"}}\n' % i
        t0 = time.perf_counter()
        proc.stdin.write(line)
        got = await asyncio.wait_for(proc.stdout.readline(), WAIT)
        rtts.append(time.perf_counter() - t0)
        if got != line:
            raise RuntimeError(f"echo mismatch: sent {line!r}, got {got!r}")
    return rtts


async def stream(proc: asyncio.subprocess.Process, count: int) -> float:
    """Seconds from asking for `count` messages to having read them all."""
    assert proc.stdin and proc.stdout
    request = {"id": 10**9, "method": "stream", "params": {"count": count, "item": "a few words of text"}}
    t0 = time.perf_counter()
    proc.stdin.write((json.dumps(request) + "\n").encode())

    async def read_all() -> None:
        seen = 0
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError("the peer closed before streaming everything")
            if line.startswith(b'{"id":'):
                break
            seen += 1
        if seen != count:
            raise RuntimeError(f"expected {count} streamed messages, got {seen}")
    await asyncio.wait_for(read_all(), WAIT)
    return time.perf_counter() - t0


async def session(argv: list[str], env: dict[str, str], n_pings: int, n_stream: int) -> tuple[list[float], float]:
    proc = await spawn(argv, env)
    try:
        await pings(proc, 50)  # warm-up: imports done, pipes primed
        rtts = await pings(proc, n_pings)
        seconds = await stream(proc, n_stream)
        return rtts, seconds
    finally:
        await close(proc)


async def measure(rounds: int, n_pings: int, n_stream: int, workdir: Path) -> dict[str, Any]:
    peer = workdir / "peer.py"
    peer.write_text(PEER)
    env = FakeCodexCommand(peer).env()
    direct = [sys.executable, str(peer)]
    out: dict[str, Any] = {"direct": {"rtts": [], "secs": []}, "proxy": {"rtts": [], "secs": []}}
    for r in range(rounds):
        cassette = workdir / f"proxy-{r}.jsonl"
        proxied = [sys.executable, "-m", "harness", "record", "-o", str(cassette), "--", *direct]
        for name, argv in (("direct", direct), ("proxy", proxied)):
            rtts, secs = await session(argv, env, n_pings, n_stream)
            out[name]["rtts"] += rtts
            out[name]["secs"].append(secs)
        lines = sum(1 for _ in open(cassette, "rb"))
        expected = 1 + 2 * (50 + n_pings) + 2 + n_stream + 3  # header, pings both ways, stream, eofs, exit
        if lines != expected:
            raise RuntimeError(f"the proxy's cassette has {lines} lines, expected {expected}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--pings", type=int, default=2000)
    p.add_argument("--stream", type=int, default=300_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    rounds, n_pings, n_stream = (1, 300, 10_000) if args.quick else (args.rounds, args.pings, args.stream)
    print(f"recording proxy overhead, {machine()}, {rounds} round(s) of {n_pings} pings and "
          f"{n_stream:,} streamed messages", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        r = asyncio.run(measure(rounds, n_pings, n_stream, Path(tmp)))
    d, x = r["direct"], r["proxy"]
    p50 = (percentile(x["rtts"], 0.5) - percentile(d["rtts"], 0.5)) * 1e3
    p99 = (percentile(x["rtts"], 0.99) - percentile(d["rtts"], 0.99)) * 1e3
    tp_d, tp_x = n_stream / median(d["secs"]), n_stream / median(x["secs"])
    rows = [
        ["round trip p50 (ms)", fmt(percentile(d["rtts"], 0.5) * 1e3), fmt(percentile(x["rtts"], 0.5) * 1e3),
         f"added {p50:.3f} ms per round trip", "", ""],
        ["round trip p99 (ms)", fmt(percentile(d["rtts"], 0.99) * 1e3), fmt(percentile(x["rtts"], 0.99) * 1e3),
         f"added {p99:.3f} ms per round trip", "< 1 ms", verdict(p99 < GOAL_P99_MS)],
        ["stream (msg/s)", fmt(tp_d), fmt(tp_x), f"ratio {tp_x / tp_d:.2f}", ">= 0.9",
         verdict(tp_x / tp_d >= GOAL_THROUGHPUT)],
    ]
    print(table(["measure", "direct", "through proxy", "proxy cost", "goal", "verdict"], rows))
    ok = p99 < GOAL_P99_MS and tp_x / tp_d >= GOAL_THROUGHPUT
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
