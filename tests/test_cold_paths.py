"""What the cold paths leave out (issue 17): the fake's command line read without argparse
agrees with argparse on every command line; a pytest run that uses no codex fixture
imports none of the engine; a cold fake serving a cassette imports no parser it does
not need, and on its happy path (a small cassette, a report with nothing to scrub) neither
orjson nor the redaction machinery; a report that holds a secret is still scrubbed."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from fake_server.argv import _plain, build_parser
from fake_server.commands import FakeCodexCommand

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0

PLAIN = [
    [],
    ["--cassette", "x.jsonl"],
    ["--cassette=x.jsonl", "app-server", "--listen", "stdio://"],
    ["--cassette", "x.jsonl", "--report", "r-{pid}.json", "--timeout", "2.5", "--pace", "recorded",
     "--pace-scale=0.5", "--bind", "cwd=/w", "--bind=home=/h", "--allow-unplayed", "--ignore", "a.b",
     "--match-on", "kind,method", "--linger=3", "-c", "model=x", "--config", "k=v", "--enable", "f",
     "--disable", "g", "app-server"],
    ["--version", "--cassette", "x.jsonl"],
    ["exec", "--cassette", "x"],
]
# Each of these goes to argparse, which accepts or refuses it as before.
ODD = [
    ["-h"], ["--cass", "x"], ["--timeout", "-1"], ["--pace", "fast"], ["--timeout", "soon"],
    ["--cassette"], ["--allow-unplayed=yes"], ["-cmodel=x"], ["-c=x"], ["app-server", "extra"],
    ["--cassette", "--report"], ["--unknown"], [""],
]


@pytest.mark.parametrize("args", PLAIN, ids=lambda a: " ".join(a) or "(none)")
def test_plain_command_lines_read_as_argparse_reads_them(args: list[str]) -> None:
    fast = _plain(args)
    assert fast is not None
    assert vars(fast) == vars(build_parser(str).parse_args(args))


@pytest.mark.parametrize("args", ODD, ids=lambda a: " ".join(a) or "(empty)")
def test_anything_else_is_left_to_argparse(args: list[str]) -> None:
    assert _plain(args) is None


def test_an_unrelated_pytest_run_imports_no_engine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent("""
        import sys

        def test_one():
            heavy = [m for m in ("harness.replay.engine", "harness.replay.matching", "harness.format.cassette",
                                 "fake_server", "yaml", "deepdiff", "jsonschema", "harness.pytest.faults",
                                 "harness.pytest.record_modes", "harness.format.locks") if m in sys.modules]
            assert heavy == []
            assert "harness.pytest.plugin" in sys.modules
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:asyncio",
                                           "-p", "no:anyio", timeout=WAIT)
    result.assert_outcomes(passed=1)


PROBE = """
import atexit, os, sys
def said():
    os.write(2, ("LOADED " + ",".join(sorted(sys.modules)) + "\\n").encode())
atexit.register(said)
sys.argv = sys.argv[1:]
exec(compile(open(sys.argv[0]).read(), sys.argv[0], "exec"), {"__name__": "__main__", "__file__": sys.argv[0]})
"""


