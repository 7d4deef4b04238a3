"""Durability (issue 12, point 7): the proxy killed with SIGKILL in the middle of a dense
burst. Its recorder process outlives it and records everything the proxy had forwarded,
then finishes the cassette saying the proxy went away. (How many milliseconds a kill
costs is measured, not asserted: bench/sigkill_loss.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.format.cassette import load_cassette
from harness.record.recorder import PROXY_GONE

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
WAIT = 120.0  # the recorder may have a backlog of a few hundred thousand lines to write
SEEN = 100_000

# Streams numbered notifications, 256 to a write, for as long as anyone reads.
PEER = r'''
import sys
out = sys.stdout.buffer
sys.stdin.buffer.readline()
i = 0
while True:
    out.write(b"".join(b'{"method":"item/agentMessage/delta","params":{"i":%d,"delta":"a few words"}}\n' % (i + k)
                       for k in range(256)))
    out.flush()
    i += 256
'''


def test_sigkill_mid_burst_loses_nothing_that_was_forwarded(tmp_path: Path) -> None:
    (tmp_path / "peer.py").write_text(PEER)
    cassette = tmp_path / "burst.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proxy = subprocess.Popen([PY, "-m", "harness", "record", "-o", str(cassette), "--", PY, str(tmp_path / "peer.py")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proxy.stdin is not None and proxy.stdout is not None
    proxy.stdin.write(b'{"id":1,"method":"go"}\n')
    proxy.stdin.flush()
    last = -1
    while last < SEEN:  # the peer streams until killed; each readline is a line the proxy forwarded
        line = proxy.stdout.readline()
        assert line, "the proxy stopped forwarding"
        last = json.loads(line)["params"]["i"]
    proxy.send_signal(signal.SIGKILL)
    assert proxy.wait(WAIT) == -signal.SIGKILL
    proxy.stdin.close()
    proxy.stdout.close()

    deadline = time.monotonic() + WAIT
    while not cassette.exists():
        assert time.monotonic() < deadline, "the recorder did not finish the cassette after the proxy died"
        time.sleep(0.1)
    recorded = load_cassette(cassette)
    assert not recorded.complete and recorded.meta["end"] == PROXY_GONE
    assert [e.msg for e in recorded.messages("client")] == [{"id": 1, "method": "go"}]
    indices = [e.msg["params"]["i"] for e in recorded.messages("server")]
    assert indices[:last + 1] == list(range(last + 1))  # every forwarded line, in order, none lost
    assert not (tmp_path / "burst.jsonl.partial").exists()
