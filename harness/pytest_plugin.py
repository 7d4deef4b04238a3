"""pytest plugin: a thin layer over the library, in the manner of pytest-recording.

- ``@pytest.mark.codex_cassette("name", **options)`` picks the cassette (or YAML
  scenario) a test replays; without the marker the test's own name is used.
- ``codex_cassette_dir`` (overridable) says where cassettes live: by default
  ``cassettes/<module name>/`` beside the test module.
- ``codex_cassette_config`` (overridable) gives replay options for a module or
  a whole suite; marker keywords override it per test.
- ``fake_codex`` serves the cassette: as a command line, as a `codex` on PATH,
  or in-process; at teardown it fails the test on divergence or unplayed events.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.cassette import Cassette, open_cassette
from harness.errors import HarnessError
from harness.replay import ReplayOptions, ReplayReport

SUFFIXES = ("", ".jsonl", ".yaml", ".yml")
OPTION_KEYS = {"timeout", "linger", "pace", "pace_scale", "strict", "bindings", "ignore", "learn"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("codex-cassette", "codex-cassette: record/replay of codex app-server sessions")
    group.addoption("--codex-replay-timeout", type=float, default=None, metavar="SECONDS",
                    help="longest wait for one expected client message during replay (default 10)")
    group.addoption("--codex-allow-unplayed", action="store_true", default=False,
                    help="do not fail tests that leave cassette events unplayed")
    parser.addini("codex_cassette_timeout", "default replay timeout in seconds", default="10")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "codex_cassette(name=None, **options): the cassette or YAML scenario the fake codex "
        "serves to this test; options: timeout, pace, pace_scale, strict, bindings, ignore",
    )


def resolve_cassette(directory: Path, name: str | os.PathLike[str]) -> Path | None:
    """The file a cassette name refers to, trying the known suffixes."""
    base = Path(name)
    if not base.is_absolute():
        base = directory / base
    for suffix in SUFFIXES:
        candidate = base.with_name(base.name + suffix) if suffix else base
        if candidate.is_file():
            return candidate
    return None


def _marker_args(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    marker = request.node.get_closest_marker("codex_cassette")
    name = request.node.originalname if hasattr(request.node, "originalname") else request.node.name
    kwargs: dict[str, Any] = {}
    if marker is not None:
        if marker.args:
            name = marker.args[0]
        kwargs = dict(marker.kwargs)
        name = kwargs.pop("name", name)
    return str(name), kwargs


@dataclass
class FakeCodex:
    """One test's fake codex: how to launch it, and what it reported."""

    cassette_path: Path
    options: ReplayOptions
    workdir: Path
    _handles: list[Any] = field(default_factory=list)
    _expected_failure: bool = False

    @property
    def cassette(self) -> Cassette:
        return open_cassette(self.cassette_path)

    def bind(self, **values: str) -> "FakeCodex":
        """Bind placeholders up front (e.g. cwd) instead of on first sight."""
        self.options.bindings.update(values)
        return self

    # -- as a subprocess ----------------------------------------------------

    @property
    def command(self):
        from fake_server import FakeCodexCommand

        return FakeCodexCommand(cassette=self.cassette_path, report=self.workdir / "report-{pid}.json",
                                timeout=self.options.timeout, pace=self.options.pace,
                                bindings=dict(self.options.bindings),
                                extra=[] if self.options.strict else ["--allow-unplayed"])

    @property
    def argv(self) -> list[str]:
        """Launch this instead of `codex app-server`."""
        return self.command.argv("app-server")

    @property
    def bin_dir(self) -> Path:
        """A directory whose `codex` is the fake; put it first on PATH."""
        from fake_server import write_bin_dir

        return write_bin_dir(self.workdir / "bin", self.command)

    @property
    def env(self) -> dict[str, str]:
        """os.environ with the fake's bin dir first on PATH."""
        env = self.command.env()
        env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "")])
        return env

    # -- in-process ----------------------------------------------------------

    def handle(self):
        """A subprocess-shaped handle running the fake in the current event loop."""
        from fake_server import InProcessCodex

        handle = InProcessCodex(self.cassette_path, self.options)
        self._handles.append(handle)
        return handle

    # -- results --------------------------------------------------------------

    @property
    def reports(self) -> list[ReplayReport]:
        found = [h.report for h in self._handles]
        for path in sorted(self.workdir.glob("report-*.json")):
            try:
                found.append(ReplayReport.read(path))
            except (ValueError, TypeError, KeyError):
                raise HarnessError(f"{path}: the fake codex wrote a report that cannot be read") from None
        return found

    @property
    def report(self) -> ReplayReport | None:
        reports = self.reports
        return reports[-1] if reports else None

    def failures(self) -> list[ReplayReport]:
        return [r for r in self.reports if r.failed(self.options.strict)]

    def check(self) -> None:
        """Raise AssertionError with the readable report if any run went wrong."""
        bad = self.failures()
        if bad:
            raise AssertionError("\n\n".join(r.summary() for r in bad))

    def assert_diverged(self) -> ReplayReport:
        """For tests of a broken client: assert a run diverged, and accept that at teardown."""
        diverged = [r for r in self.reports if r.status == "diverged"]
        if not diverged:
            states = ", ".join(r.status for r in self.reports) or "no run at all"
            raise AssertionError(f"expected the session to diverge from {self.cassette_path}, but got: {states}")
        self._expected_failure = True
        return diverged[-1]

    def close(self) -> None:
        for handle in self._handles:
            handle.kill_if_running()


@pytest.fixture
def codex_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """Where this test's cassettes live; override it in a conftest.py."""
    module = Path(str(request.node.fspath))
    return module.parent / "cassettes" / module.stem


@pytest.fixture
def codex_cassette_config() -> dict[str, Any]:
    """Replay options for every test in scope; override it like pytest-recording's vcr_config."""
    return {}


@pytest.fixture
def fake_codex(request: pytest.FixtureRequest, codex_cassette_dir: Path, codex_cassette_config: dict[str, Any],
               tmp_path_factory: pytest.TempPathFactory) -> Any:
    name, marker_options = _marker_args(request)
    path = resolve_cassette(Path(codex_cassette_dir), name)
    if path is None:
        tried = ", ".join(str(Path(codex_cassette_dir) / (name + s)) for s in SUFFIXES)
        pytest.fail(f"codex-cassette: no cassette {name!r} for {request.node.nodeid}; looked for {tried}",
                    pytrace=False)
    merged = {**codex_cassette_config, **marker_options}
    unknown = set(merged) - OPTION_KEYS
    if unknown:
        pytest.fail(f"codex-cassette: unknown option(s) {sorted(unknown)} for {request.node.nodeid}; "
                    f"known: {sorted(OPTION_KEYS)}", pytrace=False)
    config = request.config
    timeout = config.getoption("--codex-replay-timeout") or float(config.getini("codex_cassette_timeout"))
    merged.setdefault("timeout", timeout)
    if config.getoption("--codex-allow-unplayed"):
        merged["strict"] = False
    merged["bindings"] = dict(merged.get("bindings") or {})
    options = ReplayOptions(role="server", **merged)
    try:
        open_cassette(path)  # a broken cassette is the test's error, said once, up front
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    fake = FakeCodex(cassette_path=path, options=options,
                     workdir=tmp_path_factory.mktemp("fake_codex", numbered=True))
    yield fake
    fake.close()
    bad = fake.failures()
    if bad and not fake._expected_failure:
        pytest.fail("codex-cassette: the session diverged from the cassette\n\n"
                    + "\n\n".join(r.summary() for r in bad), pytrace=False)
