"""Every module, dotted name and source path that README.md and docs/ mention exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "cassettes" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOTTED = re.compile(r"\b((?:harness|fake_server)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
PATHS = re.compile(r"\b((?:harness|fake_server|bench|tests)/[A-Za-z0-9_/]+\.py)\b")


def _resolves(dotted: str) -> bool:
    """A module, or an attribute chain under the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _mentions(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for name in sorted(set(pattern.findall(page.read_text()))):
            found.append((page.relative_to(ROOT).as_posix(), name.rstrip(".")))
    return found


@pytest.mark.parametrize("page,name", _mentions(DOTTED))
def test_dotted_name_resolves(page: str, name: str) -> None:
    assert _resolves(name), f"{page} names {name}, which does not import"


@pytest.mark.parametrize("page,path", _mentions(PATHS))
def test_source_path_exists(page: str, path: str) -> None:
    assert (ROOT / path).is_file(), f"{page} names {path}, which is not a file"
