"""Whether a client's process tree has gone quiet: no CPU, no wake-up, no byte moved.

A hung client under a fault waits for something that never comes: every thread of every
process in its tree sleeps in a read or a poll with no timer. Waiting out the whole deadline
to say so costs most of a sweep. So the runner samples the tree (``activity``) every
``SAMPLE`` seconds and calls it hung once nothing has changed for ``QUIET`` seconds; the
deadline stays the upper bound.

What counts as activity, summed over every thread of every process in the tree
(the client and all it started, sessions of their own included):
- CPU time and the number of times a thread was scheduled (``/proc/P/task/T/schedstat``):
  a thread that wakes from a 1 s poll and goes back to sleep at once uses less CPU than a
  clock tick (utime+stime would not move), but it is scheduled, and that is counted;
- bytes read and written (``/proc/P/io`` rchar/wchar): the fake's wire as the client moves it,
  every byte it reads from or writes to the fake codex (the warm fake runs outside the tree);
- a process starting or ending in the tree.

``QUIET`` was measured (bench/faults.py, section (e)): at ``SAMPLE`` 0.1 s the longest
unchanged stretch of a busy client is one sample, of a client polling every 0.5 s about
0.5 s, of one polling every 1 s about 1 s, under the shared machine's load too. 2 s is
twice the 1 s poll loop's; a client whose own timer sleeps longer than that between two
wake-ups (a 5 s retry back-off) can be called hung where the deadline would have seen it
go on: give such a client ``--quiet 0`` (the deadline alone decides).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

QUIET = 2.0    # seconds of no activity that make a run hung
SAMPLE = 0.1   # seconds between two looks at the tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (by /proc), including those in sessions of their own."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def activity(pid: int) -> tuple[int, ...]:
    """What changes while the tree under ``pid`` does anything: (processes, CPU ns, times
    scheduled, bytes moved), the pids' sum standing for which processes there are."""
    tree = process_tree(pid)
    cpu = scheduled = moved = 0
    for p in tree:
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                fields = Path(f"/proc/{p}/task/{task}/schedstat").read_text().split()
                cpu += int(fields[0])
                scheduled += int(fields[2])
        except (OSError, IndexError, ValueError):
            pass  # it ended meanwhile: the set of pids says so next time
        try:
            for line in Path(f"/proc/{p}/io").read_text().splitlines():
                if line.startswith(("rchar:", "wchar:")):
                    moved += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return len(tree), sum(tree), cpu, scheduled, moved


@dataclass
class QuietWatch:
    """How long the tree under ``pid`` has been quiet, sample after sample."""

    pid: int
    last: tuple[int, ...] = ()
    since: float = 0.0
    _seen: bool = field(default=False, repr=False)

    def quiet_for(self, now: float) -> float:
        """Seconds since the tree last did anything (0 when it just did)."""
        current = activity(self.pid)
        if not self._seen or current != self.last:
            self.last, self.since, self._seen = current, now, True
        return now - self.since