def run_cold_fake(tmp_path: Path, command: FakeCodexCommand, feed: bytes,
                  env: dict[str, str] | None = None) -> tuple[bytes, set[str]]:
    """A cold fake (as the codex shim starts it) fed ``feed``: what it wrote, and the modules
    it held when it exited."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    argv = command.cold_argv()
    assert argv[1] == "-S"
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([argv[0], "-S", str(probe), *argv[2:]], input=feed, capture_output=True, timeout=WAIT,
                          env=env, cwd="/")
    said = done.stderr.decode()
    loaded = [line for line in said.splitlines() if line.startswith("LOADED ")]
    assert loaded, said
    return done.stdout, set(loaded[-1][len("LOADED "):].split(","))


INITIALIZE_ONLY = ('{"codex_cassette":1,"meta":{"complete":true}}\n'
                   '{"i":1,"from":"client","t":0.0,"msg":{"id":1,"method":"initialize","params":{}}}\n'
                   '{"i":2,"from":"server","t":0.0,"msg":{"id":1,"result":{}}}\n'
                   '{"i":3,"from":"client","t":0.0,"eof":true}\n'
                   '{"i":4,"from":"server","t":0.0,"exit":0}\n')


def test_a_cold_fake_imports_no_argparse_yaml_or_asyncio(tmp_path: Path) -> None:
    cassette = tmp_path / "init.jsonl"
    cassette.write_text(INITIALIZE_ONLY)
    out, loaded = run_cold_fake(tmp_path, FakeCodexCommand(cassette, timeout=WAIT),
                                b'{"id":1,"method":"initialize","params":{}}\n')
    assert out == b'{"id":1,"result":{}}\n'
    assert loaded.isdisjoint({"argparse", "yaml", "asyncio", "deepdiff", "jsonschema", "shutil",
                              "harness.format.redact"}), sorted(loaded)


# What the happy path of a cold fake (a small cassette played through, its report written,
# nothing in it to scrub) has no use for. (pathlib stays: a loaded Cassette's path is a
# pathlib.Path, which users of the library read.)
NOT_ON_THE_HAPPY_PATH = ["orjson", "harness.format.redact", "harness.format.detectors", "harness.format.rules",
                         "base64"]


@pytest.fixture(scope="module")
def happy_cold_fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, set[str]]:
    tmp_path = tmp_path_factory.mktemp("cold")
    cassette = tmp_path / "handshake.jsonl"
    cassette.write_text(
        '{"codex_cassette":1,"meta":{"complete":true,"placeholders":["codex_home","cwd"]}}\n'
        '{"i":1,"from":"client","t":0.0,"msg":{"id":1,"method":"initialize","params":{"cwd":"{{cwd}}"}}}\n'
        '{"i":2,"from":"server","t":0.0,"msg":{"id":1,"result":{"codexHome":"{{codex_home}}","n":1}}}\n'
        '{"i":3,"from":"client","t":0.0,"msg":{"method":"initialized"}}\n'
        '{"i":4,"from":"client","t":0.0,"eof":true}\n'
        '{"i":5,"from":"server","t":0.0,"exit":0}\n')
    report = tmp_path / "report.json"
    command = FakeCodexCommand(cassette, report=report, timeout=WAIT)
    out, loaded = run_cold_fake(tmp_path, command, b'{"id":1,"method":"initialize","params":{"cwd":"/srv/w"}}\n'
                                b'{"method":"initialized"}\n', env={"CODEX_HOME": "/srv/codex-home"})
    assert out == b'{"id":1,"result":{"codexHome":"/srv/codex-home","n":1}}\n'
    return json.loads(report.read_text()), loaded


def test_a_happy_cold_fake_reports_what_it_bound(happy_cold_fake: tuple[dict, set[str]]) -> None:
    report, _ = happy_cold_fake
    assert report["status"] == "ok", report
    assert report["bindings"] == {"cwd": "/srv/w", "codex_home": "/srv/codex-home"}


@pytest.mark.parametrize("module", NOT_ON_THE_HAPPY_PATH)
def test_a_happy_cold_fake_imports_only_what_it_uses(happy_cold_fake: tuple[dict, set[str]], module: str) -> None:
    _, loaded = happy_cold_fake
    assert "harness.replay.engine" in loaded  # the probe saw the fake's own modules
    assert module not in loaded


def test_a_cold_fake_report_with_a_planted_secret_is_scrubbed(tmp_path: Path) -> None:
    # The same path, but a binding holds a key: the gate sends it through the redaction machinery.
    cassette = tmp_path / "init.jsonl"
    cassette.write_text(INITIALIZE_ONLY)
    report = tmp_path / "report.json"
    key = "sk-proj-Abcdefghijklmnopqrstuvwx_0123456789"
    command = FakeCodexCommand(cassette, report=report, timeout=WAIT, bindings={"note": f"use {key}"})
    out, loaded = run_cold_fake(tmp_path, command, b'{"id":1,"method":"initialize","params":{}}\n')
    assert out == b'{"id":1,"result":{}}\n'
    said = report.read_text()
    assert key not in said and "{{redacted:openai_api_key}}" in said
    assert "harness.format.redact" in loaded
