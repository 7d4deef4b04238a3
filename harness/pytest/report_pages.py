"""What a failed replay leaves for CI: ``--codex-report-dir DIR`` writes, for each test whose
replay diverged, left events unplayed or failed, a page (the cassette's timeline with the
divergence on top, its structural diff, the nearest candidate, the cassette line as an anchor)
and the JSON report; the terminal summary names the pages. Under GitHub Actions
(``GITHUB_ACTIONS=true``) each divergence is also one ``::error`` workflow command on its
cassette line, so a pull request shows it where the cassette says what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.replay.report import ReplayReport

OPTION = "--codex-report-dir"
PAGE = "codex-cassette page"                 # user_properties keys
ANNOTATION = "codex-cassette annotation"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def add_option(group: pytest.OptionGroup) -> None:
    group.addoption(OPTION, default=None, metavar="DIR",
                    help="write an HTML page and the JSON report of each replay that diverged, left events "
                         "unplayed or failed into DIR (for CI artifacts)")


def _name(nodeid: str, n: int) -> str:
    base = _UNSAFE.sub("_", nodeid).strip("_")[:150] or "test"
    return f"{base}.{n}" if n else base


def _line(report: "ReplayReport") -> int | None:
    from harness.show_html import divergence_line

    return divergence_line(report)


def _annotation(config: pytest.Config, report: "ReplayReport") -> str:
    from harness.format.ci_output import error_command, relative_to_root

    title = f"codex-cassette: replay {report.status}"
    message = report.divergence.message if report.divergence else report.summary()
    return error_command(relative_to_root(report.cassette, config.rootpath), _line(report), title, message)


def record(item: pytest.Item, reports: "list[ReplayReport]", properties: list[tuple[str, object]]) -> None:
    """The failed replays of ``item``: their annotations (under GitHub Actions) and, with the option,
    their pages and JSON reports, noted in the test report's ``properties`` (``user_properties``:
    they travel from an xdist worker to the terminal summary)."""
    from harness.format.ci_output import in_github_actions

    config = item.config
    if in_github_actions():
        properties.extend((ANNOTATION, _annotation(config, r)) for r in reports)
    directory = config.getoption(OPTION)
    if not reports or not directory:
        return
    from harness.format.load import open_cassette
    from harness.show_html import write_page

    out = Path(directory)
    for n, report in enumerate(reports):
        name = _name(item.nodeid, n)
        try:  # a page that cannot be written is said in the summary; it does not stop the run
            out.mkdir(parents=True, exist_ok=True)
            report.write(out / f"{name}.json")
        except OSError as exc:
            properties.append((PAGE, f"{item.nodeid}: no report written in {out}: {exc.strerror or exc}"))
            continue
        try:
            page = write_page(open_cassette(report.cassette), out / f"{name}.html", report)
        except (HarnessError, OSError) as exc:
            properties.append((PAGE, f"{item.nodeid}: {out / name}.json (no page: {exc})"))
            continue
        properties.append((PAGE, f"{item.nodeid}: {page}"))


def terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The annotations, each on a line of its own (the runner reads them there), and the pages."""
    noted: dict[str, list[str]] = {ANNOTATION: [], PAGE: []}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for key, value in getattr(report, "user_properties", ()):
                if key in noted and value not in noted[key]:
                    noted[key].append(str(value))
    for line in noted[ANNOTATION]:
        terminalreporter.write_line(line)
    if noted[PAGE]:
        terminalreporter.write_sep("-", "codex-cassette report pages")
        for line in noted[PAGE]:
            terminalreporter.write_line(line)
