"""The fault sweep inside pytest: each cassette-backed test, once per fault variant.

``--codex-faults=all|KIND,...`` (or ``faults=`` on the marker) parametrizes every
test that uses ``fake_codex`` or ``codex_app_server`` over ``codex_fault``: ``None``
(the clean run, id ``fault:none``), then one ``ActiveFault`` per variant
(``fault:crash-23``); ``--codex-faults-max N`` draws N of them, the same N for the
same seed. The fixtures then serve the variant instead of the cassette, and the
verdict is this module's (harness.faults.oracle): the test must end within the
deadline with nothing crashed unobserved in the background; how it ended is the
client's business, unless the test asked for ``codex_fault`` itself (then its own
assertions count) or said what it expects (``codex_fault.expect``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import signal
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from harness.errors import HarnessError
from harness.pytest.names import case_name, default_cassette_name, variant_param_id
from harness.pytest.options import ACTIVE_FAULT

# The catalogue, the variants, the oracle and asyncio load when a sweep runs: the plugin imports
# this module in every pytest run, codex tests or not (bench/plugin_overhead.py).
if TYPE_CHECKING:
    import asyncio

    from harness.faults.catalogue import Fault
    from harness.faults.variants import FaultTiming
    from harness.replay.options import ReplayOptions

CANCEL_GRACE = 2.0   # seconds a hung async test gets to unwind once cancelled


class FaultHung(BaseException):
    """The deadline of a fault variant passed (BaseException: a client's `except Exception` must not eat it)."""


@dataclass
class ActiveFault:
    """What ``codex_fault`` hands a test: the fault in force, and a way to say what the client will do."""

    fault: Fault
    cassette: Path                     # the cassette the variant comes from
    timing: FaultTiming
    expected: str | None = None
    reason: str = ""
    strict: bool = True

    @property
    def kind(self) -> str:
        return self.fault.kind

    @property
    def point(self) -> int:
        return self.fault.point

    @property
    def id(self) -> str:
        return self.fault.id

    @property
    def variant(self) -> str:
        return self.fault.variant

    @property
    def position(self) -> int:
        return self.fault.position

    @property
    def deadline(self) -> float:
        return self.timing.deadline_for(self.fault)

    def describe(self) -> str:
        return self.fault.describe()

    def expect(self, outcome: str, reason: str, strict: bool = True) -> None:
        """A known outcome under this fault (a client's bug, say): met, the test is xfailed with the
        reason; not met, it fails when ``strict`` (the bug may be fixed: update the expectation)."""
        from harness.faults.oracle import OUTCOMES

        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        self.expected, self.reason, self.strict = outcome, reason, strict

    def serve(self, path: Path, options: ReplayOptions, directory: Path) -> tuple[Path, ReplayOptions]:
        """Write the variant (under the cassette's own name, beside its other connections'
        cassettes) and the options a fake plays it with."""
        from harness.faults.variants import write_variant
        from harness.format.load import open_cassette

        if path.resolve() != self.cassette.resolve():  # never a variant of one cassette built from another's faults
            pytest.fail(f"codex-cassette: the fault sweep read its faults from {self.cassette} while collecting, but "
                        f"the fixture serves {path}; name the cassette on the codex_cassette marker", pytrace=False)
        stem = path.name.rsplit(".", 1)[0]
        target = write_variant(open_cassette(path), self.fault, directory, self.timing, name=f"{stem}.jsonl")
        for sibling in path.parent.glob(f"{stem}.*.jsonl"):  # NAME.2.jsonl: a second connection, as recorded
            if sibling.name[len(stem) + 1:-len(".jsonl")].isdigit():
                (directory / sibling.name).symlink_to(sibling.resolve())
        # The oracle judges the run; the fake must outwait the deadline, never end a stall itself.
        options = dataclasses.replace(options, strict=False, timeout=max(options.timeout, self.timing.fake_timeout),
                                      linger=max(options.linger, self.timing.fake_timeout))
        return target, options


# -- options and collection ----------------------------------------------------------------------

def _marker_options(definition: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for marker in reversed(list(definition.iter_markers("codex_cassette"))):  # farthest first
        merged.update(marker.kwargs)
        if marker.args:
            merged["name"] = marker.args[0]
    return merged


class _CollectionRequest:
    """Enough of a FixtureRequest for a ``codex_cassette_dir`` fixture that looks at the test."""

    def __init__(self, metafunc: pytest.Metafunc) -> None:
        self.node = metafunc.definition
        self.config = metafunc.config
        self.path = metafunc.definition.path
        self.module = metafunc.module
        self.cls = metafunc.cls
        self.function = metafunc.function


def _collection_dir(metafunc: pytest.Metafunc) -> Path | None:
    """The cassette directory, from the ``codex_cassette_dir`` fixture in force for this test.
    Fixtures resolve only at setup, so its function is called here: possible when it takes
    nothing or only ``request`` (the plugin's own, and the usual overrides)."""
    defs = metafunc._arg2fixturedefs.get("codex_cassette_dir")  # no public way before setup
    if not defs:
        return None
    func = defs[-1].func
    params = list(inspect.signature(func).parameters)
    if params == []:
        return Path(func())
    if params == ["request"]:
        return Path(func(_CollectionRequest(metafunc)))
    return None


def generate(metafunc: pytest.Metafunc, resolve: Callable[[Path, str], Path | None]) -> None:
    """pytest_generate_tests: parametrize ``codex_fault`` when a sweep is asked for."""
    if "codex_fault" not in metafunc.fixturenames:
        return
    config = metafunc.config
    options = _marker_options(metafunc.definition)
    # The command line says what this run sweeps; the marker, what a test sweeps by default.
    spec = config.getoption("--codex-faults") or options.get("faults")
    if not spec:
        return  # no sweep asked for: nothing of the sweep is imported
    from harness.faults.catalogue import catalogue, parse_kinds, sample
    from harness.faults.variants import FaultTiming
    from harness.format.load import open_cassette

    try:
        kinds = parse_kinds(spec)
        bad = None
    except HarnessError as exc:
        bad = str(exc)
    if bad is not None:  # the option was checked at start-up: this is the marker's
        pytest.fail(f"codex-cassette: {bad} (faults= on the marker of {metafunc.definition.nodeid})",
                    pytrace=False)
    if not kinds:
        return
    limit = config.getoption("--codex-faults-max")
    limit = limit if limit is not None else options.get("faults_max")
    deadline = config.getoption("--codex-faults-deadline") or float(options.get("faults_deadline", 10.0))
    timing = FaultTiming(deadline)
    directory = _collection_dir(metafunc)
    explicit = options.get("name")
    # Each case the test's own parametrization made (pytest keeps them in `_calls`; this hook runs
    # last) has its own cassette, so its own faults: pytest's parametrize multiplies every case by
    # the same values, so it is called once per case, on that case alone.
    cases = list(metafunc._calls) or [None]
    swept: list[Any] = []
    made: dict[Path, tuple[list[ActiveFault | None], list[str]]] = {}
    for case in cases:
        name = str(explicit) if explicit is not None else default_cassette_name(
            case_name(metafunc.definition.name, case), metafunc.cls)
        path = resolve(directory, name) if directory is not None else None
        if path is None:
            warnings.warn(pytest.PytestWarning(
                f"codex-cassette: no fault sweep for {case_name(metafunc.definition.nodeid, case)}: its cassette "
                f"{name!r} could not be found while collecting (name it on the codex_cassette marker; a "
                "codex_cassette_dir fixture must take no argument but `request`)"))
            swept.extend([case] if case is not None else [])
            continue
        if path not in made:
            try:
                cassette = open_cassette(path)
                bad = None
            except HarnessError as exc:
                bad = str(exc)
            if bad is not None:  # said once, as the fixture would say it: the file's line, no traceback
                pytest.fail(f"{bad}\n(the fault sweep of {metafunc.definition.nodeid} reads its cassette while "
                            "collecting)", pytrace=False)
            faults = sample(catalogue(cassette, kinds), limit, config.getoption("--codex-faults-seed"),
                            salt=f"{metafunc.definition.nodeid}:{path.name}")
            made[path] = ([None, *(ActiveFault(f, path, timing) for f in faults)],
                          [variant_param_id(f) for f in (None, *faults)])
        params, ids = made[path]
        metafunc._calls = [case] if case is not None else []
        metafunc.parametrize("codex_fault", params, ids=ids, indirect=True)
        swept.extend(metafunc._calls)
    metafunc._calls = swept


def activate(request: pytest.FixtureRequest) -> ActiveFault | None:
    """The ``codex_fault`` fixture: a fresh copy per test (expectations are the test's own)."""
    active = getattr(request, "param", None)
    if active is None:
        return None
    active = dataclasses.replace(active, expected=None, reason="", strict=True)
    request.node.stash[ACTIVE_FAULT] = active
    return active


# -- the verdict ---------------------------------------------------------------------------------

class BackgroundCrashes:
    """What died in the background while a test ran: asyncio tasks whose exception nobody
    retrieved, errors the event loop reported, threads that ended with an uncaught exception."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._hook: Any = None
        self._loop_state: tuple[Any, Any] | None = None
        self.main_task: asyncio.Task[Any] | None = None

    def __enter__(self) -> "BackgroundCrashes":
        self._hook = threading.excepthook

        def hook(args: Any) -> None:
            if args.exc_type is not SystemExit:
                name = args.thread.name if args.thread is not None else "a thread"
                self.found.append(f"thread {name}: {args.exc_type.__name__}: {args.exc_value}")
            self._hook(args)
        threading.excepthook = hook
        return self

    def __exit__(self, *exc: Any) -> None:
        threading.excepthook = self._hook

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        import asyncio

        old_handler, old_factory = loop.get_exception_handler(), loop.get_task_factory()
        self._loop_state = (old_handler, old_factory)

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            self.found.append(f"{context.get('message', 'event loop error')}: {exc!r}" if exc else
                              str(context.get("message")))
            if old_handler is not None:
                old_handler(loop, context)
            else:
                loop.default_exception_handler(context)

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            task = old_factory(loop, coro, **kwargs) if old_factory else asyncio.Task(coro, loop=loop, **kwargs)
            self._tasks.add(task)
            return task
        loop.set_exception_handler(handler)
        loop.set_task_factory(factory)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop_state is not None:
            loop.set_exception_handler(self._loop_state[0])
            loop.set_task_factory(self._loop_state[1])
            self._loop_state = None
        for task in list(self._tasks):
            if task is self.main_task or not task.done() or task.cancelled():
                continue
            if "InProcessCodex" in getattr(task.get_coro(), "__qualname__", ""):
                continue  # the fake's own engine: the harness, not the client
            # An exception nobody has asked for yet (asyncio would log it as never retrieved).
            if getattr(task, "_log_traceback", False):
                exc = task.exception()
                self.found.append(f"task {task.get_name()} ({getattr(task.get_coro(), '__qualname__', '?')}): "
                                  f"{type(exc).__name__}: {exc}")


def bounded(func: Callable[..., Any], active: ActiveFault, crashes: BackgroundCrashes) -> Callable[..., Any]:
    """The test function, ended at the deadline: a coroutine is cancelled, a plain function
    interrupted by SIGALRM (tests run in the main thread)."""
    import asyncio

    deadline = active.deadline
    message = f"the test did not end within {deadline:g} s under {active.describe()}"

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            crashes.attach(loop)
            try:
                task = loop.create_task(func(*args, **kwargs))
                crashes.main_task = task
                done, _ = await asyncio.wait({task}, timeout=deadline)
                if not done:
                    task.cancel()
                    await asyncio.wait({task}, timeout=CANCEL_GRACE)
                    raise FaultHung(message)
                return task.result()
            finally:
                crashes.detach(loop)
        return run_async

    @functools.wraps(func)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return func(*args, **kwargs)

        def alarm(signum: int, frame: Any) -> None:
            raise FaultHung(message)
        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, deadline)
        try:
            return func(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return run_sync


def judge(item: pytest.Item, active: ActiveFault, raised: BaseException | None, crashes: BackgroundCrashes,
          seconds: float) -> None:
    """Turn the run into the sweep's verdict: return (pass), or raise what pytest should report."""
    from harness.faults.oracle import CRASHED, HUNG, SURVIVED, Verdict

    if isinstance(raised, (KeyboardInterrupt, pytest.skip.Exception, pytest.xfail.Exception)):
        raise raised
    if isinstance(raised, FaultHung):
        outcome = HUNG
    elif crashes.found:
        outcome = CRASHED
    else:
        outcome = SURVIVED
    said = "; ".join(crashes.found) if crashes.found else (
        f"{type(raised).__name__}: {raised}" if raised is not None and outcome == SURVIVED else "")
    verdict = Verdict(active.fault, outcome, seconds, active.deadline, said=said[:500])
    item.user_properties.append(("codex_fault", verdict.to_json()))
    if active.expected is not None:
        if outcome == active.expected:
            pytest.xfail(f"{active.reason} [{verdict.message()}]")
        if active.strict:
            pytest.fail(f"codex-cassette: expected the client to be {active.expected} under {active.describe()} "
                        f"({active.reason}), but {verdict.message()}; if the client was fixed, update the "
                        "expectation", pytrace=False)
    if outcome != SURVIVED:
        pytest.fail(f"codex-cassette: {verdict.message()}", pytrace=False)
    asked = "codex_fault" in inspect.signature(getattr(item, "function", lambda: None)).parameters
    if raised is not None and asked:
        raise raised  # the test says what it wants under each fault: its own verdict stands


def run_under_fault(item: pytest.Item, active: ActiveFault) -> Any:
    """pytest_runtest_call (a new-style wrapper) of a test under a fault: bounded and judged."""
    original = item.obj
    crashes = BackgroundCrashes()
    item.obj = bounded(original, active, crashes)
    started = time.monotonic()
    raised: BaseException | None = None
    with crashes:
        try:
            result = yield
        except BaseException as exc:  # judged below: a failure under a fault is often a pass
            raised = exc
            result = None
        finally:
            item.obj = original
    judge(item, active, raised, crashes, time.monotonic() - started)
    return result
