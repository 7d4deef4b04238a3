"""Every `codex-cassette` command answers --help through the real entry point (a command
table naming a module that is gone would crash here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import COMMANDS


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help(command: str) -> None:
    argv = [sys.executable, "-m", "harness", *([command] if command else []), "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: codex-cassette" in proc.stdout and "Traceback" not in proc.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "nonsense"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr
