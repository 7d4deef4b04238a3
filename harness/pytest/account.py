"""Before a test records from the real codex without a live scenario: does that codex have an
account to answer with? Without one, each turn retries its model connection for minutes and the
cassette ends cut short; asked up front (``account/read``), the test fails in seconds instead."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
import time
from typing import Any

PROBE_DEADLINE = 15.0  # codex answers in well under a second; a slow machine gets time, never forever
KEY_VARIABLES = ("OPENAI_API_KEY", "CODEX_API_KEY")  # an API key is an account codex does not report


def _exchange(binary: str, env: dict[str, str], deadline: float) -> dict[str, Any] | None:
    """``account/read``'s result from a short-lived ``codex app-server``; None when it gave none."""
    with tempfile.TemporaryDirectory(prefix="codex-account-") as cwd:
        proc = subprocess.Popen([binary, "app-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        try:
            return _ask(proc, deadline)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _ask(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    for msg in ({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "codex_cassette", "version": "0"}}},
                {"method": "initialized"}, {"id": 2, "method": "account/read", "params": {"refreshToken": False}}):
        proc.stdin.write((json.dumps(msg) + "\n").encode())
    proc.stdin.flush()
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    end = time.monotonic() + deadline
    while (left := end - time.monotonic()) > 0:
        if not selector.select(left):
            break
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("id") == 2:
                result = msg.get("result")
                return result if isinstance(result, dict) else None
    return None


def missing_account(binary: str, env: dict[str, str], deadline: float = PROBE_DEADLINE) -> str | None:
    """Why recording from this codex would only time out, or None when it has an account, needs
    none (a provider without OpenAI auth), or could not tell (then the recording goes on)."""
    if any(env.get(name) for name in KEY_VARIABLES):
        return None
    try:
        result = _exchange(binary, env, deadline)
    except OSError:
        return None  # not startable: the recording says so itself
    if result is None or result.get("account") is not None or not result.get("requiresOpenaiAuth"):
        return None
    home = env.get("CODEX_HOME") or "~/.codex"
    return (f"this codex ({binary}) has no account (account/read: no account, OpenAI auth required), so "
            "every turn would retry its model connection for minutes. Record offline instead, against the "
            "loopback mock model: give the marker a live scenario (live='path/to/scenario.yaml', "
            "docs/recording.md). Or give codex a real account: `codex login` (it writes auth.json in "
            f"{home}) or OPENAI_API_KEY in the environment. Nothing was recorded.")
