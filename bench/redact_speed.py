"""Lines per second of redaction (`Redactor.scrub_raw` on each line) over real cassettes.

Every line of the shipped cassettes (recorded from the real codex), as the recorder sees
them: the whole JSON line as text, so the gate, the detectors and the secret-named fields
all run. Best of 5 passes; prints lines/s and bytes/s.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.format.redact import Redactor  # noqa: E402


def main() -> None:
    lines = [line for p in sorted((ROOT / "cassettes").rglob("*.jsonl"))
             for line in p.read_text(encoding="utf-8", errors="replace").splitlines()]
    size = sum(len(x) for x in lines)
    parsed = [(json.loads(line), line) for line in lines]
    for what, run in (("scrub(message) as the recorder does", lambda r: [r.scrub(m, src) for m, src in parsed]),
                      ("scrub_raw(line), the whole line as text", lambda r: [r.scrub_raw(x) for x in lines])):
        best = float("inf")
        for _ in range(5):
            r = Redactor()  # fresh: no compiled-regex cache carried between passes
            t0 = time.perf_counter()
            run(r)
            best = min(best, time.perf_counter() - t0)
        print(f"{what}: {len(lines)} lines, {size / 1e6:.2f} MB: {len(lines) / best:,.0f} lines/s, "
              f"{size / best / 1e6:.1f} MB/s (best of 5)")


if __name__ == "__main__":
    main()
