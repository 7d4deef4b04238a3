"""The reports fakes leave in a directory (``report-{pid}.json``; a fake on a socket adds its
sessions' ``report-{pid}.K.json``): read in launch order, and the fakes still running stopped.
What the pytest fixtures and the fault sweep's runner both do when a session ends."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.replay.report import ReplayReport

from fake_server.paths import MARKER


def report_order(path: Path) -> tuple[str, int]:
    """report-PID.json before report-PID.K.json (a fake on a socket: the listener, then its
    sessions in order), so the last report read is the last session's."""
    pid, _, k = path.name[len("report-"):-len(".json")].partition(".")
    return pid, int(k) if k.isdigit() else 0


def read_reports(directory: Path, torn_ok: bool = False) -> list[ReplayReport]:
    """Every report in ``directory``, in launch order. One that cannot be read is a HarnessError
    naming it; with ``torn_ok`` it is passed over (a fake killed mid-write left it half done)."""
    found = []
    for path in sorted(directory.glob("report-*.json"), key=report_order):
        try:
            found.append(ReplayReport.read(path))
        except (OSError, ValueError, TypeError, KeyError):
            if not torn_ok:
                raise HarnessError(f"{path}: the fake codex wrote a report that cannot be read") from None
    return found


def is_fake(pid: int) -> bool:
    """Whether pid is still a fake codex (not a process that reused the number): the cold
    fake or the warm launcher (both run a file of fake_server), or a bin dir's `codex`
    that is the launcher itself (a script marked as ours in its first lines)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs to ask: trust the report
    except OSError:
        return False
    if b"fake_server" in cmdline:
        return True
    for arg in cmdline.split(b"\0")[1:4]:  # python, its flags, then the script
        if arg.endswith(b"/codex"):
            try:
                with open(arg, "rb") as script:
                    return MARKER.encode() in script.read(512)
            except OSError:
                return False
    return False


def stop_running(directory: Path, grace: float, kill: bool = False) -> None:
    """SIGTERM every fake whose report in ``directory`` still says running (and whose pid is
    still a fake), so it writes its final report; wait up to ``grace`` seconds for each to
    say otherwise (with ``kill``: to end), then with ``kill`` SIGKILL whatever is still alive."""
    running = [r.pid for r in read_reports(directory, torn_ok=True)
               if r.status == "running" and r.pid and is_fake(r.pid)]
    signal_all(running, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in running:
        path = directory / f"report-{pid}.json"
        while time.monotonic() < deadline and alive(pid):
            if not kill:
                try:
                    if ReplayReport.read(path).status != "running":
                        break
                except (OSError, ValueError, TypeError, KeyError):
                    pass  # being rewritten this very moment: look again
            time.sleep(0.02)
    if kill:
        signal_all([pid for pid in running if alive(pid)], signal.SIGKILL)


def signal_all(pids: list[int], sig: int) -> None:
    """``sig`` to each of ``pids`` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
