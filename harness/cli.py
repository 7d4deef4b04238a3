"""The `codex-cassette` command line.

Each subcommand lives beside the concept it drives: the module a command is
listed under in ``COMMANDS`` exposes ``cli_register(subparsers)``, which adds
its parser(s) and sets ``func`` (returning an exit code). Adding a command is
one line here. Only the invoked command's module is imported, so a recording
proxy or a fake codex starts without loading what it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness import __version__
from harness.errors import HarnessError

COMMANDS: dict[str, str] = {
    "record": "harness.record.cli",
    "record-live": "harness.live.record_live",
    "replay": "harness.cli",  # cli_register below
    "show": "harness.show_html",
    "validate": "harness.drift.cli",
    "drift": "harness.drift.cli",
    "codex": "harness.live.install",
    "faults": "harness.faults.cli",
    "scan": "harness.format.scan",
    "warm": "fake_server.warm",
}


def cli_register(sub: argparse._SubParsersAction) -> None:
    """`codex-cassette replay PATH [options] [codex arguments]`: the same program as
    `python -m fake_server --cassette PATH`, for launchers that take one command line."""
    from fake_server.argv import options_help

    p = sub.add_parser("replay", help="serve a cassette or YAML scenario as a fake `codex app-server` (stdio, or a socket)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="options after PATH (those of `python -m fake_server`, and codex's own):\n"
                              + options_help(),
                       description="Serve a cassette (.jsonl) or scenario (.yaml) on stdin/stdout, "
                                   "impersonating `codex app-server`. Options after PATH are those of "
                                   "`python -m fake_server` (--report, --timeout, --pace, --bind, ...) "
                                   "and codex's own (app-server, --listen stdio:// | ws://IP:PORT | unix://PATH, "
                                   "-c key=value).")
    p.add_argument("cassette", metavar="PATH", help="the cassette (.jsonl) or scenario (.yaml) to serve")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                   help="the fake's options and codex's own, listed below")
    p.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    from fake_server.__main__ import main as fake_main

    return fake_main(["--cassette", args.cassette, *args.rest])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-cassette",
        description="Record and replay Codex app-server sessions.",
    )
    parser.add_argument("--version", action="version", version=f"codex-cassette {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).cli_register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"codex-cassette: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`show ... | head`): say nothing more, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
