"""pytest plugin: a thin layer over the library, in the manner of pytest-recording.

- ``@pytest.mark.codex_cassette("name", **options)`` picks the cassette (or YAML
  scenario) a test replays; without a name, ``codex_cassette_name`` (overridable; by
  default the test's class and full name, so each parametrized case has its own). A name
  may reach any cassette inside pytest's rootdir. Markers on the module, class and
  function merge, the closest winning.
- ``codex_cassette_dir`` (overridable) says where cassettes live: by default
  ``cassettes/<module name>/`` beside the test module.
- ``codex_cassette_config`` (overridable) gives replay options for a module or
  a whole suite; marker keywords override it per test.
- ``fake_codex`` serves the cassette (it only replays): as a command line, as a `codex`
  on PATH, or in-process; the test fails, once, on divergence or unplayed events
  (harness.pytest.verdict).
- ``codex_app_server`` replays or records according to ``--codex-record-mode``
  (none, once, new, all), so one test body records once and replays forever.
- ``--codex-disable-recording``: both hand out the real codex, nothing written.
- ``--codex-faults`` (or ``faults=`` on the marker) runs each test using those fixtures
  once per fault variant of its cassette; ``codex_fault`` says which (harness.pytest.faults).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from harness.errors import HarnessError
from harness.pytest import verdict
from harness.pytest.names import SUFFIXES, cassette_base, resolve_cassette
from harness.pytest.options import (ACTIVE_FAULT, FAULT_KEYS, add_options, check_args, check_ini, check_options,
                                    did_you_mean, replay_timeout)

# The engine, the fake and the recorder load on a codex fixture's first use: an installed
# plugin must cost a pytest run that uses none of them nothing (bench/plugin_overhead.py).
if TYPE_CHECKING:
    from harness.pytest.servers import FakeCodex
    from harness.replay.matching import MatcherRegistry
    from harness.replay.options import ReplayOptions

OPTION_KEYS = {"timeout", "linger", "pace", "pace_scale", "strict", "bindings", "ignore", "learn", "match_on"}
# live: a live scenario (codex + model parts) to record against, offline;
# ssh: {"target": "user@host:port", "identity": [...], "known_hosts": ...}: record a codex on another host
# fresh: record without reading the old cassette; volatile: more minted keys or paths
# a re-record does not compare (harness.format.minted, docs/recording.md)
RECORD_KEYS = {"live", "ssh", "fresh", "volatile"}
# transport: "stdio" (default), "ws" or "unix": the fixture listens there and hands out .url
TRANSPORT_KEY = "transport"


MATCHERS_KEY = pytest.StashKey["MatcherRegistry"]()
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
    "('ws' or 'unix': the fixture listens on a socket, at its .url), fresh (True: a re-record does not "
    "keep the old cassette's unchanged lines), volatile (key names or dotted paths a re-record does not "
    "compare)")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness.pytest import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    check_args(parser, args)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    check_options(config)
    check_ini(config)


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
    if metafunc.config.getoption("--codex-disable-recording"):
        return  # the real codex has no cassette to make variants of
    if "codex_fault" in metafunc.fixturenames:  # only a codex fixture's test can be swept
        from harness.pytest import faults

        root = Path(str(metafunc.config.rootpath))

        def resolve(directory: Path, name: str) -> Path | None:
            try:
                return resolve_cassette(directory, name, root)
            except HarnessError:
                return None  # refused: the fixture says why, at setup

        faults.generate(metafunc, resolve)


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


def _resolve(request: pytest.FixtureRequest, directory: Path, name: str, record: bool = False) -> Path | None:
    """resolve_cassette for a fixture, a refused name failing the test; ``record``: the file a
    recording writes (the cassette found when it is a .jsonl, else NAME.jsonl)."""
    root = Path(str(request.config.rootpath))
    try:
        found = resolve_cassette(directory, name, root)
        if record and (found is None or found.suffix != ".jsonl"):
            found = cassette_base(directory, f"{name}.jsonl", root)
        bad = None
    except HarnessError as exc:
        bad = str(exc)
    if bad is not None:
        pytest.fail(f"codex-cassette: {bad} ({request.node.nodeid})", pytrace=False)
    return found


def default_cassette_name(request: pytest.FixtureRequest) -> str:
    """This test's cassette name when its marker names none (``harness.pytest.names``)."""
    from harness.pytest.names import default_cassette_name as named, without_fault_id

    return named(without_fault_id(request.node.name, request.node), request.cls)


