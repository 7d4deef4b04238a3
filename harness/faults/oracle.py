"""The verdict on one variant: did the client survive the fault, hang, or crash?

By default a client survives when it ends within the deadline, whatever it
concluded (passed, failed, raised: it noticed), and nothing crashed unobserved
in the background. It fails when it hangs, or when its reading loop dies with
nobody told (a task exception never retrieved, a thread's uncaught exception).
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from typing import Any

from harness.faults.catalogue import Fault
from harness.format.redact import Redactor

SURVIVED, HUNG, CRASHED = "survived", "hung", "crashed"
# Which rule said "hung": the client's tree was quiet long enough, or the deadline passed.
QUIET_RULE, DEADLINE_RULE = "quiet", "deadline"
OUTCOMES = (SURVIVED, HUNG, CRASHED)
# What a client process prints when a background part of it died and nobody noticed:
# asyncio's task never awaited, threading's uncaught exception, a Rust panic.
CRASH_MARKERS = ("Task exception was never retrieved", "Exception in thread", "panicked at")
# Signals a process dies of when it crashed (rather than being stopped).
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


@dataclass
class Verdict:
    """What one run of a client against one variant (or the clean cassette) came to."""

    fault: Fault | None          # None: the clean run
    outcome: str
    seconds: float
    deadline: float
    exit_code: int | None = None
    said: str = ""               # the client's last words (stderr's last line), or what crashed
    server: str = ""             # what the fake made of the client meanwhile (a divergence)
    variant_path: str | None = None
    rule: str = DEADLINE_RULE    # what decided a hang (QUIET_RULE or DEADLINE_RULE)
    quiet: float = 0.0           # the quiet period that was in force (0: none)

    @property
    def failed(self) -> bool:
        return self.outcome != SURVIVED

    @property
    def id(self) -> str:
        return self.fault.id if self.fault is not None else "clean"

    def message(self) -> str:
        """`after crash at cassette line 23 (after server item/agentMessage/delta) the client hung:
        quiet for 2.0 s after the fault` (or `hung: deadline 10 s`)."""
        what = f"after {self.fault.describe()}" if self.fault is not None else "on the clean cassette"
        if self.outcome == HUNG:
            return f"{what} the client hung: {self.hung_by()}"
        if self.outcome == CRASHED:
            return f"{what} the client crashed in the background: {self.said}"
        return f"{what} the client ended in {self.seconds:.1f} s" + (f" ({self.said})" if self.said else "")

    def hung_by(self) -> str:
        """The rule that decided a hang, in words."""
        if self.rule == QUIET_RULE:
            return f"quiet for {self.quiet:.1f} s after the fault"
        return f"deadline {self.deadline:g} s"

    def to_json(self) -> dict[str, Any]:
        fault = self.fault
        return {"id": self.id, "kind": fault.kind if fault else None, "point": fault.point if fault else None,
                "variant": fault.variant if fault else None, "outcome": self.outcome,
                "seconds": round(self.seconds, 3), "deadline": self.deadline, "exit_code": self.exit_code,
                "said": self.said, "server": self.server,
                "rule": self.rule if self.outcome == HUNG else None, "message": self.message(),
                "cassette": self.variant_path}


def last_words(stderr: str, limit: int = 200) -> str:
    """What a client said last: the last exception line of a traceback if there is one (a fake
    codex's own complaints may follow it on the same stderr), else the last line; secrets it
    may hold scrubbed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return ""
    said = next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line)), lines[-1])
    text = Redactor.default(env=os.environ).scrub_text(said)
    return text if len(text) <= limit else text[:limit] + "..."


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Closed|Exit|Interrupt)\b(: |$)")


def judge_process(fault: Fault | None, *, returncode: int | None, stderr: str, seconds: float,
                  deadline: float, killed: bool, rule: str = DEADLINE_RULE, quiet: float = 0.0) -> Verdict:
    """The verdict on a client process: ``killed`` means ``rule`` (the deadline, or a quiet
    tree for ``quiet`` seconds) ended it."""
    if killed:
        return Verdict(fault, HUNG, seconds, deadline, returncode, last_words(stderr), rule=rule, quiet=quiet)
    crashed_by = None
    if returncode is not None and returncode < 0 and -returncode in CRASH_SIGNALS:
        crashed_by = f"died of {signal.Signals(-returncode).name}"
    marker = next((m for m in CRASH_MARKERS if m in stderr), None)
    if marker is not None:
        at = stderr.index(marker)
        tail = [line for line in stderr[at:].splitlines() if line.strip()]
        crashed_by = last_words("\n".join(tail[-1:])) or marker
    if crashed_by is not None:
        return Verdict(fault, CRASHED, seconds, deadline, returncode, crashed_by)
    return Verdict(fault, SURVIVED, seconds, deadline, returncode, last_words(stderr))
