"""The GitHub Actions workflow of docs/ci.md, run step by step as Actions would.

Every `run:` step but the package install (this environment has the package) runs in
order in a scratch repository with two live cassettes and the 0.163.0 / 0.144.4 snapshots,
with `bash --noprofile --norc -eo pipefail`, a GITHUB_ENV file whose lines become the next
steps' environment, and a GITHUB_STEP_SUMMARY file. The new codex is the pinned 0.163.0,
which `codex install` finds installed here: nothing is fetched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ci.md"
CASSETTES = ["optio/handshake.jsonl", "optio/text_turn.jsonl"]
NOT_RUN = ["Install codex-cassette"]  # `pip install codex-cassette`: already installed here
STEP_TIMEOUT = 300


def workflow() -> dict:
    [block] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return yaml.safe_load(block)


def test_the_workflow_is_a_workflow():
    wf = workflow()
    assert set(wf) >= {"name", "jobs", "env"} and True in wf  # `on:` reads as True in YAML 1.1
    steps = wf["jobs"]["drift"]["steps"]
    assert all(("run" in s) != ("uses" in s) for s in steps)
    assert [s["name"] for s in steps if "run" in s and s["name"] in NOT_RUN] == NOT_RUN
    assert [s["uses"].split("@")[0] for s in steps if "uses" in s] == [
        "actions/checkout", "actions/setup-python", "actions/setup-node", "actions/upload-artifact"]


def run_workflow(repo: Path, old: str, new: str) -> tuple[list[tuple[str, int, str]], str]:
    """(step name, exit code, output) for each run step, and the job summary."""
    env = {k: v for k, v in os.environ.items() if k != "CODEX_BIN"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    github_env, summary = repo.parent / "github_env", repo.parent / "summary.md"
    summary.write_text("")
    env.update(OLD=old, NEW=new, GITHUB_ENV=str(github_env), GITHUB_STEP_SUMMARY=str(summary))
    results = []
    for step in workflow()["jobs"]["drift"]["steps"]:
        if "run" not in step or step["name"] in NOT_RUN:
            continue
        github_env.write_text("")
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        results.append((step["name"], proc.returncode, proc.stdout + proc.stderr))
        for line in github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
    return results, summary.read_text()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "client"
    for rel in CASSETTES:
        (root / "cassettes" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "cassettes" / rel, root / "cassettes" / rel)
    for version in ("0.144.4", "0.163.0"):
        shutil.copytree(ROOT / "cassettes" / "schema" / version, root / "cassettes" / "schema" / version)
    return root


@pytest.mark.live
def test_every_step_passes_when_nothing_breaks(repo):
    results, summary = run_workflow(repo, old="0.163.0", new="0.163.0")
    assert [(name, rc) for name, rc, _ in results] == [
        ("Fetch the new codex", 0), ("Snapshot its schema", 0), ("Schema diff", 0),
        ("Validate the cassettes against the new schema", 0), ("Re-record against the new codex", 0),
        ("Fail on a breaking change", 0)], "\n".join(out for _, _, out in results)
    validate = next(out for name, _, out in results if name.startswith("Validate"))
    assert "in 2 file(s) against schema 0.163.0: no problem" in validate
    assert "## Codex app-server schema: 0.163.0 → 0.163.0" in summary and "no breaking change" in summary
    assert "## Re-recorded cassettes" in summary and summary.count("| same |") == 2
    assert sorted(str(p.relative_to(repo)) for p in (repo / "rerecorded").rglob("*.jsonl")) == [
        "rerecorded/cassettes/" + rel for rel in sorted(CASSETTES)]


@pytest.mark.live
def test_the_job_fails_on_a_breaking_change_after_reporting_everything(repo):
    results, summary = run_workflow(repo, old="0.144.4", new="0.163.0")
    codes = {name: rc for name, rc, _ in results}
    assert codes.pop("Fail on a breaking change") == 1
    assert set(codes.values()) == {0}, "\n".join(out for _, _, out in results)
    assert "## Codex app-server schema: 0.144.4 → 0.163.0" in summary and "**breaking changes**" in summary
    assert "### Touching the cassettes" in summary
    assert "## Re-recorded cassettes" in summary
