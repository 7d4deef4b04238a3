"""The plugin's command-line options and ini values, and their checks: what every pytest run
with codex-cassette installed reads, so nothing else of the plugin loads until a codex fixture,
marker or option is used (bench/plugin_overhead.py)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.errors import HarnessError

MODES = ("none", "once", "new", "all")  # --codex-record-mode (harness.pytest.record_modes)
FAULT_KEYS = {"faults", "faults_max", "faults_deadline"}  # marker keys of the sweep, not the replay
# The fault variant a test runs under, set by the codex_fault fixture (harness.pytest.faults).
ACTIVE_FAULT = pytest.StashKey[Any]()


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("codex-cassette", "codex-cassette: record/replay of codex app-server sessions")
    group.addoption("--codex-replay-timeout", type=float, default=None, metavar="SECONDS",
                    help="longest wait for one expected client message during replay (default 10)")
    group.addoption("--codex-allow-unplayed", action="store_true", default=False,
                    help="do not fail tests that leave cassette events unplayed")
    group.addoption("--codex-record-mode", choices=MODES, default=None,
                    help="none (default): replay only, never start a real codex; once: record missing "
                         "cassettes; new: also re-record incomplete ones; all: re-record everything")
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
    parser.addini("codex_cassette_timeout", "default replay timeout in seconds", default="10")
    parser.addini("codex_record_mode", "default record mode", default="none")


def check_options(config: pytest.Config) -> None:
    """pytest_configure: a bad --codex-faults is a usage error, said before collecting anything."""
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

