"""Open a cassette by its file name: a recording (.jsonl) or a YAML scenario (.yaml)."""

from __future__ import annotations

import os

from harness.format.cassette import Cassette, load_cassette


def open_cassette(path: str | os.PathLike[str]) -> Cassette:
    """A recorded cassette (.jsonl) or a YAML scenario compiled into one."""
    if os.path.splitext(os.fspath(path))[1] in (".yaml", ".yml"):
        from harness.format.scenario import load_scenario  # pyyaml only for scenarios
        return load_scenario(path)
    return load_cassette(path)
