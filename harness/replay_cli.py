"""`codex-cassette replay PATH [options] [codex arguments]`: serve a cassette on stdio.

The same program as `python -m fake_server --cassette PATH`; this spelling is
for launchers that take one command line (a client's codex path setting).
"""

from __future__ import annotations

import argparse


def cli_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="serve a cassette or YAML scenario as a fake `codex app-server` on stdio",
                       description="Serve a cassette (.jsonl) or scenario (.yaml) on stdin/stdout, "
                                   "impersonating `codex app-server`. Options after PATH are those of "
                                   "`python -m fake_server` (--report, --timeout, --pace, --bind, ...) "
                                   "and codex's own (app-server, --listen stdio://, -c key=value).")
    p.add_argument("cassette", metavar="PATH")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from fake_server.__main__ import main as fake_main

    return fake_main(["--cassette", args.cassette, *args.rest])
