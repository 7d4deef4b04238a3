"""The `codex-cassette` command line.

Each subcommand lives beside the concept it drives: a module listed in
``COMMAND_MODULES`` exposes ``cli_register(subparsers)``, which adds its parser
and sets ``func`` (returning an exit code). Adding a command is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import HarnessError

COMMAND_MODULES: list[str] = [
    "harness.replay_cli",
    "harness.show",
    "harness.live.record_live",
    "harness.drift",
    "harness.record",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-cassette",
        description="Record and replay Codex app-server sessions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).cli_register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"codex-cassette: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
