"""Scale: time and peak memory to load and replay big cassettes (1, 10, 30, 100 MB).

Each size runs in a fresh child process (so peak RSS is that size's alone):
load_cassette() from disk, then the replay engine plays the server side to an
in-process client that sends the recorded requests and reads every line (no
driver: this measures the harness). The child reports load seconds, replay
seconds and peak RSS above the interpreter's baseline.

Cost must grow linearly: time/MB and memory/MB at each size are compared with
those at 10 MB (the smallest size whose fixed costs are negligible); a ratio
up to 1.5 passes.

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
GOAL = 1.5
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


async def _replay(cassette: Any) -> int:
    """Play the server side to a client that says what optio would say; lines read."""
    from fake_server import InProcessCodex
    from harness.replay.options import ReplayOptions
    from harness.format.wire import encode

    fake = InProcessCodex(cassette, ReplayOptions(timeout=WAIT, linger=WAIT))
    lines = 0
    for ev in cassette.events:
        if ev.side == "client" and ev.msg is not None:
            fake.stdin.write(encode(ev.msg))
    fake.stdin.close()
    async for _ in fake.stdout:
        lines += 1
    await fake.wait(WAIT)
    if fake.report.status != "ok":
        raise RuntimeError(fake.report.summary())
    return lines


def child(path: str) -> None:
    from harness.format.cassette import load_cassette

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    cassette = load_cassette(path)
    t1 = time.perf_counter()
    lines = asyncio.run(_replay(cassette))
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"load": t1 - t0, "replay": t2 - t1, "lines": lines, "events": len(cassette.events),
                      "peak_kb": peak - base}))


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
        print(f"  {real_mb:.1f} MB: load {r['load']:.2f} s, replay {r['replay']:.2f} s, "
              f"peak +{r['peak_kb'] / 1024:.0f} MB, {r['events']:,} events", flush=True)
        path.unlink()
    return results


def render(results: list[dict[str, Any]]) -> tuple[str, bool]:
    ref = next((r for r in results if r["mb"] >= 9), results[0])
    per = lambda r, k: r[k] / r["mb"]  # noqa: E731
    ref_t = (ref["load"] + ref["replay"]) / ref["mb"]
    ref_m = ref["peak_kb"] / 1024 / ref["mb"]
    rows, ok = [], True
    for r in results:
        t_mb = (r["load"] + r["replay"]) / r["mb"]
        m_mb = r["peak_kb"] / 1024 / r["mb"]
        judged = r["mb"] >= ref["mb"]
        good = t_mb / ref_t <= GOAL and m_mb / ref_m <= GOAL
        ok = ok and (good or not judged)
        rows.append([f"{r['mb']:.1f}", f"{r['events']:,}", fmt(r["load"]), fmt(r["replay"]),
                     fmt(per(r, "load") * 1e3) + " / " + fmt(per(r, "replay") * 1e3), fmt(t_mb * 1e3),
                     fmt(r["peak_kb"] / 1024), fmt(m_mb), f"{t_mb / ref_t:.2f}", f"{m_mb / ref_m:.2f}",
                     verdict(good) if judged else "(reference: fixed costs)" if r["mb"] < ref["mb"] else ""])
    head = ["MB", "events", "load s", "replay s", "load/replay ms per MB", "total ms per MB", "peak RSS MB",
            "RSS MB per MB", f"time/MB vs {ref['mb']:.0f} MB", f"mem/MB vs {ref['mb']:.0f} MB", "verdict (<= 1.5)"]
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
