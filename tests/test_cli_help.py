"""Every `codex-cassette` command answers --help through the real entry point (a command
table naming a module that is gone would crash here). One CLI: every subcommand's --help
describes each argument and option, one metavar names the codex binary, --format offers the
same choices in the same order, replay shows the fake's options."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Iterator

import pytest

from harness.cli import COMMANDS, build_parser

SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help(command: str) -> None:
    argv = [sys.executable, "-m", "harness", *([command] if command else []), "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: codex-cassette" in proc.stdout and "Traceback" not in proc.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "nonsense"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def test_every_argument_and_option_of_every_command_has_help():
    missing = [(" ".join(path), action.option_strings or action.dest)
               for path, parser in commands(build_parser()) for action in parser._actions
               if not isinstance(action, SKIP) and (not action.help or action.help == argparse.SUPPRESS)]
    assert missing == []


def test_one_metavar_per_concept_and_one_order_of_formats():
    actions = [a for _, p in commands(build_parser()) for a in p._actions]
    assert {a.metavar for a in actions if "--codex-bin" in a.option_strings} == {"CODEX_BIN"}
    assert {a.choices for a in actions if "--format" in a.option_strings} == {("text", "json", "markdown")}


def test_every_help_prints_and_replay_shows_the_fakes_options():
    for path, _ in commands(build_parser()):
        done = subprocess.run([sys.executable, "-m", "harness.cli", *path, "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "usage: codex-cassette" in done.stdout, (path, done.stderr)
        if path == ("replay",):
            for option in ("--report FILE", "--timeout SECONDS", "--linger SECONDS", "--pace", "--bind NAME=VALUE",
                           "--listen", "-c KEY=VALUE"):
                assert option in done.stdout, option
