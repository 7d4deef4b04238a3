"""A peer, side by side: agent-vcr (PyPI `agent-vcr`, JSON-RPC record/replay for MCP)
replaying the same request/response-only session as codex-cassette.

One synthetic session of N `tools/call` request/response pairs is written in
both formats (agent-vcr's .vcr JSON via its own pydantic models, and our
cassette v1 JSONL). Measured per N, in one run:

  load          agent-vcr MCPReplayer.from_file  vs  harness load_cassette
  in-process    agent-vcr MCPReplayer.handle_request per request (a plain call)
                vs our replay engine behind InProcessCodex (async pipe pair),
                one request in flight at a time
  stdio         each replayer as a child process, the same client over pipes:
                agent-vcr's MCPReplayer.serve_stdio (what `agent-vcr replay
                --transport stdio` runs, minus its banner on stdout) vs
                `python -m fake_server`

agent-vcr is optional: without it the script says so and exits 2.

    python bench/peer_agent_vcr.py [--quick] [--sizes 1000,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import end_process, fmt, machine, table  # noqa: E402

from fake_server import FakeCodexCommand, InProcessCodex  # noqa: E402
from harness.format.cassette import Cassette, Event, load_cassette  # noqa: E402
from harness.format.writer import dump_cassette  # noqa: E402
from harness.replay.options import ReplayOptions  # noqa: E402

WAIT = 120.0   # the longest one side may take for one whole session
AGENT_VCR_SERVE = ("import asyncio, sys\nfrom agent_vcr.replayer import MCPReplayer\n"
                   "asyncio.run(MCPReplayer.from_file(sys.argv[1]).serve_stdio())\n")


def pairs(n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for k in range(n):
        req = {"id": k + 1, "method": "tools/call",
               "params": {"name": "lookup", "arguments": {"key": f"k{k}", "text": "some words " * 4}}}
        resp = {"id": k + 1, "result": {"content": [{"type": "text", "text": f"value {k} " * 8}],
                                        "isError": False}}
        out.append((req, resp))
    return out


def write_ours(session: list[tuple[dict, dict]], path: Path) -> Path:
    events: list[Event] = []
    for req, resp in session:
        events += [Event(side="client", msg=req), Event(side="server", msg=resp)]
    events += [Event(side="client", eof=True), Event(side="server", exit=0)]
    for n, ev in enumerate(events, 1):
        ev.index, ev.t = n, n * 1e-4
    return dump_cassette(Cassette(path=None, meta={"complete": True}, events=events), path)


def write_theirs(session: list[tuple[dict, dict]], path: Path) -> Path:
    from agent_vcr.core.format import (JSONRPCRequest, JSONRPCResponse, VCRInteraction, VCRMetadata,
                                       VCRRecording, VCRSession)

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    init_req = JSONRPCRequest(id=0, method="initialize", params={"clientInfo": {"name": "bench"}})
    init_resp = JSONRPCResponse(id=0, result={"serverInfo": {"name": "bench"}})
    interactions = [
        VCRInteraction(sequence=k, timestamp=t0 + timedelta(milliseconds=k), direction="client_to_server",
                       request=JSONRPCRequest(**req), response=JSONRPCResponse(**resp), latency_ms=0.1)
        for k, (req, resp) in enumerate(session)]
    recording = VCRRecording(
        metadata=VCRMetadata(version="1.0.0", recorded_at=t0, transport="stdio"),
        session=VCRSession(initialize_request=init_req, initialize_response=init_resp,
                           interactions=interactions))
    recording.save(str(path))
    return path


# -- in-process ----------------------------------------------------------------


def theirs_inprocess(path: Path, session: list[tuple[dict, dict]]) -> tuple[float, float]:
    from agent_vcr.replayer import MCPReplayer

    t0 = time.perf_counter()
    replayer = MCPReplayer.from_file(path)
    t1 = time.perf_counter()
    for req, resp in session:
        got = replayer.handle_request(req)
        if got.get("result") != resp["result"]:
            raise RuntimeError(f"agent-vcr answered {req['id']} with {got}")
        if time.perf_counter() - t1 > WAIT:
            raise TimeoutError(f"agent-vcr took over {WAIT:g} s")
    return t1 - t0, time.perf_counter() - t1


async def ours_inprocess(path: Path, session: list[tuple[dict, dict]]) -> tuple[float, float]:
    from harness.format.wire import encode

    t0 = time.perf_counter()
    cassette = load_cassette(path)
    t1 = time.perf_counter()
    fake = InProcessCodex(cassette, ReplayOptions(timeout=WAIT, linger=WAIT))
    lines = fake.stdout.__aiter__()

    async def talk() -> None:
        for req, resp in session:
            fake.stdin.write(encode(req))
            got = json.loads(await lines.__anext__())
            if got.get("result") != resp["result"]:
                raise RuntimeError(f"codex-cassette answered {req['id']} with {got}")
    await asyncio.wait_for(talk(), WAIT)  # one bound for the session, as agent-vcr's loop has
    t2 = time.perf_counter()
    fake.stdin.close()
    await fake.wait(WAIT)
    if fake.report.failed():
        raise RuntimeError(fake.report.summary())
    return t1 - t0, t2 - t1


# -- over stdio ----------------------------------------------------------------


async def over_stdio(argv: list[str], env: dict[str, str], session: list[tuple[dict, dict]]) -> float:
    """Seconds from spawn to the last answer, one request in flight at a time."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL, env=env, limit=1 << 24)
    assert proc.stdin and proc.stdout
    try:
        async def talk() -> None:
            for req, resp in session:
                proc.stdin.write((json.dumps(req) + "\n").encode())
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"{argv[-2:]} closed its stdout at request {req['id']}")
                    if line.startswith(b"{") and json.loads(line).get("id") == req["id"]:
                        break
        await asyncio.wait_for(talk(), WAIT)
        return time.perf_counter() - t0
    finally:
        await end_process(proc)


