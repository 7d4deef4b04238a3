"""Recording when the wire is quiet: how a recorder paces itself so it never slows the wire.

The wire (forwarding threads, or event-loop callbacks) says each time it moved a chunk;
the recorder, before recording, waits while chunks keep coming (QUIET apart). Once the
oldest unrecorded chunk is MAX_LAG old it records anyway, in SLICEs with pauses, so a
long stream still gets most of the machine.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Callable

QUIET = 0.002
QUIET_MAX = 0.032  # the longest pause between two looks at a busy wire
MAX_LAG = 2.0
SLICE = 0.0005  # then QUIET's pause: a stale backlog takes about a fifth of a core


@dataclass
class QuietWire:
    clock: Callable[[], float]
    last_wire: float = -math.inf  # when the wire last moved a chunk
    _slice_start: float = -math.inf  # when the recorder's current slice of stale work began

    def moved(self) -> float:
        """The wire moved a chunk (safe from any thread); the time it did."""
        self.last_wire = self.clock()
        return self.last_wire

    async def let_burst_pass(self, oldest: float) -> None:
        """Wait while the wire is streaming, so recording does not take the CPU (and the GIL)
        the wire needs; ``oldest`` is when the oldest unrecorded chunk came."""
        pause = QUIET
        while True:
            now = self.clock()
            if now - self.last_wire >= QUIET:
                return
            if now - oldest >= MAX_LAG:
                if now - self._slice_start < SLICE:
                    return
                await asyncio.sleep(QUIET)
                self._slice_start = self.clock()
                return
            await asyncio.sleep(pause)
            # A long burst: look less often (each look takes time from the wire).
            pause = min(pause * 2, QUIET_MAX)
