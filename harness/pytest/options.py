"""The plugin's command-line options and ini values, and their checks: what every pytest run
with codex-cassette installed reads, so nothing else of the plugin loads until a codex fixture,
marker or option is used (bench/plugin_overhead.py)."""

from __future__ import annotations

import difflib
from typing import Any, Iterable

import pytest

from harness.errors import HarnessError

MODES = ("none", "once", "new", "all")  # --codex-record-mode (harness.pytest.record_modes)
FAULT_KEYS = {"faults", "faults_max", "faults_deadline"}  # marker keys of the sweep, not the replay
# The fault variant a test runs under, set by the codex_fault fixture (harness.pytest.faults).
ACTIVE_FAULT = pytest.StashKey[Any]()


GROUP = "codex-cassette"
OLD_TIMEOUT_INI = "codex_cassette_timeout"  # the ini key's name before codex_replay_timeout
INI_NAMES = ("codex_replay_timeout", "codex_record_mode")
REPLAY_TIMEOUT = 10.0


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'timeout'?)`` for a name close to a known one, else nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "codex-cassette: record/replay of codex app-server sessions")
    group.addoption("--codex-replay-timeout", type=float, default=None, metavar="SECONDS",
                    help="longest wait for one expected client message during replay (default 10)")
    group.addoption("--codex-allow-unplayed", action="store_true", default=False,
                    help="do not fail tests that leave cassette events unplayed")
    group.addoption("--codex-record-mode", choices=MODES, default=None,
                    help="none (default): replay only, never start a real codex; once: record missing "
                         "cassettes; new: also re-record incomplete ones; all: re-record everything")
    group.addoption("--codex-disable-recording", action="store_true", default=False,
                    help="no fake, no cassette: the codex fixtures hand out the real codex (offline against "
                         "the mock model with a marker's live=), as pytest-recording's --disable-recording")
    group.addoption("--codex-bin", default=None, metavar="CODEX_BIN",
                    help="the real codex binary to record from (default: $CODEX_BIN, the pinned "
                         "openai-codex-cli-bin package, the npm package in ./node_modules, then PATH)")
    group.addoption("--codex-faults", default=None, metavar="all|KIND,...",
                    help="run each cassette-backed test once per fault variant of its cassette "
                         "(kinds: crash, hangup, stall, error, drop, duplicate, garbage, unknown-notification, "
                         "unknown-request, novel-value, delay)")
    group.addoption("--codex-faults-max", type=int, default=None, metavar="N",
                    help="at most N variants per test, drawn evenly across kinds (seeded)")
    group.addoption("--codex-faults-seed", default="0", metavar="SEED", help="the sampling seed (default 0)")
    group.addoption("--codex-faults-deadline", type=float, default=None, metavar="SECONDS",
                    help="seconds a test has to end under a fault before it counts as hung (default 10)")
    from harness.pytest.report_pages import add_option  # --codex-report-dir

    add_option(group)
    # An ini key is its option's name, dashes as underscores (codex_record_mode, codex_replay_timeout).
    parser.addini("codex_replay_timeout", "default of --codex-replay-timeout, in seconds (10)", default="")
    parser.addini("codex_record_mode", "default of --codex-record-mode (none)", default="none")
    parser.addini(OLD_TIMEOUT_INI, "deprecated name of codex_replay_timeout", default="")


def check_args(parser: pytest.Parser, args: list[str]) -> None:
    """pytest_load_initial_conftests: an option of ours misspelt is a usage error that names the
    option meant (argparse would only say "unrecognized arguments")."""
    known = {name for option in parser.getgroup(GROUP).options for name in option.names()}
    for arg in args:
        if arg == "--":
            return
        name = arg.split("=", 1)[0]
        if name.startswith("--codex") and name not in known:
            raise pytest.UsageError(f"codex-cassette: unknown option {name}{did_you_mean(name, known)}; "
                                    f"known: {', '.join(sorted(known))}")


def check_ini(config: pytest.Config) -> None:
    """pytest_configure: a misspelt ini key of ours gets a warning naming the key meant (pytest's
    own only says it is unknown)."""
    unknown = getattr(config, "_get_unknown_ini_keys", set)()  # pytest's own check; absent, nothing to add
    for key in sorted(k for k in unknown if k.startswith("codex")):
        hint = did_you_mean(key, INI_NAMES)
        if hint:
            config.issue_config_time_warning(pytest.PytestConfigWarning(
                f"codex-cassette: unknown ini option {key}{hint}"), stacklevel=2)


def replay_timeout(config: pytest.Config) -> float:
    """--codex-replay-timeout, else the ini value (under its old name too), else 10 s."""
    given = config.getoption("--codex-replay-timeout")
    if given is not None:
        return float(given)
    for key in ("codex_replay_timeout", OLD_TIMEOUT_INI):
        value = config.getini(key)
        if value not in ("", None):
            return float(value)
    return REPLAY_TIMEOUT


def check_options(config: pytest.Config) -> None:
    """pytest_configure: a bad --codex-faults is a usage error, said before collecting anything."""
    if config.getini(OLD_TIMEOUT_INI) not in ("", None):
        config.issue_config_time_warning(pytest.PytestDeprecationWarning(
            f"codex-cassette: the ini option {OLD_TIMEOUT_INI} is deprecated; call it codex_replay_timeout "
            "(the name of --codex-replay-timeout)"), stacklevel=2)
    spec = config.getoption("--codex-faults")
    if spec is not None:  # the catalogue loads only for a run that asks for a sweep
        from harness.faults.catalogue import parse_kinds

        try:
            parse_kinds(spec)
        except HarnessError as exc:
            raise pytest.UsageError(f"codex-cassette: --codex-faults: {exc}") from None
    limit = config.getoption("--codex-faults-max")
    deadline = config.getoption("--codex-faults-deadline")
    if (limit is not None and limit < 0) or (deadline is not None and deadline <= 0):
        raise pytest.UsageError("codex-cassette: --codex-faults-max must not be negative, "
                                "--codex-faults-deadline must be positive")

