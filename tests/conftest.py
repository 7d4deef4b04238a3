import os
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture
def codex_cassette_dir() -> Path:
    """The project's own driver scenarios live together in tests/scenarios."""
    return SCENARIOS


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `network` reach the package registries: only on request, never in CI."""
    if os.environ.get("CODEX_CASSETTE_NETWORK") == "1":
        return
    skip = pytest.mark.skip(reason="reaches the package registries; set CODEX_CASSETTE_NETWORK=1 to run")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)
