"""pytest plugin: a thin layer over the library, in the manner of pytest-recording.

- ``@pytest.mark.codex_cassette("name", **options)`` picks the cassette (or YAML
  scenario) a test replays; without a name, the test's class and full name (so each
  parametrized case has its own). Markers on the module, class and function merge,
  the closest winning.
- ``codex_cassette_dir`` (overridable) says where cassettes live: by default
  ``cassettes/<module name>/`` beside the test module.
- ``codex_cassette_config`` (overridable) gives replay options for a module or
  a whole suite; marker keywords override it per test.
- ``fake_codex`` serves the cassette: as a command line, as a `codex` on PATH,
  or in-process; at teardown it fails the test on divergence or unplayed events.
- ``codex_app_server`` replays or records according to ``--codex-record-mode``
  (none, once, new, all), so one test body records once and replays forever.
- ``--codex-faults`` (or ``faults=`` on the marker) runs each test using those fixtures
  once per fault variant of its cassette; ``codex_fault`` says which (harness.pytest.faults).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from harness.errors import HarnessError
from harness.pytest import report_pages
from harness.pytest.options import ACTIVE_FAULT, FAULT_KEYS, add_options, check_options

# The engine, the fake and the recorder load on a codex fixture's first use: an installed
# plugin must cost a pytest run that uses none of them nothing (bench/plugin_overhead.py).
if TYPE_CHECKING:
    from harness.pytest.servers import FakeCodex
    from harness.replay.matching import MatcherRegistry
    from harness.replay.options import ReplayOptions

SUFFIXES = ("", ".jsonl", ".yaml", ".yml")
OPTION_KEYS = {"timeout", "linger", "pace", "pace_scale", "strict", "bindings", "ignore", "learn", "match_on"}
# live: a live scenario (codex + model parts) to record against, offline;
# ssh: {"target": "user@host:port", "identity": [...], "known_hosts": ...}: record a codex on another host
RECORD_KEYS = {"live", "ssh"}
# transport: "stdio" (default), "ws" or "unix": the fixture listens there and hands out .url
TRANSPORT_KEY = "transport"


_CALL_REPORT = pytest.StashKey["pytest.TestReport"]()  # the call phase's report, for teardown
MATCHERS_KEY = pytest.StashKey["MatcherRegistry"]()
FAKE_KEY = pytest.StashKey["FakeCodex"]()  # the fake serving a test, for its report hook
DIVERGED = "codex-cassette: the session diverged from the cassette"
MARKER_HELP = (
    "codex_cassette(name=None, **options): the cassette or YAML scenario the fake codex serves "
    "to this test (default: Class.test_name[params]). Options: timeout (seconds one expected client "
    "message may take), linger (seconds to wait for the client to hang up after the last event), "
    "pace ('instant' or 'recorded'), pace_scale (recorded gaps times this), strict (False: unplayed "
    "events do not fail), bindings ({placeholder: value} bound up front), ignore (dotted paths not "
    "compared), learn (paths whose live value is learned, not compared), match_on (matcher names or "
    "'module:function', in order), live (a live scenario to record against), ssh (record a codex on "
    "another host), faults ('all' or kinds: run once per fault variant, docs/faults.md), faults_max "
    "(at most this many variants), faults_deadline (seconds a test has under a fault), transport "
    "('ws' or 'unix': the fixture listens on a socket, at its .url)")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness.pytest import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    check_options(config)


def session_matchers(config: pytest.Config) -> MatcherRegistry:
    """The session's matcher registry, made (and offered to pytest_codex_cassette_configure,
    once) when the first codex fixture needs it, so a session without one pays nothing."""
    registry = config.stash.get(MATCHERS_KEY, None)
    if registry is None:
        from harness.replay.matching import MatcherRegistry

        registry = config.stash[MATCHERS_KEY] = MatcherRegistry()
        config.hook.pytest_codex_cassette_configure(config=config, registry=registry)
    return registry


@pytest.hookimpl(trylast=True)  # after every parametrization: the sweep names each case's cassette
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "codex_fault" in metafunc.fixturenames:  # only a codex fixture's test can be swept
        from harness.pytest import faults

        faults.generate(metafunc, resolve_cassette)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    active = item.stash.get(ACTIVE_FAULT, None)
    if active is None:
        return (yield)
    from harness.pytest import faults

    return (yield from faults.run_under_fault(item, active))


@pytest.fixture
def codex_fault(request: pytest.FixtureRequest) -> Any:
    """The fault variant this test runs under (``harness.pytest.faults.ActiveFault``), None on the
    clean run and outside a sweep (``--codex-faults`` or the marker's ``faults=``)."""
    from harness.pytest import faults

    return faults.activate(request)


def checked_name(name: str) -> str:
    """A cassette name stays inside the cassette directory: no absolute path, no `..`."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise HarnessError(f"cassette name {name!r} must be a relative path inside the cassette directory "
                           "(no leading '/', no '..')")
    return name


def resolve_cassette(directory: Path, name: str | os.PathLike[str]) -> Path | None:
    """The file a cassette name refers to, trying the known suffixes."""
    base = directory / checked_name(os.fspath(name))
    for suffix in SUFFIXES:
        candidate = base.with_name(base.name + suffix) if suffix else base
        if candidate.is_file():
            return candidate
    return None


def default_cassette_name(request: pytest.FixtureRequest) -> str:
    """This test's cassette name when its marker names none (``harness.pytest.names``)."""
    from harness.pytest.names import default_cassette_name as named, without_fault_id

    return named(without_fault_id(request.node.name, request.node), request.cls)


def _marker_args(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The cassette name and options from every codex_cassette marker on the module, class
    and function: keywords merge, the closest winning; a name given closest wins too."""
    name: str | None = None
    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("codex_cassette"))):  # farthest first
        given = dict(marker.kwargs)
        if marker.args:
            given.setdefault("name", marker.args[0])
        name = given.pop("name", name)
        kwargs.update(given)
    name = str(name) if name is not None else default_cassette_name(request)
    try:
        checked_name(name)
        bad = None
    except HarnessError as exc:
        bad = str(exc)
    if bad is not None:
        pytest.fail(f"codex-cassette: {bad} ({request.node.nodeid})", pytrace=False)
    return name, kwargs


@pytest.fixture
def codex_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """Where this test's cassettes live; override it in a conftest.py."""
    module = Path(str(request.node.fspath))
    return module.parent / "cassettes" / module.stem


@pytest.fixture
def codex_cassette_config() -> dict[str, Any]:
    """Options for every test in scope; override it like pytest-recording's vcr_config."""
    return {}


@pytest.fixture
def codex_record_mode(request: pytest.FixtureRequest) -> str:
    """The record mode in force (the option, else the ini value); overridable."""
    return request.config.getoption("--codex-record-mode") or request.config.getini("codex_record_mode")


def _options(request: pytest.FixtureRequest, config_options: dict[str, Any],
             marker_options: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    merged = {**config_options, **marker_options}
    unknown = set(merged) - allowed
    if unknown:
        pytest.fail(f"codex-cassette: unknown option(s) {sorted(unknown)} for {request.node.nodeid}; "
                    f"known: {sorted(allowed)}", pytrace=False)
    return merged


def _replay_timeout(request: pytest.FixtureRequest, merged: dict[str, Any]) -> float:
    """The marker's or config's timeout, else --codex-replay-timeout, else the ini value."""
    if "timeout" in merged:
        return float(merged["timeout"])
    config = request.config
    return config.getoption("--codex-replay-timeout") or float(config.getini("codex_cassette_timeout"))


def _replay_options(request: pytest.FixtureRequest, merged: dict[str, Any]) -> ReplayOptions:
    from harness.replay.options import ReplayOptions

    merged = {k: v for k, v in merged.items() if k in OPTION_KEYS}
    config = request.config
    merged["timeout"] = _replay_timeout(request, merged)
    if config.getoption("--codex-allow-unplayed"):
        merged["strict"] = False
    merged["bindings"] = dict(merged.get("bindings") or {})
    if "match_on" in merged:
        merged["match_on"] = tuple(merged["match_on"])
    options = ReplayOptions(role="server", matchers=session_matchers(config), **merged)
    try:
        options.matchers.resolve(options.match_on)  # an unknown matcher fails the test here, said once
        bad = None
    except HarnessError as exc:
        bad = str(exc)
    if bad is not None:
        pytest.fail(f"codex-cassette: {bad}", pytrace=False)
    return options


def _transport(merged: dict[str, Any]) -> str:
    from harness.pytest.sockets import check_transport

    try:
        return check_transport(merged.get(TRANSPORT_KEY, "stdio"))
    except HarnessError as exc:
        pytest.fail(f"codex-cassette: {exc}", pytrace=False)


def _fake(request: pytest.FixtureRequest, path: Path, options: ReplayOptions,
          tmp_path_factory: pytest.TempPathFactory, transport: str = "stdio") -> FakeCodex:
    from harness.format.load import open_cassette
    from harness.pytest.servers import FakeCodex

    try:
        open_cassette(path)  # a broken cassette is the test's error, said once, up front
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    return FakeCodex(cassette_path=path, options=options,
                     workdir=tmp_path_factory.mktemp("fake_codex", numbered=True), transport=transport)


def _missing(request: pytest.FixtureRequest, directory: Path, name: str, hint: str = "") -> NoReturn:
    tried = ", ".join(str(directory / (name + s)) for s in SUFFIXES)
    pytest.fail(f"codex-cassette: no cassette {name!r} for {request.node.nodeid}; looked for {tried}{hint}",
                pytrace=False)


def _served(path: Path, options: ReplayOptions, codex_fault: Any,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReplayOptions]:
    """The cassette a fake serves: the test's own, or the fault variant of it in force."""
    if codex_fault is None:
        return path, options
    return codex_fault.serve(path, options, tmp_path_factory.mktemp("fault_variant", numbered=True))


@pytest.fixture
def fake_codex(request: pytest.FixtureRequest, codex_cassette_dir: Path, codex_cassette_config: dict[str, Any],
               tmp_path_factory: pytest.TempPathFactory, codex_fault: Any) -> Any:
    """The fake codex serving this test's cassette; fails the test at teardown if the client diverged
    (under a fault variant the sweep's oracle judges instead)."""
    name, marker_options = _marker_args(request)
    merged = _options(request, codex_cassette_config, marker_options,
                      OPTION_KEYS | RECORD_KEYS | FAULT_KEYS | {TRANSPORT_KEY})
    path = resolve_cassette(Path(codex_cassette_dir), name)
    if path is None:
        _missing(request, Path(codex_cassette_dir), name)
    path, options = _served(path, _replay_options(request, merged), codex_fault, tmp_path_factory)
    fake = _fake(request, path, options, tmp_path_factory, _transport(merged)).start()
    if codex_fault is None:  # under a fault, the fault's oracle judges the run, not the fake's verdict
        request.node.stash[FAKE_KEY] = fake
    yield fake
    fake.close()
    bad = fake.untold_failures()  # what the test's own outcome did not already say (pytest_runtest_makereport)
    if bad and not fake._expected_failure and codex_fault is None:
        report_pages.record(request.node, bad, request.node.user_properties)
        pytest.fail(DIVERGED + "\n\n" + "\n\n".join(r.summary() for r in bad), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A diverged test is one failure, told once: the fake's verdict joins the test's own
    outcome (a failed test gets it as its explanation; a passing test whose fake already
    diverged fails), so teardown only tells what came later."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "call":
        item.stash[_CALL_REPORT] = report  # a recording's teardown reads why the test did not pass
    fake = item.stash.get(FAKE_KEY, None)
    if call.when != "call" or fake is None or fake._expected_failure:
        return
    if report.failed:
        fake.close()  # the test failed anyway: stop its fake now, so its report can say what it saw
    try:
        bad = fake.untold_failures(ended_only=not report.failed)
    except HarnessError:
        return  # an unreadable report: teardown says so
    if not bad:
        return
    fake.mark_told(bad)
    report_pages.record(item, bad, report.user_properties)
    text = DIVERGED + "\n\n" + "\n\n".join(r.summary() for r in bad)
    if not report.failed:
        report.outcome = "failed"
        report.longrepr = text
    elif isinstance(report.longrepr, str):
        report.longrepr += "\n\n" + text
    elif hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection("codex-cassette", text)
    else:
        report.sections.append(("codex-cassette", text))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_pages.terminal_summary(terminalreporter)


def _live_scenario(request: pytest.FixtureRequest, spec: Any, directory: Path) -> Any:
    from harness.live.session import LiveScenario

    path = Path(spec)
    for candidate in (path, Path(str(request.config.rootpath)) / path, directory / path):
        if candidate.is_file():
            return LiveScenario.load(candidate)
    pytest.fail(f"codex-cassette: live scenario {spec!r} not found (as given, under the rootdir, "
                f"or under {directory})", pytrace=False)




def _test_failed(request: pytest.FixtureRequest) -> str | None:
    """Why the recording test did not pass, for the cassette's ``end``; None if it passed."""
    report = request.node.stash.get(_CALL_REPORT, None)
    if report is None:
        outcome = "did not run"
    elif report.passed and not hasattr(report, "wasxfail"):
        return None
    elif hasattr(report, "wasxfail"):
        outcome = "failed as expected (xfail)" if report.skipped else "passed unexpectedly (xpass)"
    else:
        outcome = "failed" if report.failed else "was skipped"
    from harness.record.ending import failed_test_end

    return failed_test_end(request.node.nodeid, outcome)


@pytest.fixture
def codex_app_server(request: pytest.FixtureRequest, codex_cassette_dir: Path,
                     codex_cassette_config: dict[str, Any], codex_record_mode: str,
                     tmp_path_factory: pytest.TempPathFactory, codex_fault: Any) -> Any:
    """One command (``.argv``/``.env``) or in-process ``await .handle()`` that replays the
    cassette, or records it from the real codex, according to the record mode."""
    from harness.pytest.record_modes import CassetteLock, should_record
    from harness.pytest.servers import CodexAppServer

    name, marker_options = _marker_args(request)
    merged = _options(request, codex_cassette_config, marker_options,
                      OPTION_KEYS | RECORD_KEYS | FAULT_KEYS | {TRANSPORT_KEY})
    transport = _transport(merged)
    directory = Path(codex_cassette_dir)
    existing = resolve_cassette(directory, name)
    lock = None
    if should_record(codex_record_mode, existing):
        target = existing if existing is not None and existing.suffix == ".jsonl" else directory / f"{name}.jsonl"
        lock = CassetteLock(target).acquire()
        existing = resolve_cassette(directory, name)
        if not should_record(codex_record_mode, existing):  # another xdist worker recorded it meanwhile
            lock.release()
            lock = None
    if lock is not None and codex_fault is not None:
        lock.release()
        pytest.skip("codex-cassette: fault variants replay a cassette; this run records it")
    if lock is not None:
        live = _live_scenario(request, merged["live"], directory) if merged.get("live") else None
        if merged.get("ssh") is not None:
            from harness.record.ssh_recording import SSHRecording

            try:
                SSHRecording.from_config(merged["ssh"])  # a bad option fails the test here, said once
                bad = None
            except HarnessError as exc:
                bad = str(exc)
            if bad is not None:
                lock.release()
                pytest.fail(f"codex-cassette: {bad}", pytrace=False)
        if merged.get("ssh") is not None and transport != "stdio":
            lock.release()
            pytest.fail("codex-cassette: transport 'ws'/'unix' and ssh together are not supported", pytrace=False)
        server = CodexAppServer(cassette_path=target, recording=True, workdir=tmp_path_factory.mktemp("codex_app_server"),
                                codex_bin=request.config.getoption("--codex-bin"), live_scenario=live,
                                ssh=merged.get("ssh"), transport=transport)
    else:
        if existing is None:
            _missing(request, directory, name, hint=f" (record mode {codex_record_mode!r}; run with "
                                                    "--codex-record-mode=once to record it)")
        existing, options = _served(existing, _replay_options(request, merged), codex_fault, tmp_path_factory)
        server = CodexAppServer(cassette_path=existing, recording=False, transport=transport,
                                workdir=tmp_path_factory.mktemp("codex_app_server"),
                                fake=_fake(request, existing, options, tmp_path_factory, transport))
        if codex_fault is None:
            request.node.stash[FAKE_KEY] = server.fake
    server.timeout = _replay_timeout(request, merged)
    try:
        server.start()
        yield server
    finally:
        try:
            problems = server.finish(failed=_test_failed(request) if lock is not None else None)
        finally:
            if lock is not None:
                lock.release()
    if problems and not (server.fake and server.fake._expected_failure) and codex_fault is None:
        pytest.fail("codex-cassette: " + "\n\n".join(problems), pytrace=False)
