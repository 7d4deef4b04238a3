"""`show --html` and `pytest --codex-report-dir` pages, loaded in a real headless chromium: the
rendered DOM (events, anchors, markers, the divergence's anchor) and a screenshot of the
timeline; and what CI is told: `::error` workflow commands, the job summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.format.ci_output import error_command

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "harness.cli"]
HOSTILE = "<script>document.title='pwned'</script> {{redacted:openai_key}} in {{cwd}}"
BROWSER_TIMEOUT = 90


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "a headless chromium is needed (Debian: apt-get install chromium; .ci/run installs it)"
    return found


def browse(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = page.parent / "chromium-profile"
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=BROWSER_TIMEOUT, stdin=subprocess.DEVNULL)


def dom_of(page: Path) -> str:
    done = browse(page, "--dump-dom")
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return done.stdout


def screenshot(page: Path, out: Path, height: int = 900) -> bytes:
    done = browse(page, f"--screenshot={out}", f"--window-size=1280,{height}")
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000, len(data)  # a drawn page, not a blank one
    return data


def hostile_cassette(tmp_path: Path) -> Path:
    src = (ROOT / "cassettes" / "openai_sdk" / "approval.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in src]
    lines[1]["msg"]["params"]["clientInfo"]["title"] = HOSTILE
    out = tmp_path / "hostile.jsonl"
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def test_show_html_is_a_timeline_in_a_real_browser(tmp_path: Path):
    cassette = hostile_cassette(tmp_path)
    page = tmp_path / "page.html"
    done = subprocess.run([*CLI, "show", "--html", str(cassette), "-o", str(page)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    dom = dom_of(page)
    events = len(cassette.read_text().splitlines()) - 1
    assert 'id="L2"' in dom and f'id="L{events + 1}"' in dom  # every cassette line is an anchor
    assert dom.count("<details>") == dom.count('class="row ')
    assert dom.count('class="row server approval"') == 2 and 'class="row client accept"' in dom
    assert "pwned" not in dom.split("<title>")[1].split("</title>")[0]  # escaped: no script ran
    assert "&lt;script&gt;" in dom and "<script>" not in dom
    assert '<span class="red">{{redacted:openai_key}}</span>' in dom and '<span class="ph">{{cwd}}</span>' in dom
    html = page.read_text()  # self-contained: nothing fetched, every link inside the page
    assert re.findall(r'href="([^"]*)"', html) and all(h.startswith("#L") for h in re.findall(r'href="([^"]*)"', html))
    assert "src=" not in html and "<link" not in html and "@import" not in html
    screenshot(page, tmp_path / "show.png")


def test_show_html_writes_through_no_planted_link(tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "page.html").symlink_to(victim)
    done = subprocess.run([*CLI, "show", "--html", str(ROOT / "cassettes" / "optio" / "handshake.jsonl"),
                           "-o", str(tmp_path / "page.html")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert victim.read_text() == "keep me"


DIVERGING = '''
import json
import subprocess

import pytest


@pytest.mark.codex_cassette("handshake", timeout=3)
def test_other_name(fake_codex):
    proc = subprocess.Popen(fake_codex.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=fake_codex.env)
    hello = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "other", "version": "9"}}}
    proc.communicate(json.dumps(hello).encode() + b"\\n", timeout=30)
'''


def run_diverging(tmp_path: Path, report_dir: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = tmp_path / "project"
    (project / "cassettes" / "test_other").mkdir(parents=True)
    shutil.copyfile(ROOT / "cassettes" / "optio" / "handshake.jsonl", project / "cassettes" / "test_other" /
                    "handshake.jsonl")
    (project / "test_other.py").write_text(textwrap.dedent(DIVERGING).lstrip())
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "a-file").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env.update(GITHUB_ACTIONS="true", GITHUB_WORKSPACE=str(project))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--codex-report-dir",
                           report_dir, "test_other.py"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr  # the test's failure, not an internal error
    return project, done


def test_a_report_dir_that_cannot_be_made_is_said_and_the_run_goes_on(tmp_path: Path):
    _, done = run_diverging(tmp_path, "a-file/reports")
    assert "test_other.py::test_other_name: no report written in a-file/reports: Not a directory" in done.stdout
    assert "INTERNALERROR" not in done.stdout + done.stderr


def test_a_diverged_replay_leaves_a_page_and_an_annotation(tmp_path: Path):
    project, done = run_diverging(tmp_path, "reports")
    [error] = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert error.startswith("::error file=cassettes/test_other/handshake.jsonl,line=2,"
                            "title=codex-cassette%3A replay diverged::codex-cassette: divergence at "), error
    page = project / "reports" / "test_other.py_test_other_name.html"
    assert f"test_other.py::test_other_name: {page.relative_to(project)}" in done.stdout  # the summary names it
    assert json.loads(page.with_suffix(".json").read_text())["status"] == "diverged"
    dom = dom_of(page)
    assert 'class="expected-at" href="#L2"' in dom  # the divergence's anchor
    assert 'class="row client diverged" id="L2"' in dom
    assert "params['clientInfo']['name']" in dom.split('class="diff"')[1]  # the structural diff
    assert '"optio_codex"' in dom.split('class="expected"')[1]  # the nearest candidate
    screenshot(page, tmp_path / "report.png", height=2000)  # the divergence on top, the timeline below


@pytest.mark.parametrize(("file", "title", "message", "expected"), [
    ("cassettes/a.jsonl", "replay diverged", "one line", "::error file=cassettes/a.jsonl,line=7,title=replay diverged::one line"),
    ("c,d:e.jsonl", "t: x, y", "100%\r\nnext", "::error file=c%2Cd%3Ae.jsonl,line=7,title=t%3A x%2C y::100%25%0D%0Anext"),
])
def test_a_workflow_command_is_escaped_as_the_runner_reads_it(file, title, message, expected):
    assert error_command(file, 7, title, message) == expected


def test_validate_appends_its_markdown_to_the_job_summary_never_through_a_link(tmp_path: Path):
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    args = [*CLI, "validate", str(ROOT / "cassettes" / "optio" / "handshake.jsonl")]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert summary.read_text().startswith("before\n## Cassettes validated against schema 0.163.0: no problem")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "link.md"
    link.symlink_to(victim)
    done = subprocess.run(args, env={**env, "GITHUB_STEP_SUMMARY": str(link)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr and victim.read_text() == "keep", done.stderr


def test_an_unwritable_page_or_summary_is_one_paragraph(tmp_path: Path):
    missing = tmp_path / "no such dir"
    done = subprocess.run([*CLI, "show", "--html", str(ROOT / "cassettes" / "optio" / "handshake.jsonl"),
                           "-o", str(missing / "page.html")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr and str(missing / "page.html") in done.stderr, \
        done.stderr
    done = subprocess.run([*CLI, "validate", str(ROOT / "cassettes" / "optio" / "handshake.jsonl")],
                          env={**os.environ, "GITHUB_STEP_SUMMARY": str(missing / "summary.md")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "GITHUB_STEP_SUMMARY" in done.stderr, \
        done.stderr