async def measure(sizes: list[int], workdir: Path) -> list[dict[str, Any]]:
    results = []
    warm = pairs(10)  # first use pays for imports and caches: not part of either replay's rate
    theirs_inprocess(write_theirs(warm, workdir / "warm.vcr"), warm)
    await ours_inprocess(write_ours(warm, workdir / "warm.jsonl"), warm)
    for n in sizes:
        session = pairs(n)
        ours = write_ours(session, workdir / f"ours-{n}.jsonl")
        theirs = write_theirs(session, workdir / f"theirs-{n}.vcr")
        r: dict[str, Any] = {"n": n, "bytes": {"ours": ours.stat().st_size, "theirs": theirs.stat().st_size}}
        r["theirs_load"], r["theirs_replay"] = theirs_inprocess(theirs, session)
        r["ours_load"], r["ours_replay"] = await ours_inprocess(ours, session)
        fake = FakeCodexCommand(ours, timeout=WAIT)
        serve = workdir / "agent_vcr_serve.py"
        serve.write_text(AGENT_VCR_SERVE)
        r["theirs_stdio"] = await over_stdio([sys.executable, str(serve), str(theirs)], fake.env(), session)
        r["ours_stdio"] = await over_stdio(fake.argv(), fake.env(), session)
        results.append(r)
        print(f"  N={n}: load {r['ours_load']:.3f} vs {r['theirs_load']:.3f} s, in-process "
              f"{r['ours_replay']:.3f} vs {r['theirs_replay']:.3f} s, stdio {r['ours_stdio']:.3f} vs "
              f"{r['theirs_stdio']:.3f} s (ours vs agent-vcr)", flush=True)
    return results


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        n = r["n"]
        for what, o, t in (("file size (MB)", r["bytes"]["ours"] / 2**20, r["bytes"]["theirs"] / 2**20),
                           ("load (s)", r["ours_load"], r["theirs_load"]),
                           ("in-process replay (req/s)", n / r["ours_replay"], n / r["theirs_replay"]),
                           ("stdio: spawn to last answer (req/s)", n / r["ours_stdio"], n / r["theirs_stdio"])):
            better = o / t if "req/s" in what else t / o
            rows.append([f"{n:,}", what, fmt(o), fmt(t), f"{better:.2f}x"])
    return table(["N pairs", "measure", "codex-cassette", "agent-vcr", "codex-cassette advantage"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", default="1000,5000")
    args = p.parse_args(argv)
    try:
        import agent_vcr  # noqa: F401
        from importlib.metadata import version
        vcr_version = version("agent-vcr")
    except ImportError:
        print("agent-vcr is not installed (`pip install agent-vcr`); nothing to compare against.")
        return 2
    sizes = [300] if args.quick else [int(s) for s in args.sizes.split(",")]
    print(f"peer comparison with agent-vcr {vcr_version}, {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        results = asyncio.run(measure(sizes, Path(tmp)))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
