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
    print(f"{len(lines)} lines of the shipped cassettes, {sum(len(x) for x in lines) / 1e6:.2f} MB")
    parsed = [(json.loads(line), line) for line in lines]
    delta = json.dumps({"method": "item/agentMessage/delta", "params": {
        "threadId": "019b2f3c-8a41-7e52-9c07-5d1e2f3a4b6c", "turnId": "1", "itemId": "msg_0a1b2c",
        "delta": "The build is green; the parser needs one more fixture."}})
    stream = [(json.loads(delta), delta)] * 20_000
    for what, run, count in (
            ("a streamed delta, scrub(message)", lambda r: [r.scrub(m, src) for m, src in stream], len(stream)),
            ("scrub(message) as the recorder does", lambda r: [r.scrub(m, src) for m, src in parsed], len(lines)),
            ("scrub_raw(line), the whole line as text", lambda r: [r.scrub_raw(x) for x in lines], len(lines))):
        best = float("inf")
        for _ in range(5):
            r = Redactor()  # fresh: no compiled-regex cache carried between passes
            t0 = time.perf_counter()
            run(r)
            best = min(best, time.perf_counter() - t0)
        print(f"{what}: {count / best:,.0f} lines/s (best of 5)")


if __name__ == "__main__":
    main()
