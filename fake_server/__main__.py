"""`python -m fake_server --cassette PATH [codex's own arguments]`.

Accepts what a client passes to codex (`app-server`, `--listen stdio:// | ws://IP:PORT |
unix://[PATH]`, `-c/--config key=value`, `--enable/--disable FEATURE`), so it can stand
where the codex binary stands. Every option of the fake's own may also come from the
environment (CODEX_CASSETTE_FILE, CODEX_CASSETTE_REPORT, ...: fake_server.argv derives the
names from its table) for launchers that cannot add flags.
"""

from __future__ import annotations

import os
import sys

from harness.errors import CassetteError, HarnessError
from harness.replay.options import ReplayOptions

from fake_server.argv import USAGE_EXIT, parse_args
from fake_server.serve import client_pid, serve_stdio, tell

def _said(text: str) -> str:
    """What the fake prints about its command line: the client's arguments may hold a key
    (`-c model_providers.x.api_key=...`), and stderr often ends up in a public CI log."""
    from harness.format.redact import Redactor

    return Redactor.widened({}, os.environ).scrub_raw(text)


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
    args = parse_args(argv, _said)
    try:
        if not args.cassette:
            raise HarnessError("no cassette: pass --cassette PATH or set CODEX_CASSETTE_FILE")
        if args.version:
            from harness.format.load import open_cassette
            from harness.safe_text import for_people

            version = open_cassette(args.cassette).meta.get("codex_version", "0.0.0")
            print(f"codex-cli {for_people(str(version), 200, keep='')}")  # the header's text, made safe
            return 0
        if args.subcommand != "app-server":
            raise HarnessError(f"the fake codex serves only `app-server`, not {args.subcommand!r}")
        listen = None
        if args.listen != "stdio://":  # the stdio path imports nothing of the socket ones
            from harness.record.listen import ListenAddress

            listen = ListenAddress.parse(args.listen)
        _pairs(args.config, "-c/--config")
        if args.connections:
            args.cassette = _this_connection(args.cassette, args.connections)
        options = ReplayOptions(role="server", timeout=args.timeout, linger=args.linger, pace=args.pace,
                                pace_scale=args.pace_scale, strict=not args.allow_unplayed,
                                bindings=_pairs(args.bind, "--bind"), ignore=list(args.ignore))
        if args.match_on:
            options.match_on = tuple(m.strip() for m in args.match_on.split(",") if m.strip())
            options.matchers.resolve(options.match_on)  # an unknown or unimportable one is said before serving
        if listen is not None and listen.is_socket:
            from fake_server.listen import serve_socket

            return serve_socket(listen, args.cassette, options, args.report)
        return serve_stdio(args.cassette, options, args.report)
    except HarnessError as exc:
        said = _said(f"fake codex: {exc}")
        tell(said)
        if args.report:
            # The same report as a replay's, so whoever launched us reads why we did not start.
            from harness.replay.report import Divergence, ReplayReport

            excerpt = ""
            if isinstance(exc, CassetteError) and exc.excerpt:  # a message is one paragraph; an excerpt has lines
                excerpt, said = exc.excerpt, _said(f"fake codex: {exc.headline}")
            report = ReplayReport(cassette=str(args.cassette), role="server", status="error", pid=client_pid(),
                                  divergence=Divergence(kind="error", message=said, excerpt=_said(excerpt)))
            report.write(args.report.replace("{pid}", str(client_pid())))
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
