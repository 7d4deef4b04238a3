"""Record modes, as pytest-recording has them, and the lock that makes recording
safe when pytest-xdist runs tests in parallel.

- ``none`` (default): replay only; a missing cassette is an error. Never starts a real codex.
- ``once``: replay an existing cassette; record a missing one, and one a failing test
  left (``complete: false``, ``end`` "the test failed while recording ..."): that was never
  the session intended.
- ``new``: like once, and also re-record a cassette whose recording was cut short any other
  way (``complete: false``) — the protocol is a stream, so there are no "new episodes"
  to append, only sessions to record whole.
- ``all``: record every time, replacing what is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import CassetteError, UsageError
from harness.format.locks import FileLock
from harness.pytest.options import MODES

LOCK_WAIT = 600.0  # a recording in another worker may take a while; never forever


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"record mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def should_record(mode: str, existing: Path | None) -> bool:
    """Whether this session records (True) or replays (False)."""
    check_mode(mode)
    if mode == "all":
        return True
    if existing is None:
        return mode in ("once", "new")
    if mode in ("once", "new") and existing.suffix == ".jsonl":
        try:
            from harness.format.cassette import load_cassette  # the parser only when a mode asks

            meta = load_cassette(existing).meta
        except CassetteError:
            return mode == "new"
        from harness.record.ending import by_failed_test

        return not meta.get("complete", False) and (mode == "new" or by_failed_test(meta.get("end")))
    return False


@dataclass
class CassetteLock:
    """An exclusive lock beside a cassette (``NAME.jsonl.lock``), held while a test records
    it; the file exists only while someone holds it (harness.format.locks)."""

    path: Path
    wait: float = LOCK_WAIT
    _lock: FileLock | None = None

    def acquire(self) -> "CassetteLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path.with_name(self.path.name + ".lock"))
        self._lock = lock.acquire(wait=self.wait, purpose=f"record {self.path.name} in this test "
                                                          "(is a stale recorder still running?)")
        return self

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release(remove=True)
            self._lock = None

    def __enter__(self) -> "CassetteLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
