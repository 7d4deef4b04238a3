"""The plugin's own hook, for a conftest.py or another plugin to implement."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_codex_cassette_configure(config: pytest.Config, registry: Any) -> None:
    """Called once per session with its ``harness.replay.matching.MatcherRegistry``:
    register custom matchers here (``registry.register("name", fn)``) so that
    ``match_on`` can name them, in-process and, for a module-level function, in a
    fake subprocess too."""
