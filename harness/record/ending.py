"""How a recording ended, said the same way by every recorder (``meta.end``).

A cassette is ``complete: true`` only when the session ended the clean way: the
client closed its stdin, the server closed its stdout and exited with code 0
(or died by a signal the client sent after hanging up, as the openai-codex SDK's
``close()`` does), the client was there to read everything, nothing stopped the
recording early, and the exit status is known. Otherwise ``end`` says the first
reason that applies, in the order of ``Ending.verdict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

ExitStatus = Union[int, str]  # an exit code, or a signal name such as "SIGKILL"
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
CLEAN = "clean"


@dataclass
class Ending:
    """The facts a recorder gathered about how its session ended."""

    client_closed: bool = False           # the client closed its stdin (its eof is recorded)
    server_closed: bool = False           # the server closed its stdout
    status: ExitStatus | None = None      # None: the exit status is not known
    signals: list[str] = field(default_factory=list)  # got while the client was still connected
    client_gone: bool = False             # the client stopped reading before the end
    stopped: str | None = None            # what cut the recording short (a guard, a lost peer, ...)

    def verdict(self) -> tuple[bool, str]:
        """(complete, end): end is "clean" or the reason it is not."""
        if self.stopped:
            return False, self.stopped
        if self.client_gone:
            return False, "the client went away before the session ended"
        if self.signals:
            return False, f"the recorder got {self.signals[0]} and passed it on to the server"
        if self.status is None:
            return False, "the server's exit status is not known"
        if isinstance(self.status, str) and not (self.client_closed and self.status in FORWARDED_SIGNALS):
            return False, f"the server ended by {self.status}"
        if not self.client_closed:
            return False, f"the server exited with {self.status} while the client was still connected"
        if not self.server_closed:
            return False, "the server exited without closing its stdout"
        if isinstance(self.status, int) and self.status != 0:
            return False, f"the server exited with code {self.status}"
        return True, CLEAN


FAILED_TEST = " while recording ("  # what failed_test_end's words hold, and only they


def failed_test_end(nodeid: str, outcome: str) -> str:
    """The end of a recording whose test did not pass: ``once`` and ``new`` record it again."""
    return f"the test {outcome}{FAILED_TEST}{nodeid}), so the session may not be the one intended"


def by_failed_test(end: object) -> bool:
    """Whether a cassette's ``end`` is failed_test_end's."""
    return isinstance(end, str) and end.startswith("the test ") and FAILED_TEST in end
