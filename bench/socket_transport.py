"""Sockets: frames per second through the recorder against a direct connection, and
start-up to the banner of the fake and of the recorder against the real codex.

Throughput. A small WebSocket peer (websockets' threading server, in its own process)
listens as codex does (`--listen ws://127.0.0.1:0` or `unix://PATH`, codex's banner on
stderr) and streams M text frames when asked. It is reached two ways, alternating:

  direct   the client connects to the peer
  proxy    `python -m harness record -o X --listen URL -- python peer.py --listen URL`:
           the recorder in front of the peer, writing a cassette of every frame

Frames/second at the client during a burst (each stream, then a pause while nothing is
timed, as a turn's deltas come in bursts; the recorder records when the wire is quiet);
goal: proxied >= 0.9 x direct. Also the recorder's own CPU time per frame (forwarding and
recording, read from /proc after it caught up): a number the machine's load moves less.

Start-up. Spawn to the `listening on: ws://...` line on stderr: the fake (warm through
this process's fork server, as the fixtures hand it out, and cold), the recorder in
front of the real codex, and the real codex alone (offline: a throwaway CODEX_HOME whose
config points at a loopback mock model; nothing reaches the network). Goal: the warm
fake <= 1/3 of codex.

    python bench/socket_transport.py [--quick] [--frames 20000] [--rounds 5] [--runs 9]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import INIT_PARAMS, fmt, machine, median, table, verdict  # noqa: E402

from fake_server import FakeCodexCommand  # noqa: E402
from fake_server.forkserver import ensure_server, launcher_argv, stop_server  # noqa: E402
from harness.format.cassette import Cassette, Event  # noqa: E402
from harness.format.writer import dump_cassette  # noqa: E402

WAIT = 60.0
GOAL_THROUGHPUT = 0.9
GOAL_STARTUP = 1 / 3

PEER = r'''
import sys
from websockets.sync.server import serve, unix_serve

FRAME = '{"method":"item/agentMessage/delta","params":{"threadId":"t","turnId":"u","itemId":"m","delta":"a few words"}}'

def handler(conn):
    for request in conn:
        count = int(request)
        for _ in range(count):
            conn.send(FRAME)
        conn.send('{"id":1,"result":{}}')

url = sys.argv[sys.argv.index("--listen") + 1]
options = dict(compression=None, max_size=None, ping_interval=None)
if url.startswith("ws://"):
    server = serve(handler, "127.0.0.1", int(url.rsplit(":", 1)[1]), **options)
    port = server.socket.getsockname()[1]
    print(f"codex app-server (WebSockets)\n  listening on: ws://127.0.0.1:{port}", file=sys.stderr, flush=True)
else:
    server = unix_serve(handler, url[len("unix://"):], **options)
server.serve_forever()
'''


# -- throughput -------------------------------------------------------------------------


async def wait_listening(proc: asyncio.subprocess.Process, url: str) -> str:
    if url.startswith("unix://"):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_unix_connection(url[len("unix://"):])
                writer.close()
                return url
            except OSError:
                await asyncio.sleep(0.01)
        raise RuntimeError(f"nothing listened on {url}")
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), WAIT)
        if not line:
            raise RuntimeError("the process ended before its banner")
        if b"listening on: " in line:
            return line.split(b"listening on: ", 1)[1].strip().decode()


PAUSE = 1.0  # between two bursts, untimed: the recorder catches up


async def stream(url: str, count: int, rounds: int) -> list[float]:
    """Frames per second of `rounds` bursts of `count` frames on one connection."""
    from websockets.asyncio.client import connect, unix_connect

    options: dict[str, Any] = {"compression": None, "max_size": None, "ping_interval": None}
    if url.startswith("unix://"):
        ws = await unix_connect(url[len("unix://"):], uri="ws://localhost/", **options)
    else:
        ws = await connect(url, **options)
    rates = []
    try:
        for _ in range(rounds):
            await asyncio.sleep(PAUSE)
            t0 = time.perf_counter()
            await ws.send(str(count))
            seen = 0
            while True:
                frame = await asyncio.wait_for(ws.recv(decode=False), WAIT)
                if frame.startswith(b'{"id"'):
                    break
                seen += 1
            if seen != count:
                raise RuntimeError(f"expected {count} frames, got {seen}")
            rates.append(count / (time.perf_counter() - t0))
    finally:
        await ws.close()
    return rates


def cpu_seconds(pid: int) -> float:
    """user + system time of one process so far (not its children)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_run(argv: list[str], url: str, count: int, rounds: int) -> tuple[list[float], float]:
    """Burst rates, and the spawned process's CPU seconds per frame once it is idle again."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        url = await wait_listening(proc, url)
        cpu0 = cpu_seconds(proc.pid)
        rates = await stream(url, count, rounds)
        await asyncio.sleep(PAUSE)
        return rates, (cpu_seconds(proc.pid) - cpu0) / (count * rounds)
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), WAIT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def throughput(transport: str, count: int, rounds: int, workdir: Path) -> dict[str, list[float]]:
    peer = workdir / "peer.py"
    peer.write_text(PEER)
    out: dict[str, list[float]] = {"direct": [], "proxy": [], "cpu": []}
    for r in range(rounds):
        for name in ("direct", "proxy"):
            upstream = "ws://127.0.0.1:0" if transport == "ws" else f"unix://{workdir}/peer-{name}-{r}.sock"
            argv = [sys.executable, str(peer), "--listen", upstream]
            url = upstream
            if name == "proxy":
                url = "ws://127.0.0.1:0" if transport == "ws" else f"unix://{workdir}/client-{r}.sock"
                cassette = workdir / f"proxy-{transport}-{r}.jsonl"
                argv = [sys.executable, "-m", "harness", "record", "-o", str(cassette), "--listen", url, "--", *argv]
            rates, cpu = await one_run(argv, url, count, 3)
            out[name] += rates
            if name == "proxy":
                out["cpu"].append(cpu)
        lines = sum(1 for _ in open(cassette, "rb"))
        if lines < 3 * count:
            raise RuntimeError(f"the recorder's cassette has {lines} lines, expected over {3 * count}")
    return out


# -- start-up ---------------------------------------------------------------------------


def to_banner(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> float:
    """Seconds from spawn to the `listening on:` line on stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=cwd)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"listening on: " in line:
                return time.perf_counter() - t0
        raise RuntimeError(f"{argv[0]} ended before its banner")
    finally:
        proc.terminate()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def startup(runs: int, workdir: Path) -> dict[str, list[float]]:
    from harness.live.codex_home import make_codex_home
    from harness.live.mock_model import MockModelThread
    from harness.live.binary import find_codex_binary

    cassette = dump_cassette(Cassette(path=None, meta={"codex_version": "0.163.0", "complete": True}, events=[
        Event(side="client", msg={"id": 1, "method": "initialize", "params": INIT_PARAMS}),
        Event(side="server", msg={"id": 1, "result": {"userAgent": "codex_cli_rs/0.163.0"}})]),
        workdir / "init.jsonl")
    command = FakeCodexCommand(cassette)
    listen = ("app-server", "--listen", "ws://127.0.0.1:0")
    server = ensure_server()
    assert server is not None, "the fork server is switched off (CODEX_CASSETTE_FORKSERVER=0)"
    server.wait_ready()
    time.sleep(1.0)  # its idle-time imports (the socket serving among them) and its spare child
    warm = launcher_argv(command.fake_args(*listen))
    assert warm is not None
    cold = command.cold_argv(*listen)
    codex = str(find_codex_binary(None))
    out: dict[str, list[float]] = {"fake (warm)": [], "fake (cold)": [], "recorder + codex": [], "codex": []}
    with MockModelThread([]) as mock:
        home = make_codex_home(mock.base_url, workdir / "codex-home")
        real = [codex, *listen]
        recorded = [sys.executable, "-m", "harness", "record", "-o", str(workdir / "startup.jsonl"),
                    "--listen", "ws://127.0.0.1:0", "--", *real]
        for _ in range(runs):
            out["fake (warm)"].append(to_banner(warm, command.env()))
            out["fake (cold)"].append(to_banner(cold, command.env()))
            out["codex"].append(to_banner(real, home.env, str(home.root)))
            out["recorder + codex"].append(to_banner(recorded, {**home.env, **command.env(home.env)},
                                                     str(home.root)))
    stop_server()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=9)
    args = p.parse_args(argv)
    frames, rounds, runs = (10_000, 1, 3) if args.quick else (args.frames, args.rounds, args.runs)
    print(f"sockets, {machine()}; {rounds} round(s) x 3 streams of {frames:,} frames; {runs} start-ups each",
          flush=True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-sockets-") as tmp:
        rows = []
        for transport in ("ws", "unix"):
            r = asyncio.run(throughput(transport, frames, rounds, Path(tmp)))
            direct, proxied = median(r["direct"]), median(r["proxy"])
            ratio = proxied / direct
            ok = ok and ratio >= GOAL_THROUGHPUT
            rows.append([f"{transport}: frames/s", fmt(direct), fmt(proxied), f"ratio {ratio:.2f}",
                         f"{median(r['cpu']) * 1e6:.1f}", ">= 0.9", verdict(ratio >= GOAL_THROUGHPUT)])
        print(table(["measure", "direct", "through the recorder", "", "recorder CPU us/frame", "goal", "verdict"],
                    rows), flush=True)
        times = startup(runs, Path(tmp))
    codex = median(times["codex"])
    rows = []
    for name, values in times.items():
        ratio = median(values) / codex
        goal = name == "fake (warm)"
        if goal:
            ok = ok and ratio <= GOAL_STARTUP
        rows.append([name, fmt(median(values) * 1e3), f"{ratio:.2f} x codex", "<= 0.33" if goal else "",
                     verdict(ratio <= GOAL_STARTUP) if goal else ""])
    print(table(["spawn -> banner", "median ms", "ratio", "goal", "verdict"], rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
