"""A plain optio-codex client: one of the sessions cassettes/optio/ recorded, and nothing else.

    python optio_session.py SESSION      (handshake, text_turn, approval_accepted, ...)

It launches `codex app-server` the way optio's session layer does (optio-host's
LocalHost, found through $CODEX_BIN or PATH), drives CodexConversation as the
recording's test did and waits for each answer as optio's callers do: with no
timeout of its own. Exit code 0: the session went through. Used by the fault
sweep (`codex-cassette faults ... -- python optio_session.py SESSION`, docs/faults.md),
with optio-codex 0.1.0 and newer versions alike.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile


async def main(session: str) -> None:
    from optio_agents.conversation import PermissionDecision
    from optio_codex.conversation import CodexConversation
    from optio_host.host import LocalHost

    host = LocalHost(tempfile.mkdtemp(prefix="optio-host-"))
    os.makedirs(host.workdir, exist_ok=True)
    codex = os.environ.get("CODEX_BIN", "codex")
    handle = await host.launch_subprocess(shlex.join([codex, "app-server"]), stdin=True, merge_stderr=False)
    gated = session in ("approval_accepted", "approval_declined", "file_change_approval")
    conv = CodexConversation(cwd=os.getcwd(), permission_gate=gated,
                             sandbox="read-only" if session == "file_change_approval" else "workspace-write")
    answers: asyncio.Queue[str] = asyncio.Queue()
    deltas = asyncio.Event()
    conv.on_message(answers.put_nowait)
    conv.on_event(lambda e: deltas.set() if e.get("method") == "item/agentMessage/delta" else None)

    async def decide(request):
        allow = session != "approval_declined"
        return PermissionDecision(behavior="allow" if allow else "deny")

    conv.on_permission_request(decide)
    conv.attach(handle)
    reader = asyncio.create_task(conv.run_reader())
    await conv.bootstrap()

    async def turn(text: str) -> str:
        await conv.send(text)
        return await answers.get()

    if session == "text_turn":
        print(await turn("Say hello"))
    elif session == "approval_accepted":
        print(await turn("Run echo hi"))
    elif session == "approval_declined":
        print(await turn("Clean the build"))
    elif session == "file_change_approval":
        print(await turn("Create hello.txt"))
    elif session == "failed_turn":
        print(await turn("This one fails"), await turn("Try again"))
    elif session == "interrupt":
        await conv.send("Do something long")
        await deltas.wait()
        await conv.interrupt()
        print(await answers.get())
    elif session == "model_switch":
        print(await turn("Turn one"))
        if hasattr(conv, "request_model_change"):
            conv.request_model_change("gpt-5.6-terra")
        else:  # optio-codex 0.2 and later
            await conv.set_control("model", "gpt-5.6-terra")
        print(await turn("Turn two"), await turn("Turn three"))
    elif session != "handshake":
        raise SystemExit(f"unknown session {session!r}")
    handle.stdin.close()
    await reader
    await handle.pid_like.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "text_turn"))
