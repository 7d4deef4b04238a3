"""The two GitHub Actions workflows of docs/ci.md, run step by step as the runner would.

Every `run:` step runs in order, the install step included, in a scratch repository made of
this checkout's package (pyproject.toml, harness/, fake_server/, ...) and a few cassettes, with
`bash --noprofile --norc -eo pipefail`, the workflow's and the step's `env`, GITHUB_ENV lines
becoming the next steps' environment, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_EVENT_NAME and
GITHUB_ACTIONS=true. `python` is a fresh virtual environment's: the install step fills it from
the scratch checkout, offline (no index; the dependencies are this environment's, borrowed
through a plain path entry). The new codex is the pinned 0.163.0, which `codex install` finds
installed here: nothing is fetched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ci.md"
CASSETTES = ["optio/handshake.jsonl", "optio/text_turn.jsonl"]
# A fault variant: its deliberate unknown request and orphaned answer must not fail validate.
VARIANT = "faults/openai_sdk/approval.unknown-request-15.jsonl"
PACKAGE = ["pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "harness", "fake_server"]
STEP_TIMEOUT = 300
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")

DIVERGING_TEST = '''
import json
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def codex_cassette_dir():
    return Path(__file__).resolve().parent.parent / "cassettes"


@pytest.mark.codex_cassette("optio/handshake", timeout=3)
def test_a_client_that_says_another_name(fake_codex):
    proc = subprocess.Popen(fake_codex.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=fake_codex.env)
    hello = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "other", "version": "9"}}}
    proc.communicate(json.dumps(hello).encode() + b"\\n", timeout=30)
'''


def workflows() -> dict[str, dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return {wf["name"]: wf for wf in map(yaml.safe_load, blocks)}


def test_the_workflows_are_workflows():
    wfs = workflows()
    assert sorted(wfs) == ["codex upgrade", "replay"]
    replay, upgrade = wfs["replay"], wfs["codex upgrade"]
    assert set(replay[True]) == {"push", "pull_request"}  # `on:` reads as True in YAML 1.1
    assert set(upgrade[True]) == {"pull_request", "schedule", "workflow_dispatch"}
    assert "pyproject.toml" in upgrade[True]["pull_request"]["paths"]
    for wf in wfs.values():
        (job,) = wf["jobs"].values()
        assert all(("run" in s) != ("uses" in s) for s in job["steps"])
        runs = " ".join(s.get("run", "") for s in job["steps"])
        assert "pip install codex-cassette" not in runs  # not published
        for step in job["steps"]:  # every failing exit says why first
            for before in step.get("run", "").split("exit 1")[:-1]:
                assert 'echo "' in before[-300:], (step["name"], before[-300:])


def _expand(value: str, inputs: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("inputs."):
            return inputs.get(name.removeprefix("inputs."), "")
        raise AssertionError(f"the test does not know the expression {name!r}")
    return EXPRESSION.sub(one, str(value))


def run_workflow(repo: Path, python_bin: Path, name: str, event: str,
                 inputs: dict[str, str] | None = None) -> tuple[list[tuple[str, int, str]], str]:
    """(step name, exit code, output) for each run step until one fails, and the job summary."""
    wf = workflows()[name]
    (job,) = wf["jobs"].values()
    env = {k: v for k, v in os.environ.items()
           if k not in ("CODEX_BIN", "PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "VIRTUAL_ENV")
           and not k.startswith(("GITHUB_", "PIP_"))}
    env["PATH"] = f"{python_bin}{os.pathsep}{env.get('PATH', '')}"
    files = {k: repo.parent / k.lower() for k in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    files["GITHUB_STEP_SUMMARY"].write_text("")
    env.update({k: str(v) for k, v in files.items()}, GITHUB_ACTIONS="true", GITHUB_EVENT_NAME=event,
               GITHUB_WORKSPACE=str(repo), PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update({k: _expand(v, inputs or {}) for k, v in (wf.get("env") or {}).items()})
    results = []
    for step in job["steps"]:
        if "run" not in step:
            continue
        files["GITHUB_ENV"].write_text("")
        files["GITHUB_OUTPUT"].write_text("")
        step_env = {**env, **{k: _expand(v, inputs or {}) for k, v in (step.get("env") or {}).items()}}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=repo / step.get("working-directory", "."), env=step_env, capture_output=True,
                              text=True, timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL)
        results.append((step["name"], proc.returncode, proc.stdout + proc.stderr))
        for line in files["GITHUB_ENV"].read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        if proc.returncode:
            break  # the runner skips the rest (the steps run here have no `if: always()`)
    return results, files["GITHUB_STEP_SUMMARY"].read_text()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "client"
    for name in PACKAGE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, root / name)
    for rel in [*CASSETTES, VARIANT]:
        (root / "cassettes" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "cassettes" / rel, root / "cassettes" / rel)
    for version in ("0.144.4", "0.163.0"):
        shutil.copytree(ROOT / "cassettes" / "schema" / version, root / "cassettes" / "schema" / version)
    (root / "tests").mkdir()
    (root / "tests" / "test_replay.py").write_text(textwrap.dedent(DIVERGING_TEST).lstrip())
    return root


@pytest.fixture
def python_bin(tmp_path: Path) -> Path:
    """A fresh virtual environment (with pip) whose dependencies are this environment's."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, capture_output=True)
    # The setuptools venv bundles is older than the build needs: the borrowed one builds.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "setuptools"],
                   check=True, timeout=120, capture_output=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # A plain path entry: the .pth files there (this checkout's editable install) are not processed.
    (Path(purelib) / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def _said(results: list[tuple[str, int, str]]) -> str:
    return "\n".join(f"--- {name} ({rc})\n{out}" for name, rc, out in results)


@pytest.mark.live
def test_the_replay_suite_fails_on_the_cassette_line_and_leaves_its_pages(repo, python_bin):
    results, _ = run_workflow(repo, python_bin, "replay", "pull_request")
    assert [(name, rc) for name, rc, _ in results] == [
        ("Install codex-cassette", 0), ("Replay the cassettes", 1)], _said(results)
    out = results[-1][2]
    assert "The replay suite failed (pytest exit 1)" in out
    [error] = [line for line in out.splitlines() if line.startswith("::error ")]
    assert error.startswith("::error file=cassettes/optio/handshake.jsonl,line=2,title=codex-cassette%3A replay "
                            "diverged::"), error
    assert "expected client initialize" in error
    assert str(python_bin.parent) in subprocess.run(  # the package ran from the fresh environment
        [str(python_bin / "python"), "-c", "import harness; print(harness.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=python_bin, env={"PATH": os.environ["PATH"]}).stdout
    pages = sorted(p.name for p in (repo / "codex-reports").iterdir())
    assert pages == ["tests_test_replay.py_test_a_client_that_says_another_name.html",
                     "tests_test_replay.py_test_a_client_that_says_another_name.json"], pages
    report = json.loads((repo / "codex-reports" / pages[1]).read_text())
    assert report["status"] == "diverged" and report["divergence"]["expected_at"].endswith("handshake.jsonl:2")


@pytest.mark.live
def test_every_step_passes_when_the_pin_is_the_cassettes_codex(repo, python_bin):
    results, summary = run_workflow(repo, python_bin, "codex upgrade", "pull_request")
    assert [(name, rc) for name, rc, _ in results] == [
        ("Install codex-cassette", 0), ("Read the versions", 0), ("Fetch the new codex", 0),
        ("Snapshot its schema", 0), ("Schema diff", 0), ("Validate the cassettes against the new schema", 0),
        ("Re-record against the new codex", 0), ("Verdict", 0)], _said(results)
    said = dict((name, out) for name, _, out in results)
    assert "checking codex 0.163.0 against the cassettes of codex 0.163.0" in said["Read the versions"]
    assert "in 3 file(s) against schema 0.163.0: no problem; 2 deliberate fault(s)" in said[
        "Validate the cassettes against the new schema"]
    # Progress lines on a stderr that is not a terminal (a CI log): one per cassette.
    assert re.findall(r"^\[(\d)/2\] \S+: same", said["Re-record against the new codex"], re.M) == ["1", "2"]
    assert "## Codex app-server schema: 0.163.0 → 0.163.0" in summary and "no breaking change" in summary
    assert "## Cassettes validated against schema 0.163.0: no problem" in summary
    assert "## Re-recorded cassettes" in summary and summary.count("| same |") == 2
    assert "export CODEX_BIN=$(codex-cassette codex install 0.163.0)" in summary
    assert str(Path.home()) not in summary and "/site-packages/" not in summary  # no machine path
    assert sorted(str(p.relative_to(repo)) for p in (repo / "rerecorded").rglob("*.jsonl")) == [
        "rerecorded/cassettes/" + rel for rel in sorted(CASSETTES)]


@pytest.mark.live
def test_a_pin_with_breaking_changes_fails_the_verdict_after_reporting_everything(repo, python_bin):
    for rel in CASSETTES:  # cassettes recorded with 0.144.4; the pull request pins 0.163.0
        path = repo / "cassettes" / rel
        head, _, rest = path.read_text().partition("\n")
        meta = json.loads(head)
        meta["meta"]["codex_version"] = "0.144.4"
        path.write_text(json.dumps(meta) + "\n" + rest)
    results, summary = run_workflow(repo, python_bin, "codex upgrade", "pull_request")
    codes = {name: rc for name, rc, _ in results}
    assert codes.pop("Verdict") == 1, _said(results)
    assert set(codes.values()) == {0}, _said(results)
    assert "codex 0.163.0 makes a breaking change to the protocol" in results[-1][2]
    assert "## Codex app-server schema: 0.144.4 → 0.163.0" in summary and "**breaking changes**" in summary
    assert "### Touching the cassettes" in summary
    assert "## Re-recorded cassettes" in summary


def test_the_versions_step_says_why_when_there_is_no_version(tmp_path: Path):
    """A scheduled run that finds no newest version (offline here) stops, saying why, before any fetch."""
    (step,) = [s for s in workflows()["codex upgrade"]["jobs"]["drift"]["steps"] if s.get("name") == "Read the versions"]
    repo = tmp_path / "r"
    (repo / "cassettes").mkdir(parents=True)
    shutil.copyfile(ROOT / "cassettes" / CASSETTES[0], repo / "cassettes" / "a.jsonl")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}, "GITHUB_EVENT_NAME": "schedule",
           "GITHUB_ENV": str(tmp_path / "env"), "REQUESTED": "", "PIP_NO_INDEX": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "No codex version to check" in proc.stdout, proc.stdout + proc.stderr
