"""Which codex a project's cassettes belong to, read from the project itself: the version its
cassettes were recorded with (their headers' ``codex_version``), the version its
``pyproject.toml`` pins (``openai-codex-cli-bin==X``), and the schema snapshot of that version
(``cassettes/schema/<version>``). CI reads its versions here rather than from a variable someone
must keep in step (docs/ci.md); ``validate`` finds its default schema here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from harness.errors import HarnessError

PIN_PACKAGE = "openai-codex-cli-bin"
_PIN_RE = re.compile(r"""["']\s*openai[-_.]codex[-_.]cli[-_.]bin\s*==\s*([0-9][0-9A-Za-z.+-]*)\s*(?:;[^"']*)?["']""", re.I)
HEADER_BYTES = 64 * 1024  # a header line longer than this is not read for its version


def pinned_version(pyproject: str | Path) -> str:
    """The codex version ``pyproject`` pins: its one requirement string ``openai-codex-cli-bin==X``
    (dependencies, an extra or a dependency group; read as text: Python 3.10 has no TOML reader)."""
    path = Path(pyproject)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read the codex pin: {exc}") from None
    pins = set(_PIN_RE.findall(text))
    if len(pins) != 1:
        found = ", ".join(sorted(pins)) or "none"
        raise HarnessError(f"{path}: expected one pin \"{PIN_PACKAGE}==VERSION\" in its dependencies, found {found}")
    return pins.pop()


def _header_version(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = json.loads(f.readline(HEADER_BYTES))
    except (OSError, ValueError):
        return None
    meta = head.get("meta") if isinstance(head, dict) else None
    if not isinstance(meta, dict) or meta.get("fault"):
        return None  # a fault variant follows its source cassette
    version = meta.get("codex_version")
    return version if isinstance(version, str) and version else None


def recorded_version(paths: Iterable[str | Path]) -> str:
    """The codex version most of these cassettes (files, or directories searched for *.jsonl)
    were recorded with; the newest of equally common ones."""
    counts: Counter[str] = Counter()
    for p in map(Path, paths):
        for file in sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]:
            version = _header_version(file)
            if version:
                counts[version] += 1
    if not counts:
        raise HarnessError(f"no cassette under {', '.join(map(str, paths))} says which codex recorded it "
                           "(a header's meta.codex_version)")
    return max(counts, key=lambda v: (counts[v], _key(v)))


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def default_schema(paths: Iterable[str | Path]) -> Path:
    """The snapshot of the codex the cassettes were recorded with: ``schema/<version>`` in the
    nearest directory at or above the first path that has one, else ``cassettes/schema/<version>``
    under the working directory."""
    paths = list(map(Path, paths))
    version = recorded_version(paths)
    for start in paths[:1]:
        for folder in [start.resolve(), *start.resolve().parents]:
            candidate = folder / "schema" / version
            if candidate.is_dir():
                return candidate
    fallback = Path("cassettes") / "schema" / version
    if not fallback.is_dir():
        raise HarnessError(f"no schema snapshot of codex {version} (the version the cassettes were recorded with) "
                           f"next to {paths[0]} nor at {fallback}: make one with `codex-cassette drift "
                           f"schema-snapshot`, or name one with --schema")
    return fallback
