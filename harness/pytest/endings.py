"""How a test's recordings end at teardown: in-process handles, SSH handles, and the
proxies a client launched itself (``codex_app_server.argv``); a test that recorded nothing.

The test's event loop may be closed by now, so nothing here needs it: a local
codex is reaped by harness.record.child (its status is known, or said to be
unknown, never guessed), and a proxy is a process of its own that writes its
cassette and exits. A test that did not pass leaves every cassette it recorded
``complete: false`` with the reason, so ``--codex-record-mode=new`` records it again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from harness.format.connections import Launch
from harness.format.locks import LockBusy
from harness.format.writer import mark_incomplete
from harness.record.ending import ExitStatus

PROXY_GRACE = 10.0  # a proxy the client left running: this long to end by itself, then again after SIGTERM


def end_process(recorder: Any, proc: Any, grace: float) -> tuple[ExitStatus | None, str | None]:
    """Close a recorded local codex's stdin and reap it. Returns its status, and why the
    session was cut short when the teardown had to kill it."""
    if recorder.stdin is not None:
        try:
            recorder.stdin.close()
        except RuntimeError:  # the test's event loop is gone: close the pipe itself
            pipe = proc.stdin.transport.get_extra_info("pipe") if proc.stdin is not None else None
            if pipe is not None:
                pipe.close()
        except OSError:
            pass
    child = proc.child  # a harness.record.process.OwnedProcess
    status = child.wait(grace)
    if status is not None or child.lost:
        return status, None
    child.kill()
    return child.wait(5.0), (f"codex did not exit within {grace:g} s of its stdin closing; the test's "
                             "teardown killed it")


def end_remote(handle: Any) -> tuple[ExitStatus | None, str | None, str | None]:
    """A codex over SSH: (status, why it was cut short, a problem for the test). The connection
    lives in the test's event loop, closed by now, so only the test itself can have ended
    the session (closing stdin and reading stdout to the end)."""
    status = handle.exit_value
    error = getattr(getattr(handle.process, "exit", None), "error", None)
    if status is None:
        why = "the SSH session was still open when the test ended"
        return None, why, (f"{why}: close the driver's stdin and read its stdout to the end (or "
                           "`await handle.aclose()`) before the test returns")
    if error is not None:
        return status, str(error), str(error)
    return status, None, None


def settle_proxies(launches: list[Launch]) -> list[str]:
    """Wait for the recording proxies the test's client launched to write their cassettes
    and exit; stop (SIGTERM, then SIGKILL) any the client left running. Returns problems."""
    problems = []
    for launch in launches:
        if launch.pid and _is_proxy(launch.pid) and not _gone(launch.pid, PROXY_GRACE):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(launch.pid, sig)
                except ProcessLookupError:
                    break
                if _gone(launch.pid, PROXY_GRACE):
                    break
            problems.append(f"the recording proxy of connection {launch.number} (pid {launch.pid}) was still "
                            "running when the test ended, so it was stopped: let the client close codex "
                            "before the test returns")
    return problems


def mark_failed(paths: list[Path], reason: str) -> list[str]:
    """The test did not pass: none of its cassettes is to be trusted as complete. Returns
    problems (a cassette still being written by a recorder that outlived its proxy)."""
    problems = []
    for path in paths:
        try:
            mark_incomplete(path, reason)
        except LockBusy as exc:
            problems.append(f"{path} could not be marked incomplete: {exc}")
    return problems


def never_connected(cassette: Path, transport: str) -> str:
    """The failure of a recording test whose client never reached the recorder (it ran the
    real codex by itself, or nothing): it names codex_app_server's doors."""
    doors = ["`.argv` (the command to launch instead of `codex app-server`)",
             "`.env` (its PATH finds the recording `codex` first)",
             "`.bin_dir` (its `codex`, for a client that takes a codex path such as CODEX_BIN and adds "
             "`app-server` itself)", "`await .handle()` (in-process)"]
    url = "`.url` (the socket a WebSocket client connects to)"
    doors = [url, *doors] if transport != "stdio" else [*doors, url + " with transport='ws' or 'unix'"]
    return (f"no client connected to codex_app_server while the test recorded, so nothing was recorded to "
            f"{cassette} (a client that starts the real codex by itself is not recorded). A client reaches the "
            "recorder through one of codex_app_server's doors: " + "; ".join(doors) + ".")


def _is_proxy(pid: int) -> bool:
    """Whether pid is still one of our recording proxies (not a process that reused it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"harness" in argv and b"record" in argv


def _gone(pid: int, timeout: float) -> bool:
    """Whether pid has exited (a zombie its parent has not reaped yet counts) within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
