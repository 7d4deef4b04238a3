"""What a SIGKILL of the recording proxy in the middle of a dense burst costs the cassette.

A peer streams numbered notifications as fast as it can; the client reads them
raw (no parsing, so the wire runs at its fastest). After a while the proxy gets
SIGKILL. Whatever the client had received was forwarded; the loss is how much of
that the cassette lacks, in milliseconds of the client's reading: from the
arrival of the first forwarded line that was not recorded to the kill (0 when
nothing is missing). Goal: at most ~100 ms.

    python bench/sigkill_loss.py [--rounds 5] [--burst 1.5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, median, table, verdict  # noqa: E402

GOAL_MS = 100.0
WAIT = 600.0  # the recorder writes a backlog of millions of lines after the kill

PEER = r'''
import sys
out = sys.stdout.buffer
sys.stdin.buffer.readline()
i = 0
while True:
    out.write(b"".join(b'{"method":"item/agentMessage/delta","params":{"i":%d,"delta":"a few words of text"}}\n'
                       % (i + k) for k in range(256)))
    out.flush()
    i += 256
'''


def one_round(workdir: Path, n: int, burst: float) -> tuple[float, int, float]:
    """(ms lost, lines forwarded before the kill, seconds the recorder needed afterwards)."""
    cassette = workdir / f"kill-{n}.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proxy = subprocess.Popen([sys.executable, "-m", "harness", "record", "-o", str(cassette), "--",
                              sys.executable, str(workdir / "peer.py")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proxy.stdin is not None and proxy.stdout is not None
    proxy.stdin.write(b'{"id":1,"method":"go"}\n')
    proxy.stdin.flush()
    arrivals: list[tuple[float, int]] = []  # (when, the last index in that read)

    def read() -> None:
        tail = b""
        while chunk := os.read(proxy.stdout.fileno(), 1 << 16):  # type: ignore[union-attr]
            now = time.monotonic()
            head, _, tail = (tail + chunk).rpartition(b"\n")
            if head:
                arrivals.append((now, json.loads(head.rsplit(b"\n", 1)[-1])["params"]["i"]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(burst)
    killed = time.monotonic()
    proxy.send_signal(signal.SIGKILL)
    proxy.wait(WAIT)
    reader.join(WAIT)
    deadline = time.monotonic() + WAIT
    while not cassette.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    recorder_secs = time.monotonic() - killed
    source = cassette if cassette.exists() else cassette.with_name(cassette.name + ".partial")
    recorded = -1
    for line in source.read_bytes().split(b"\n")[1:]:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if event.get("from") == "server" and "msg" in event:
            recorded = event["msg"]["params"]["i"]
    forwarded = [a for a in arrivals if a[0] <= killed]
    first_missing = next((when for when, last in forwarded if last > recorded), killed)
    proxy.stdin.close()
    proxy.stdout.close()
    cassette.unlink(missing_ok=True)
    return (killed - first_missing) * 1e3, forwarded[-1][1] + 1 if forwarded else 0, recorder_secs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--burst", type=float, default=1.5, help="seconds of streaming before the kill")
    args = p.parse_args(argv)
    print(f"SIGKILL of the recording proxy mid-burst, {machine()}, {args.rounds} round(s) of {args.burst:g} s",
          flush=True)
    rows, losses = [], []
    with tempfile.TemporaryDirectory(prefix="bench-kill-") as tmp:
        (Path(tmp) / "peer.py").write_text(PEER)
        for n in range(args.rounds):
            lost, forwarded, after = one_round(Path(tmp), n, args.burst)
            losses.append(lost)
            rows.append([str(n + 1), f"{forwarded:,}", f"{lost:.0f}", f"{after:.1f}"])
    print(table(["round", "lines forwarded", "ms lost", "s the recorder needed after the kill"], rows))
    worst = max(losses)
    print(table(["measure", "value", "goal", "verdict"],
                [["worst loss (ms)", f"{worst:.0f}", f"<= {GOAL_MS:g}", verdict(worst <= GOAL_MS)],
                 ["median loss (ms)", f"{median(losses):.0f}", "", ""]]))
    return 0 if worst <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
