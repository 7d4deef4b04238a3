"""Reading a codex version out of what codex says: `codex --version` or the `userAgent` it answers with."""

from __future__ import annotations

import re

# `codex-cli 0.163.0` (--version), and the userAgent codex answers `initialize` with:
# `<originator>/<codex version> (os; arch) terminal (client; client version)`, where the
# originator is the client's name (`optio_codex/0.163.0 ...`), so any first name/ counts.
_VERSION_RE = re.compile(r"(?:codex[-_a-z]*\s+v?|^\s*[^\s/]+/)(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?(?:\+[0-9A-Za-z.-]+)?)")


def find_codex_version(text: str) -> str | None:
    """`codex-cli 0.163.0` or `codex_cli_rs/0.163.0 (...)` -> `0.163.0`; None when there is none."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None
