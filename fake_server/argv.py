"""The fake codex's command line: one table of options, read two ways.

argparse costs a cold fake more than its own import: building a parser pulls in
gettext, locale and shutil (and with it bz2 and lzma). A command line made only of
the table's options in their plain forms (what FakeCodexCommand and codex's own
clients pass) is read straight from the table; anything else (-h, an abbreviation,
an unknown option, a value argparse would refuse) goes to the argparse parser
built from the same table, which accepts or refuses it exactly as before.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, NoReturn

from harness.format.values import MAX_SECONDS

USAGE_EXIT = 2


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    dest: str
    action: str = "store"  # store, append, store_true or store_const
    default: Any = None
    const: Any = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    help: str | None = None
    env: tuple[str, ...] = ()  # the environment variables that set it, first found wins
    codex: bool = False        # codex's own option (the client passes it): no variable

    def variables(self) -> tuple[str, ...]:
        """CODEX_CASSETTE_ and the long flag's name (``--pace-scale``: CODEX_CASSETTE_PACE_SCALE),
        or the names the table gives; none for codex's own options."""
        if self.codex:
            return ()
        return self.env or ("CODEX_CASSETTE_" + self.flags[-1].lstrip("-").upper().replace("-", "_"),)


def seconds(text: str) -> float:
    """A wait of the command line: a finite number of seconds, 0 or more, at most an hour
    (a bigger one overflows the clock the waits are computed on)."""
    value = float(text)
    if not 0 <= value <= MAX_SECONDS:  # NaN fails this too
        import argparse  # only to refuse: argparse says this message, naming the option

        raise argparse.ArgumentTypeError(f"takes a number of seconds from 0 to {MAX_SECONDS:g}, "
                                         f"not {text!r}")
    return value


