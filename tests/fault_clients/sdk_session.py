"""A plain openai-codex SDK client: the session cassettes/openai_sdk/approval.jsonl recorded.

    python sdk_session.py [--pause S]

The SDK launches $CODEX_BIN (the fault sweep's shim) as its codex binary and has no
timeouts of its own. ``--pause S`` waits S seconds between initialize and
thread/start, as a program doing other work between two calls would.
"""

from __future__ import annotations

import os
import sys
import time


def approve(method: str, params: dict | None) -> dict:
    command = str((params or {}).get("command"))
    return {"decision": "accept" if "echo hi" in command else "decline"}


def main(pause: float) -> None:
    from openai_codex import CodexConfig
    from openai_codex.api import Thread
    from openai_codex.client import CodexClient

    cwd = os.getcwd()
    client = CodexClient(CodexConfig(codex_bin=os.environ.get("CODEX_BIN"), cwd=cwd), approval_handler=approve)
    try:
        client.start()
        client.initialize()
        time.sleep(pause)
        started = client.thread_start({"cwd": cwd, "approvalPolicy": "on-request", "sandbox": "read-only"})
        result = Thread(client, started.thread.id).run("Run echo hi, then touch forbidden.txt")
        print(result.final_response)
        client._proc.stdin.close()  # let codex see the end of input before close() signals it
        client._proc.wait(timeout=10)
    finally:
        client.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(float(args[1]) if args[:1] == ["--pause"] and len(args) > 1 else 0.0)