def _marker_args(request: pytest.FixtureRequest, default: str) -> tuple[str, dict[str, Any]]:
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
    return (str(name) if name is not None else default), kwargs


@pytest.fixture
def codex_cassette_name(request: pytest.FixtureRequest) -> str:
    """This test's cassette name when its marker names none (``Class.test_name[params]``);
    override it like pytest-recording's ``default_cassette_name``. (The fault sweep, which reads
    the cassette while collecting, knows only the marker's name and this default.)"""
    return default_cassette_name(request)


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
        hints = "".join(did_you_mean(name, allowed) for name in sorted(unknown))
        pytest.fail(f"codex-cassette: unknown option(s) {sorted(unknown)} for {request.node.nodeid}{hints}; "
                    f"known: {sorted(allowed)}", pytrace=False)
    return merged


def _volatile(request: pytest.FixtureRequest, value: Any) -> tuple[str, ...]:
    """The marker's or config's ``volatile``: a key name or dotted path, or a list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
        pytest.fail(f"codex-cassette: volatile must be a key name, a dotted path or a list of them, "
                    f"not {value!r} ({request.node.nodeid})", pytrace=False)
    return tuple(items)


def _replay_timeout(request: pytest.FixtureRequest, merged: dict[str, Any]) -> float:
    """The marker's or config's timeout, else --codex-replay-timeout, else the ini value."""
    if "timeout" in merged:
        return float(merged["timeout"])
    return replay_timeout(request.config)


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
        cassette = open_cassette(path)  # a broken cassette is the test's error, said once, up front
        bad = None
    except HarnessError as exc:
        bad = str(exc)
    if bad is not None:  # failed outside the handler: pytest would print the error again as its context
        pytest.fail(bad, pytrace=False)
    if path.suffix == ".jsonl" and not cassette.complete:
        _warn_incomplete(request, path, cassette.meta.get("end"))
    return FakeCodex(cassette_path=path, options=options,
                     workdir=tmp_path_factory.mktemp("fake_codex", numbered=True), transport=transport)


def _warn_incomplete(request: pytest.FixtureRequest, path: Path, end: Any) -> None:
    """A cassette whose recording did not end well replays as far as it goes: never silently."""
    import shlex

    from harness.record.ending import by_failed_test

    mode = "once" if by_failed_test(end) else "new"
    how = (f"pytest --codex-record-mode={mode} {shlex.quote(request.node.nodeid)}"
           if "codex_app_server" in request.fixturenames else
           f"pytest --codex-record-mode={mode} with a test that uses codex_app_server (fake_codex only replays)")
    warnings.warn(pytest.PytestWarning(f"codex-cassette: {path} is incomplete ({end or 'no end given'}): "
                                       f"{request.node.nodeid} replays it only as far as it goes; record it "
                                       f"again with {how}"), stacklevel=2)


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
               codex_cassette_name: str, codex_record_mode: str, tmp_path_factory: pytest.TempPathFactory, codex_fault: Any) -> Any:
    """The fake codex serving this test's cassette; fails the test at teardown if the client diverged
    (under a fault variant the sweep's oracle judges instead). It only replays: codex_app_server records."""
    name, marker_options = _marker_args(request, codex_cassette_name)
    merged = _options(request, codex_cassette_config, marker_options,
                      OPTION_KEYS | RECORD_KEYS | FAULT_KEYS | {TRANSPORT_KEY})
    if request.config.getoption("--codex-disable-recording"):
        yield from _real_codex(request, merged, Path(codex_cassette_dir))
        return
    path = _resolve(request, Path(codex_cassette_dir), name)
    if path is None:
        asked = [f"--codex-record-mode={codex_record_mode}"] if codex_record_mode != "none" else []
        asked += [f"{key}=" for key in sorted(RECORD_KEYS & set(merged))]
        _missing(request, Path(codex_cassette_dir), name, hint=(
            f"; fake_codex only replays ({', '.join(asked)} not for it): the codex_app_server fixture "
            "records, and replays like fake_codex (.argv, .env, .handle())") if asked else "")
    path, options = _served(path, _replay_options(request, merged), codex_fault, tmp_path_factory)
    fake = _fake(request, path, options, tmp_path_factory, _transport(merged)).start()
    if codex_fault is None:  # under a fault, the fault's oracle judges the run, not the fake's verdict
        verdict.attach(request, fake)
    yield fake
    fake.close()
    bad = fake.untold_failures()  # what the test's own outcome did not already say (pytest_runtest_makereport)
    if bad and not fake._expected_failure and codex_fault is None:
        verdict.fail_at_teardown(request, verdict.diverged_text([r.summary() for r in bad]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A diverged test is one failure, told once (harness.pytest.verdict)."""
    report = yield
    if call.when == "call":
        verdict.tell_in_call(item, report)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A test using a codex fixture gets one outcome: what its teardown finds folds into its call."""
    return verdict.run_folded(item, nextitem) if verdict.uses_codex(item) else None


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
    report = request.node.stash.get(verdict.CALL_REPORT, None)
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


def _real_codex(request: pytest.FixtureRequest, merged: dict[str, Any], directory: Path) -> Any:
    """--codex-disable-recording: the real codex in the fixture's place (harness.pytest.passthrough)."""
    from harness.pytest.passthrough import real_codex

    if merged.get("ssh") is not None or merged.get(TRANSPORT_KEY, "stdio") != "stdio":
        pytest.fail("codex-cassette: --codex-disable-recording runs a local codex over stdio; ssh= and "
                    f"transport= are not for it ({request.node.nodeid})", pytrace=False)
    live = _live_scenario(request, merged["live"], directory) if merged.get("live") else None
    try:
        server = real_codex(request.config.getoption("--codex-bin"), live, _replay_timeout(request, merged))
        bad = None
    except HarnessError as exc:
        bad = str(exc)
    if bad is not None:
        pytest.fail(f"codex-cassette: {bad}", pytrace=False)
    try:
        yield server
    finally:
        server.finish()


def _check_account(request: pytest.FixtureRequest, lock: Any) -> None:
    """Recording from the real codex with no live scenario: fail in seconds, not minutes, when it has
    no account to answer with (harness.pytest.account); no cassette is left."""
    from harness.live.binary import find_codex_binary
    from harness.pytest.account import missing_account

    try:
        binary = str(find_codex_binary(request.config.getoption("--codex-bin")))
    except HarnessError:
        return  # the recording names the missing binary itself
    why = missing_account(binary, dict(os.environ))
    if why is not None:
        lock.release()
        pytest.fail(f"codex-cassette: cannot record {request.node.nodeid} without live=: {why}", pytrace=False)


@pytest.fixture
def codex_app_server(request: pytest.FixtureRequest, codex_cassette_dir: Path, codex_cassette_name: str,
                     codex_cassette_config: dict[str, Any], codex_record_mode: str,
                     tmp_path_factory: pytest.TempPathFactory, codex_fault: Any) -> Any:
    """One command (``.argv``/``.env``) or in-process ``await .handle()`` that replays the
    cassette, or records it from the real codex, according to the record mode."""
    from harness.pytest.record_modes import CassetteLock, should_record
    from harness.pytest.servers import CodexAppServer

    name, marker_options = _marker_args(request, codex_cassette_name)
    merged = _options(request, codex_cassette_config, marker_options,
                      OPTION_KEYS | RECORD_KEYS | FAULT_KEYS | {TRANSPORT_KEY})
    if request.config.getoption("--codex-disable-recording"):
        yield from _real_codex(request, merged, Path(codex_cassette_dir))
        return
    transport = _transport(merged)
    volatile = _volatile(request, merged.get("volatile", ()))  # said before any lock is taken
    directory = Path(codex_cassette_dir)
    existing = _resolve(request, directory, name)
    lock = None
    if should_record(codex_record_mode, existing):
        target = _resolve(request, directory, name, record=True)
        lock = CassetteLock(target).acquire()
        existing = _resolve(request, directory, name)
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
        if live is None and merged.get("ssh") is None:
            _check_account(request, lock)
        server = CodexAppServer(cassette_path=target, recording=True, workdir=tmp_path_factory.mktemp("codex_app_server"),
                                codex_bin=request.config.getoption("--codex-bin"), live_scenario=live,
                                ssh=merged.get("ssh"), transport=transport,
                                fresh=bool(merged.get("fresh", False)),
                                volatile=volatile)
    else:
        if existing is None:
            _missing(request, directory, name, hint=f" (record mode {codex_record_mode!r}; run with "
                                                    "--codex-record-mode=once to record it)")
        existing, options = _served(existing, _replay_options(request, merged), codex_fault, tmp_path_factory)
        server = CodexAppServer(cassette_path=existing, recording=False, transport=transport,
                                workdir=tmp_path_factory.mktemp("codex_app_server"),
                                fake=_fake(request, existing, options, tmp_path_factory, transport))
        if codex_fault is None:
            verdict.attach(request, server.fake)
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
        verdict.fail_at_teardown(request, "codex-cassette: " + "\n\n".join(problems))
