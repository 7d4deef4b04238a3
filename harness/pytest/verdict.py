"""One verdict per test, told once: how what a test's fake saw joins the test's own outcome.

- The call phase's report gets the fake's verdict (``tell_in_call``): a failed test has it as a
  section of its failure (what the fake saw, also when nothing diverged: a client that hung
  after everything was played); a passing test whose fake diverged fails with it.
- What only teardown can find (a fake the client left running, stopped and judged then; a
  recording that did not end well) folds into the call's report (``run_folded``): the test
  is one failure, never "1 passed, 1 error".
- The fake's own summary on stderr (for a person reading a client's log) is dropped from the
  captured stderr pytest shows beside a verdict that already says it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.pytest.servers import FakeCodex

DIVERGED = "codex-cassette: the session diverged from the cassette"
SAW = "codex-cassette: what the fake codex saw"  # a failed test whose fake did not diverge
FAKE_KEY = pytest.StashKey["FakeCodex"]()  # the fake serving a test, for its report hook
CALL_REPORT = pytest.StashKey["pytest.TestReport"]()  # the call phase's report, for teardown
TOLD_AT_TEARDOWN = pytest.StashKey[str]()  # what a codex fixture's teardown failed the test with
CODEX_FIXTURES = ("fake_codex", "codex_app_server")


def diverged_text(summaries: list[str]) -> str:
    return DIVERGED + "\n\n" + "\n\n".join(summaries)


def fail_at_teardown(request: pytest.FixtureRequest, text: str) -> None:
    """A codex fixture's teardown finding: the test fails with it, folded into its call report."""
    request.node.stash[TOLD_AT_TEARDOWN] = text
    pytest.fail(text, pytrace=False)


def _without_told(report: pytest.TestReport, summaries: list[str]) -> None:
    """Drop the fake's own copies of ``summaries`` from the report's captured stderr."""
    kept = []
    for title, content in report.sections:
        if title.startswith("Captured stderr"):
            for summary in summaries:
                content = content.replace(summary + "\n", "").replace(summary, "")
            if not content.strip():
                continue
        kept.append((title, content))
    report.sections[:] = kept


def _add(report: pytest.TestReport, title: str, text: str) -> None:
    """``text`` joined to a failed report's explanation."""
    if isinstance(report.longrepr, str):
        report.longrepr += "\n\n" + text
    elif hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection(title, text)
    else:
        report.sections.append((title, text))


def tell_in_call(item: pytest.Item, report: pytest.TestReport) -> None:
    """pytest_runtest_makereport, call phase: the fake's verdict joins the test's outcome."""
    item.stash[CALL_REPORT] = report  # a recording's teardown reads why the test did not pass
    fake = item.stash.get(FAKE_KEY, None)
    if fake is None or fake._expected_failure:
        return
    if report.failed:
        fake.close()  # the test failed anyway: stop its fake now, so its report can say what it saw
    try:
        bad = fake.untold_failures(ended_only=not report.failed)
        told = fake.untold_reports() if report.failed else bad  # a failed test hears what the fake saw
    except HarnessError:
        return  # an unreadable report: teardown says so
    if not told:
        return
    fake.mark_told(told)
    summaries = [r.summary() for r in told]
    _without_told(report, summaries)
    text = diverged_text(summaries) if bad else SAW + "\n\n" + "\n\n".join(summaries)
    if not report.failed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        _add(report, "codex-cassette", text)


def _fold(item: pytest.Item, reports: list[pytest.TestReport]) -> None:
    """A teardown failure of a codex fixture becomes the call's: one outcome for the test."""
    told = item.stash.get(TOLD_AT_TEARDOWN, None)
    call = next((r for r in reports if r.when == "call"), None)
    teardown = reports[-1] if reports and reports[-1].when == "teardown" else None
    if told is None or call is None or teardown is None or not teardown.failed or call.skipped:
        return  # a skipped or xfailed test keeps its outcome; the teardown error stays its own
    if told not in str(teardown.longrepr):
        return
    summaries = [part for part in told.split("\n\n") if part.startswith("replay of ")]
    for report in (call, teardown):
        _without_told(report, summaries)
    if call.passed:
        call.outcome = "failed"
        call.longrepr = teardown.longrepr
    else:
        _add(call, "codex-cassette (at teardown)", str(teardown.longrepr))
    call.sections.extend(s for s in teardown.sections if s not in call.sections)
    teardown.outcome = "passed"
    teardown.longrepr = None


def uses_codex(item: pytest.Item) -> bool:
    return any(name in getattr(item, "fixturenames", ()) for name in CODEX_FIXTURES)


def run_folded(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """pytest_runtest_protocol for a test using a codex fixture: pytest's own, its reports
    logged once its teardown's finding is folded in (as pytest-rerunfailures logs its own)."""
    from _pytest.runner import runtestprotocol  # the public protocol's body, run unlogged

    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, log=False, nextitem=nextitem)
    _fold(item, reports)
    for report in reports:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def attach(request: pytest.FixtureRequest, fake: Any) -> None:
    request.node.stash[FAKE_KEY] = fake
