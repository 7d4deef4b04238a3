"""The one reader of a codex version: `codex --version`, and the userAgent of an initialize answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.format.codex_version import find_codex_version

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text,version", [
    ("codex-cli 0.163.0\n", "0.163.0"),
    ("codex-cli 0.170.0-alpha.2", "0.170.0-alpha.2"),
    # codex names the client first (its originator), then its own version.
    ("optio_codex/0.163.0 (Debian 12.0.0; x86_64) xterm (optio_codex; 0.1.0)", "0.163.0"),
    ("my-own-client/0.169.0 (Ubuntu 24.4.0; aarch64) unknown (my-own-client; 9.9.9)", "0.169.0"),
    ("no version here", None),
])
def test_versions_are_read_from_both_forms(text: str, version: str | None) -> None:
    assert find_codex_version(text) == version


def test_every_shipped_recording_names_the_codex_its_userAgent_says() -> None:
    for path in sorted((ROOT / "cassettes").glob("*/*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        agents = [e["msg"]["result"]["userAgent"] for e in lines[1:]
                  if isinstance(e.get("msg", {}).get("result"), dict) and "userAgent" in e["msg"]["result"]]
        if agents and "codex_version" in lines[0]["meta"]:
            assert find_codex_version(agents[0]) == lines[0]["meta"]["codex_version"], path
