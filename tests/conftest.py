from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture
def codex_cassette_dir() -> Path:
    """The project's own driver scenarios live together in tests/scenarios."""
    return SCENARIOS