def scale(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        import argparse

        raise argparse.ArgumentTypeError(f"takes a finite number, 0 or more, not {text!r}")
    return value


LIST_SEPARATOR = ","  # an append option's values in one variable: CODEX_CASSETTE_IGNORE=a.b,c.d
_TRUE = ("1", "true", "yes", "on")


def _from_env(option: Option, env: "os._Environ[str] | dict[str, str]") -> Any:
    """The option's default as its variable sets it. A value the option's type refuses stays a
    string: argparse converts string defaults, so it refuses it, naming the option."""
    raw = next((env[name] for name in option.variables() if env.get(name)), None)
    if raw is None:
        return [] if option.action == "append" else option.default
    if option.action == "append":
        return [item for item in raw.split(LIST_SEPARATOR) if item]
    if option.action == "store_true":
        return raw.strip().lower() in _TRUE
    return raw


def _set_by(message: str) -> str:
    """Where the refused value came from, when a variable set it (argparse names only the option)."""
    for o in table():
        name = next((n for n in o.variables() if os.environ.get(n)), None)
        if name is not None and f"argument {'/'.join(o.flags)}:" in message and repr(os.environ[name]) in message:
            return f" (set by ${name})"
    return ""


def table() -> list[Option]:
    """The options, with their built-in defaults."""
    return [
        Option(("--cassette",), "cassette", env=("CODEX_CASSETTE_FILE", "CODEX_CASSETTE"), metavar="PATH",
               help="cassette (.jsonl) or scenario (.yaml) to serve"),
        Option(("--report",), "report", metavar="FILE",
               help="write a JSON replay report here when the session ends ({pid}: the launch's pid)"),
        Option(("--timeout",), "timeout", type=seconds, default=10.0, metavar="SECONDS",
               help="seconds to wait for each expected client message (default 10)"),
        Option(("--linger",), "linger", type=seconds, default=60.0, metavar="SECONDS",
               help="seconds to wait for the client to hang up after the last event (default 60)"),
        Option(("--pace",), "pace", choices=("instant", "recorded"), default="instant",
               help="send the server's events at once (instant, default) or with the recorded gaps"),
        Option(("--pace-scale",), "pace_scale", type=scale, default=1.0, metavar="X",
               help="with --pace recorded: the recorded gaps times X (default 1)"),
        Option(("--connections",), "connections", metavar="FILE",
               help="a launch counter (the pytest fixture's): this launch takes the next number k "
                    "and serves connection k's cassette (NAME.jsonl, NAME.2.jsonl, ...)"),
        Option(("--bind",), "bind", "append", metavar="NAME=VALUE",
               help="bind a placeholder up front, e.g. --bind cwd=/work"),
        Option(("--allow-unplayed",), "allow_unplayed", "store_true", default=False,
               help="do not fail on events left unplayed"),
        Option(("--ignore",), "ignore", "append", metavar="PATH",
               help="a dotted path left out of every comparison, e.g. params.clientInfo.version"),
        Option(("--match-on",), "match_on", metavar="M1,M2,...",
               help="the matchers that decide, in order (default kind,method,id,body)"),
        # codex's own arguments, accepted and checked
        Option(("--listen",), "listen", default="stdio://", codex=True,
               help="stdio:// (default), ws://IP:PORT or unix://[PATH], as codex"),
        Option(("--stdio",), "listen", "store_const", const="stdio://", codex=True,
               help="the same as --listen stdio://"),
        Option(("-c", "--config"), "config", "append", metavar="KEY=VALUE", codex=True,
               help="a codex config override: accepted and checked, as codex would, then ignored"),
        Option(("--enable",), "enable", "append", metavar="FEATURE", codex=True,
               help="a codex feature flag: accepted, then ignored"),
        Option(("--disable",), "disable", "append", metavar="FEATURE", codex=True,
               help="a codex feature flag: accepted, then ignored"),
        Option(("--version",), "version", "store_true", default=False, codex=True,
               help="print the recorded codex version, as codex would"),
    ]


def options() -> list[Option]:
    """The table, its defaults read from the environment now (each option's variables())."""
    from dataclasses import replace

    env = os.environ
    out = []
    for o in table():
        default = _from_env(o, env)
        names = o.variables()
        text = o.help if not names else f"{o.help or o.dest} [${names[0]}]"
        out.append(replace(o, default=default, help=text))
    return out


SUBCOMMAND_DEFAULT = "app-server"


def build_parser(scrub: Callable[[str], str], add_help: bool = True) -> Any:
    """The argparse parser for the same table: for --help and for every refusal.
    ``scrub`` makes an error message safe to print (it may quote a key)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.print_usage(sys.stderr)
            self.exit(USAGE_EXIT, f"{self.prog}: error: {scrub(message + _set_by(message))}\n")

    p = Parser(prog="fake_server", description="A scripted fake `codex app-server`.", add_help=add_help)
    for o in options():
        kw: dict[str, Any] = {"dest": o.dest, "action": o.action, "help": o.help}
        if o.action == "append":
            kw["default"] = list(o.default or [])
        elif o.action == "store_true":
            kw["default"] = o.default
        elif o.action == "store_const":
            kw["const"] = o.const  # the dest's default is the option before it that shares it
        else:
            kw.update(default=o.default, type=o.type, choices=o.choices, metavar=o.metavar)
        if o.action == "append":
            kw["metavar"] = o.metavar
        p.add_argument(*o.flags, **kw)
    p.add_argument("subcommand", nargs="?", default=SUBCOMMAND_DEFAULT,
                   help="codex's subcommand: app-server (the default; the only one served)")
    return p


def options_help() -> str:
    """The fake's options as help text, for commands that pass them on (`codex-cassette replay`)."""
    return build_parser(str, add_help=False).format_help().split("\noptions:\n", 1)[-1]


def parse_args(argv: list[str] | None, scrub: Callable[[str], str]) -> Any:
    """The parsed command line: read from the table when it is plain, else by argparse."""
    args = sys.argv[1:] if argv is None else list(argv)
    parsed = _plain(args)
    return parsed if parsed is not None else build_parser(scrub).parse_args(args)


def _plain(args: list[str]) -> SimpleNamespace | None:
    """``args`` read from the table, or None for anything argparse must judge."""
    table = options()
    by_flag = {flag: o for o in table for flag in o.flags}
    values: dict[str, Any] = {}
    for o in table:  # an option sharing a dest with one before it does not set its default
        default = o.default
        if isinstance(default, str) and o.type is not None:  # from a variable: argparse judges a bad one
            try:
                default = o.type(default)
            except Exception:
                return None
        if isinstance(default, str) and o.choices is not None and default not in o.choices:
            return None
        values.setdefault(o.dest, list(default or []) if o.action == "append" else default)
    subcommand: str | None = None
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-") and token:
            if subcommand is not None:
                return None
            subcommand = token
            continue
        flag, eq, inline = token.partition("=")
        option = by_flag.get(flag)
        if option is None or (eq and (option.action in ("store_true", "store_const") or not flag.startswith("--"))):
            return None
        if option.action in ("store_true", "store_const"):
            values[option.dest] = True if option.action == "store_true" else option.const
            continue
        if eq:
            raw = inline
        elif i < len(args) and not args[i].startswith("-"):
            raw, i = args[i], i + 1
        else:
            return None  # a missing value, or one argparse would read as an option
        if option.choices is not None and raw not in option.choices:
            return None
        try:
            value = option.type(raw) if option.type is not None else raw
        except Exception:  # ValueError, or a refusal argparse words (ArgumentTypeError)
            return None
        if option.action == "append":
            values[option.dest].append(value)
        else:
            values[option.dest] = value
    return SimpleNamespace(**values, subcommand=subcommand or SUBCOMMAND_DEFAULT)
