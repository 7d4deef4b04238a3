"""Which codex a project uses, read from it (pyproject pin, cassette headers, the default
schema), and validation of fault variants: their deliberate problems shown, the rest checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.format.pins import default_schema, pinned_version, recorded_version

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "harness.cli"]
VARIANT = ROOT / "cassettes" / "faults" / "openai_sdk" / "approval.unknown-request-15.jsonl"


def test_the_pin_is_read_from_dependencies_extras_or_groups(tmp_path: Path):
    assert pinned_version(ROOT / "pyproject.toml") == "0.163.0"
    py = tmp_path / "pyproject.toml"
    py.write_text('[project]\nname = "x"\ndependencies = []\n[dependency-groups]\ndev = ["openai_codex_cli_bin == 0.169.0"]\n')
    assert pinned_version(py) == "0.169.0"
    py.write_text('[project]\ndependencies = ["openai-codex-cli-bin==0.1.0", "openai-codex-cli-bin==0.2.0"]\n')
    with pytest.raises(HarnessError, match="expected one pin .* found 0.1.0, 0.2.0"):
        pinned_version(py)
    py.write_text('[project]\ndependencies = ["openai-codex-cli-bin>=0.1"]\n')
    with pytest.raises(HarnessError, match="found none"):
        pinned_version(py)


def test_the_recorded_version_is_the_cassettes_most_common_and_variants_follow_their_source(tmp_path: Path):
    assert recorded_version([ROOT / "cassettes"]) == "0.163.0"
    (tmp_path / "c").mkdir()
    for n, version in enumerate(["0.1.0", "0.2.0", "0.2.0"]):
        (tmp_path / "c" / f"{n}.jsonl").write_text(json.dumps({"codex_cassette": 1, "meta": {"codex_version": version}}) + "\n")
    variant = {"codex_cassette": 1, "meta": {"codex_version": "0.1.0", "fault": {"kind": "drop", "point": 3}}}
    for n in range(3):
        (tmp_path / "c" / f"v{n}.jsonl").write_text(json.dumps(variant) + "\n")
    assert recorded_version([tmp_path / "c"]) == "0.2.0"
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="says which codex recorded it"):
        recorded_version([tmp_path / "empty"])


def test_validate_finds_the_schema_beside_the_cassettes(tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "cassettes" / "optio").mkdir(parents=True)
    shutil.copyfile(ROOT / "cassettes" / "optio" / "handshake.jsonl", repo / "cassettes" / "optio" / "handshake.jsonl")
    shutil.copytree(ROOT / "cassettes" / "schema" / "0.163.0", repo / "cassettes" / "schema" / "0.163.0")
    assert default_schema([repo / "cassettes" / "optio"]) == (repo / "cassettes" / "schema" / "0.163.0").resolve()
    done = subprocess.run([*CLI, "validate", "cassettes/optio"], cwd=repo, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "against schema 0.163.0: no problem" in done.stdout, done.stdout + done.stderr
    shutil.rmtree(repo / "cassettes" / "schema")
    done = subprocess.run([*CLI, "validate", "cassettes/optio"], cwd=repo, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "no schema snapshot of codex 0.163.0" in done.stderr, done.stderr


def test_a_variants_deliberate_fault_passes_and_its_other_messages_are_still_validated(tmp_path: Path):
    schema = str(ROOT / "cassettes" / "schema" / "0.163.0")
    done = subprocess.run([*CLI, "validate", str(VARIANT), "--schema", schema], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no problem; 2 deliberate fault(s) of fault variants, not counted" in done.stdout
    assert ":16: $.method: 'codexCassette/probe/requestDecision' is not a server request" in done.stdout
    # The same variant with a message broken elsewhere: that one still fails.
    lines = VARIANT.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["msg"]["method"] = "initialise"
    lines[1] = json.dumps(broken)
    bad = tmp_path / "variant.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    done = subprocess.run([*CLI, "validate", str(bad), "--schema", schema], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"{bad}:2: $.method: 'initialise'" in done.stdout, done.stdout
    # (its answer, to a request the schema does not know, is the second problem)
    assert "2 problem(s) in 1 file(s); 2 deliberate fault(s)" in done.stdout
