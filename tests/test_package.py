"""The package as it would be published: built, checked by twine, installed from its wheel
(not editable) into a fresh virtual environment, and used there by a plugin replay.

Offline: the build uses this environment's setuptools (`--no-isolation`), and the fresh
environment borrows only the dependencies (pytest, pyyaml, ...) from this one through a
path entry, so the `harness` it imports is the wheel's own copy."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parent.parent

INNER_TEST = '''
import json, pathlib, subprocess, sys
import pytest
import harness

@pytest.mark.codex_cassette("hello")
def test_replay_from_the_installed_wheel(fake_codex):
    here = pathlib.Path(harness.__file__).resolve()
    assert here.is_relative_to(pathlib.Path(sys.prefix).resolve()), here   # the wheel's copy, not the checkout
    assert (here.parent / "py.typed").is_file()
    session = [{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "inner"}}},
               {"method": "initialized"}]
    done = subprocess.run(fake_codex.argv, input="".join(json.dumps(m) + "\\n" for m in session),
                          capture_output=True, text=True, timeout=30)
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert replies == [{"id": 1, "result": {"userAgent": "codex_cli_rs/0.163.0"}}], done.stderr
'''

INNER_SCENARIO = """
meta: {codex_version: "0.163.0"}
steps:
  - expect: initialize
    params: {clientInfo: {name: inner}}
    reply: {userAgent: "codex_cli_rs/0.163.0"}
  - expect: initialized
"""


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], cwd=out, timeout=300)
    return out


def test_the_distributions_pass_twine_check_strict(dist: Path) -> None:
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    assert "PASSED" in run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], cwd=dist)


def test_the_wheel_carries_what_a_user_needs(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith(f"codex_cassette-{harness.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"codex_cassette-{harness.__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert {"harness/py.typed", "fake_server/py.typed", "harness/pytest/plugin.py", "fake_server/_launch.py"} <= names
    assert any(n.startswith(f"{info}/licenses/LICENSE") for n in names), sorted(n for n in names if "dist-info" in n)
    assert "License-Expression: MIT" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert "Classifier: Framework :: Pytest" in metadata and "Project-URL: Changelog, " in metadata
    assert "codex_cassette = harness.pytest.plugin" in entry_points
    assert "codex-cassette = harness.cli:main" in entry_points


def test_installed_from_the_wheel_it_says_its_version_and_replays_in_pytest(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)], cwd=tmp_path)
    # Dependencies only: a plain path entry, so the .pth files there (this checkout's editable
    # install among them) are not processed and `harness` can come from the wheel alone.
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=tmp_path).strip())
    (purelib / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}

    assert run([str(venv / "bin" / "codex-cassette"), "--version"], cwd=tmp_path, env=env) == \
        f"codex-cassette {harness.__version__}\n"

    project = tmp_path / "project"
    (project / "cassettes" / "test_inner").mkdir(parents=True)
    (project / "cassettes" / "test_inner" / "hello.yaml").write_text(textwrap.dedent(INNER_SCENARIO).lstrip())
    (project / "test_inner.py").write_text(INNER_TEST)
    (project / "pytest.ini").write_text("[pytest]\n")
    out = run([str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_inner.py"], cwd=project, env=env)
    assert "1 passed" in out, out
