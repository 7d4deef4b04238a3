"""What keeping the old lines costs a re-record (harness.format.stable).

A re-record that finishes over an existing cassette reads the old file, aligns the two
and writes the old line of every unchanged event. This times that against a plain
write of the same recording (what finishing costs with --fresh), on the biggest
shipped cassette and on a ~10 MB one (the shipped model_switch session repeated, each
copy with its own thread and turn ids), in three cases: nothing changed; one event in
the middle changed; the first and the last event changed (the aligner cannot take a
common head or tail off, so the whole file goes through difflib).

    python bench/stable_rerecord.py [--size-mb 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, median, table  # noqa: E402

from harness.format.stable import stable_bytes  # noqa: E402

UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMP_RE = re.compile(rb'"(emittedAtMs|startedAtMs|completedAtMs|createdAt|updatedAt|totalTokens)":(\d+)')


def remint(data: bytes) -> bytes:
    """What a re-record of the same session writes: new UUIDs, moved times and counts."""
    names: dict[bytes, bytes] = {}
    data = UUID_RE.sub(lambda m: names.setdefault(m.group(0), str(uuid.uuid4()).encode()), data)
    return STAMP_RE.sub(lambda m: b'"%s":%d' % (m.group(1), int(m.group(2)) + 12345), data)


def big(source: bytes, size: int) -> bytes:
    """``source``'s events repeated up to ``size`` bytes, each copy with its own ids."""
    header, *lines = source.splitlines(keepends=True)
    out, n, t, total = [header], 0, 0.0, len(header)
    while total < size:
        names: dict[bytes, bytes] = {}
        for line in lines:
            ev = json.loads(UUID_RE.sub(lambda m: names.setdefault(m.group(0), str(uuid.uuid4()).encode()), line))
            n += 1
            ev["i"], ev["t"] = n, round(t + ev["t"], 6)
            data = json.dumps(ev, separators=(",", ":")).encode() + b"\n"
            out.append(data)
            total += len(data)
        t += 100.0
    return b"".join(out)


def change(data: bytes, where: list[int]) -> bytes:
    lines = data.splitlines(keepends=True)
    for k in where:
        ev = json.loads(lines[k])
        ev.setdefault("msg", {})["changed"] = True
        lines[k] = json.dumps(ev, separators=(",", ":")).encode() + b"\n"
    return b"".join(lines)


def timed(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    shipped = max((ROOT / "cassettes").glob("*/*.jsonl"), key=lambda p: p.stat().st_size)
    source = shipped.read_bytes()
    olds = {f"{shipped.parent.name}/{shipped.name}": source,
            f"{args.size_mb:g} MB": big(source, int(args.size_mb * (1 << 20)))}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.jsonl"
        for name, old in olds.items():
            n = old.count(b"\n") - 1
            new = remint(old)
            cases = {"unchanged": new, "one event changed": change(new, [n // 2]),
                     "first and last changed": change(new, [1, n])}
            for case, data in cases.items():
                plain = timed(lambda: write(out, data), args.rounds)
                result = stable_bytes(old, data)
                assert result is not None
                stable = timed(lambda: write(out, stable_bytes(old, data).data), args.rounds)  # type: ignore[union-attr]
                rows.append([name, f"{len(old) / 1e6:.2f}", n, case, result.written,
                             f"{plain * 1000:.1f}", f"{stable * 1000:.1f}", f"{stable / plain:.0f} x"])
    print(machine())
    print(table(["cassette", "MB", "events", "re-record", "lines new", "plain write ms", "stable ms", "ratio"], rows))


if __name__ == "__main__":
    main()
