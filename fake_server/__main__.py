"""`python -m fake_server --cassette PATH [codex's own arguments]`.

Accepts what a client passes to codex (`app-server`, `--listen stdio://`,
`-c/--config key=value`, `--enable/--disable FEATURE`), so it can stand where
the codex binary stands. Options may also come from the environment
(CODEX_CASSETTE, CODEX_CASSETTE_REPORT) for launchers that cannot add flags.
"""

from __future__ import annotations

import argparse
import os
import sys

from harness.errors import HarnessError
from harness.replay.options import ReplayOptions

from fake_server.serve import client_pid, serve_stdio

USAGE_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fake_server", description="A scripted fake `codex app-server`.")
    p.add_argument("--cassette", default=os.environ.get("CODEX_CASSETTE"),
                   help="cassette (.jsonl) or scenario (.yaml) to serve [$CODEX_CASSETTE]")
    p.add_argument("--report", default=os.environ.get("CODEX_CASSETTE_REPORT"),
                   help="write a JSON replay report here when the session ends [$CODEX_CASSETTE_REPORT]")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("CODEX_CASSETTE_TIMEOUT", 10.0)),
                   help="seconds to wait for each expected client message (default 10)")
    p.add_argument("--linger", type=float, default=60.0,
                   help="seconds to wait for the client to hang up after the last event (default 60)")
    p.add_argument("--pace", choices=("instant", "recorded"), default="instant")
    p.add_argument("--pace-scale", type=float, default=1.0)
    p.add_argument("--connections", metavar="FILE", default=None,
                   help="a launch counter (the pytest fixture's): this launch takes the next number k "
                        "and serves connection k's cassette (NAME.jsonl, NAME.2.jsonl, ...)")
    p.add_argument("--bind", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a placeholder up front, e.g. --bind cwd=/work")
    p.add_argument("--allow-unplayed", action="store_true", help="do not fail on events left unplayed")
    p.add_argument("--ignore", action="append", default=[], metavar="PATH",
                   help="a dotted path left out of every comparison, e.g. params.clientInfo.version")
    p.add_argument("--match-on", default=None, metavar="M1,M2,...",
                   help="the matchers that decide, in order (default kind,method,id,body)")
    # codex's own arguments, accepted and checked
    p.add_argument("subcommand", nargs="?", default="app-server")
    p.add_argument("--listen", default="stdio://")
    p.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--enable", action="append", default=[])
    p.add_argument("--disable", action="append", default=[])
    p.add_argument("--version", action="store_true", help="print the recorded codex version, as codex would")
    return p


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise HarnessError(f"{flag} takes NAME=VALUE, not {item!r}")
        out[name] = value
    return out


def _this_connection(cassette: str, counter: str) -> str:
    """The cassette of this launch: the k-th launch in the test serves connection k's."""
    from pathlib import Path

    from harness.format.connections import LaunchCounter, connection_path

    number = LaunchCounter(Path(counter)).take(client_pid())
    path = connection_path(cassette, number)
    if not path.is_file():
        raise HarnessError(f"this is launch {number} of codex in the test, but no cassette {path} was "
                           f"recorded for it: the recording saw fewer launches (re-record with "
                           "--codex-record-mode=all if the test now starts codex more often)")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.cassette:
            raise HarnessError("no cassette: pass --cassette PATH or set CODEX_CASSETTE")
        if args.version:
            from harness.format.load import open_cassette
            version = open_cassette(args.cassette).meta.get("codex_version", "0.0.0")
            print(f"codex-cli {version}")
            return 0
        if args.subcommand != "app-server":
            raise HarnessError(f"the fake codex serves only `app-server`, not {args.subcommand!r}")
        if args.listen != "stdio://":
            raise HarnessError(f"the fake codex listens only on stdio://, not {args.listen!r}")
        _pairs(args.config, "-c/--config")
        if args.connections:
            args.cassette = _this_connection(args.cassette, args.connections)
        options = ReplayOptions(role="server", timeout=args.timeout, linger=args.linger, pace=args.pace,
                                pace_scale=args.pace_scale, strict=not args.allow_unplayed,
                                bindings=_pairs(args.bind, "--bind"), ignore=list(args.ignore))
        if args.match_on:
            options.match_on = tuple(m.strip() for m in args.match_on.split(",") if m.strip())
            options.matchers.resolve(options.match_on)  # an unknown or unimportable one is said before serving
        return serve_stdio(args.cassette, options, args.report)
    except HarnessError as exc:
        print(f"fake codex: {exc}", file=sys.stderr, flush=True)
        if args.report:
            # The same report as a replay's, so whoever launched us reads why we did not start.
            from harness.replay.report import Divergence, ReplayReport

            report = ReplayReport(cassette=str(args.cassette), role="server", status="error", pid=client_pid(),
                                  divergence=Divergence(kind="error", message=f"fake codex: {exc}"))
            report.write(args.report.replace("{pid}", str(client_pid())))
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
