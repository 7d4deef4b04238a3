"""The README's example test, run as a user would run it: copied out of README.md
into a fresh project with its cassette, and executed by pytest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "codex_cassette(" in b)
    pytester.makepyfile(test_example=example)
    cassettes = pytester.path / "cassettes" / "test_example"
    cassettes.mkdir(parents=True)
    (cassettes / "text_turn.yaml").write_text((ROOT / "tests" / "data" / "readme_text_turn.yaml").read_text())
    pytester.makeini("[pytest]\nasyncio_mode = strict\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)
