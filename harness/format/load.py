"""Open a cassette by its file name: a recording (.jsonl) or a YAML scenario (.yaml)."""

from __future__ import annotations

from pathlib import Path

from harness.format.cassette import Cassette, load_cassette


def open_cassette(path: str | Path) -> Cassette:
    """A recorded cassette (.jsonl) or a YAML scenario compiled into one."""
    if Path(path).suffix in (".yaml", ".yml"):
        from harness.format.scenario import load_scenario  # pyyaml only for scenarios
        return load_scenario(path)
    return load_cassette(path)
