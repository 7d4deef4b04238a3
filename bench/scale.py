"""Scale: big cassettes (1, 10, 30, 100 MB), first answer, time and peak memory.

Each size runs in a fresh child process (so peak RSS is that size's alone):
load_cassette() from disk, then the replay engine plays the server side to an
in-process client that sends the recorded requests and reads every line (no
driver: this measures the harness). The child reports the load, the time from
the start of the load to the first line the client reads (the answer to its
first request), the whole replay, and peak RSS above the interpreter's baseline
(imports done).

Goals (issue 17): a 100 MB cassette answers its first request within 1 s and
peaks at <= 2 bytes of memory per cassette byte; time per MB at every size
within 1.2 x the 1 MB figure.

    python bench/scale.py [--quick] [--sizes 1,10,30,100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ITEM, THREAD, TURN, fmt, machine, table, turn_cassette, verdict  # noqa: E402

from harness.format.cassette import FORMAT_VERSION  # noqa: E402

WAIT = 120.0
CLIENT_MESSAGES = [e.msg for e in turn_cassette(0).events if e.side == "client" and e.msg is not None]
FIRST_GOAL = 1.0      # seconds to the first answer at the biggest size
MEMORY_GOAL = 2.0     # peak RSS bytes per cassette byte
LINEAR_GOAL = 1.2     # time per MB against the smallest size's
MB = 1 << 20


def write_cassette(path: Path, megabytes: float, delta_size: int = 64) -> int:
    """A bootstrap + one turn whose deltas fill the file to `megabytes`; returns the delta count."""
    base = turn_cassette(0)
    head, tail = base.events[:-4], base.events[-4:]   # split before item/completed..exit
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"codex_cassette": FORMAT_VERSION, "meta": {"complete": True}}) + "\n")
        for ev in head:
            fh.write(json.dumps(ev.to_json(), separators=(",", ":")) + "\n")
        n, i = 0, len(head)
        target = megabytes * MB
        while fh.tell() < target:
            i += 1
            n += 1
            text = (f"w{n} " * delta_size)[:delta_size]
            fh.write('{"i":%d,"from":"server","t":%.4f,"msg":{"method":"item/agentMessage/delta","params":'
                     '{"threadId":"%s","turnId":"%s","itemId":"%s","delta":%s}}}\n'
                     % (i, i * 1e-4, THREAD, TURN, ITEM, json.dumps(text)))
        for ev in tail:
            i += 1
            ev.index = i
            ev.t = max(ev.t, i * 1e-4)  # time never goes back on a side (the loader checks)
            fh.write(json.dumps(ev.to_json(), separators=(",", ":")) + "\n")
    return n


async def _replay(cassette: Any, t0: float) -> tuple[int, float]:
    """Play the server side to a client that says what optio would say: lines read, and
    the moment (since t0) the first of them came."""
    from fake_server import InProcessCodex
    from harness.replay.options import ReplayOptions
    from harness.format.wire import encode

    fake = InProcessCodex(cassette, ReplayOptions(timeout=WAIT, linger=WAIT))
    lines, first = 0, 0.0
    # The client's messages, from the bootstrap's own list: reading them out of a big
    # cassette here would decode it ahead of the replay and blur what is measured.
    for msg in CLIENT_MESSAGES:
        fake.stdin.write(encode(msg))
    fake.stdin.close()
    async for _ in fake.stdout:
        if not lines:
            first = time.perf_counter() - t0
        lines += 1
    await fake.wait(WAIT)
    if fake.report.status != "ok":
        raise RuntimeError(fake.report.summary())
    return lines, first


def child(path: str) -> None:
    from harness.format.cassette import load_cassette

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    cassette = load_cassette(path)
    t1 = time.perf_counter()
    lines, first = asyncio.run(_replay(cassette, t0))
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"load": t1 - t0, "first": first, "replay": t2 - t1, "lines": lines,
                      "events": len(cassette.events), "peak_kb": peak - base,
                      "lazy": type(cassette.events).__name__ != "list"}))


def measure(sizes: list[float], workdir: Path) -> list[dict[str, Any]]:
    results = []
    for mb in sizes:
        path = workdir / f"scale-{mb:g}MB.jsonl"
        write_cassette(path, mb)
        real_mb = path.stat().st_size / MB
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True,
                             text=True, timeout=WAIT * 3, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        if out.returncode != 0:
            raise RuntimeError(f"child for {mb} MB failed: {out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["mb"] = real_mb
        results.append(r)
        print(f"  {real_mb:.1f} MB: load {r['load']:.2f} s, first answer {r['first']:.3f} s, "
              f"replay {r['replay']:.2f} s, peak +{r['peak_kb'] / 1024:.0f} MB, {r['events']:,} events"
              f"{' (indexed)' if r['lazy'] else ''}", flush=True)
        path.unlink()
    return results


def render(results: list[dict[str, Any]]) -> tuple[str, bool]:
    ref, big = results[0], results[-1]
    ref_t = (ref["load"] + ref["replay"]) / ref["mb"]
    rows, ok = [], True
    for r in results:
        t_mb = (r["load"] + r["replay"]) / r["mb"]
        per_byte = r["peak_kb"] * 1024 / (r["mb"] * MB)
        linear = t_mb / ref_t
        # The first answer and the memory are the biggest size's goals (a small cassette is parsed
        # up front, to report a bad line before the test starts, at ~7 bytes per byte of a few MB).
        good = linear <= LINEAR_GOAL and (r is not big or (r["first"] <= FIRST_GOAL and per_byte <= MEMORY_GOAL))
        ok = ok and good
        rows.append([f"{r['mb']:.1f}", f"{r['events']:,}", "indexed" if r["lazy"] else "parsed",
                     fmt(r["load"]), fmt(r["first"]), fmt(r["replay"]), fmt(t_mb * 1e3),
                     f"{linear:.2f}", fmt(r["peak_kb"] / 1024), f"{per_byte:.2f}", verdict(good)])
    head = ["MB", "events", "loaded", "load s", "first answer s", "replay s", "total ms per MB",
            f"time/MB vs {ref['mb']:.0f} MB (<= {LINEAR_GOAL})", "peak RSS MB",
            f"RSS bytes per byte (<= {MEMORY_GOAL:g} at the top)",
            f"verdict (first answer <= {FIRST_GOAL:g} s at the top)"]
    return table(head, rows), ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 and 10 MB only")
    p.add_argument("--sizes", default="1,10,30,100", help="megabytes, comma-separated")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    sizes = [1, 10] if args.quick else [float(s) for s in args.sizes.split(",")]
    print(f"scale: load + replay, {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        results = measure(sizes, Path(tmp))
    text, ok = render(results)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
