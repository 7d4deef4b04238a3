"""`codex-cassette scan PATH...`: the redaction detectors over files, to keep secrets out of git.

Committed cassettes, scenarios and any other text file (directories recursed, ``.git``
skipped, files with a NUL byte taken for binary and skipped). Every line is looked at as
text (a PEM block across lines too) and, when it is a JSON value, as JSON (secret-named
keys, lists under them). A finding is said as ``file:line: KIND``: never the value.
Markers (``{{redacted:...}}``) and placeholders are no findings.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, TextIO

from harness.errors import UsageError
from harness.format.redact import Redactor

_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"}
_SNIFF = 8192  # bytes looked at for a NUL (a binary file)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}"


def files_under(paths: list[str]) -> Iterator[Path]:
    """Each file named, and every file under each directory named (sorted, VCS and caches skipped).
    A path that does not exist is refused before anything is scanned."""
    missing = [arg for arg in paths if not os.path.lexists(arg)]
    if missing:
        raise UsageError(f"scan: {', '.join(missing)}: no such file or directory")
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
                yield from (Path(root) / f for f in sorted(files))
        else:
            yield path


def scan_file(path: Path) -> list[Finding]:
    """The secrets the built-in detectors find in one text file (a binary file, a FIFO, a
    socket or a device: none; opening a FIFO would wait for a writer)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return []
        with open(path, "rb") as f:
            if b"\0" in f.read(_SNIFF):
                return []
            f.seek(0)
            return list(_scan_lines(str(path), f))
    except OSError as exc:
        raise UsageError(f"scan: {path}: cannot be read ({exc.strerror or exc})") from None


def _scan_lines(name: str, f: BinaryIO) -> Iterator[Finding]:
    redactor = Redactor()
    lines = redactor.line_scrubber()
    for n, data in enumerate(f, 1):
        data = data.rstrip(b"\r\n")
        redactor.applied = set()
        lines.scrub_bytes(data)
        text = data.decode("utf-8", "replace").strip()
        if text[:1] in ("{", "["):  # a JSON line: its secret-named keys hold secrets of any shape
            try:
                redactor.scrub(json.loads(text))
            except (ValueError, RecursionError):
                pass  # not JSON after all (or nested past reach): the text look above is what there is
        yield from (Finding(name, n, kind) for kind in sorted(redactor.applied))


def scan(paths: list[str], out: TextIO, err: TextIO = sys.stderr) -> int:
    """Report every finding on ``out``; 1 when there was one, else 0; 2 when a file could not
    be read (said on ``err``; the other files are still scanned)."""
    found, unread = 0, 0
    for path in files_under(paths):
        try:
            findings = scan_file(path)
        except UsageError as exc:
            print(f"codex-cassette: {exc}", file=err)
            unread += 1
            continue
        for finding in findings:
            print(finding, file=out)
            found += 1
    return 2 if unread else 1 if found else 0


def cli_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="find secrets in cassettes, scenarios or any text file (exit 1 if any)",
                       description="Look for secrets with the redaction detectors in each PATH (directories "
                                   "recursed). Prints FILE:LINE: KIND for each finding, never the value; exit "
                                   "status 1 when something was found, 0 when clean, 2 for a missing or "
                                   "unreadable path.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="files or directories to scan (directories recursed; .git and binary files skipped)")
    p.set_defaults(func=lambda args: scan(args.paths, sys.stdout))
