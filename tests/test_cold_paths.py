"""What the cold paths leave out (issue 17): the fake's command line read without argparse
agrees with argparse on every command line; a pytest run that uses no codex fixture
imports none of the engine; a cold fake serving a cassette imports no parser it does
not need."""

from __future__ import annotations

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
                                 "fake_server", "yaml", "deepdiff", "jsonschema") if m in sys.modules]
            assert heavy == []
            assert "harness.pytest.plugin" in sys.modules
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:asyncio",
                                           "-p", "no:anyio", timeout=WAIT)
    result.assert_outcomes(passed=1)


def test_a_cold_fake_imports_no_argparse_yaml_or_asyncio(tmp_path: Path) -> None:
    cassette = tmp_path / "init.jsonl"
    cassette.write_text(
        '{"codex_cassette":1,"meta":{"complete":true}}\n'
        '{"i":1,"from":"client","t":0.0,"msg":{"id":1,"method":"initialize","params":{}}}\n'
        '{"i":2,"from":"server","t":0.0,"msg":{"id":1,"result":{}}}\n'
        '{"i":3,"from":"client","t":0.0,"eof":true}\n'
        '{"i":4,"from":"server","t":0.0,"exit":0}\n')
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        import atexit, os, sys
        def said():
            loaded = [m for m in ("argparse", "yaml", "asyncio", "deepdiff", "jsonschema", "shutil",
                                  "harness.format.redact") if m in sys.modules]
            os.write(2, ("LOADED " + ",".join(loaded) + "\\n").encode())
        atexit.register(said)
        sys.argv = sys.argv[1:]
        exec(compile(open(sys.argv[0]).read(), sys.argv[0], "exec"), {"__name__": "__main__", "__file__": sys.argv[0]})
    """))
    argv = FakeCodexCommand(cassette, timeout=WAIT).cold_argv()
    assert argv[1] == "-S"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([argv[0], "-S", str(probe), *argv[2:]], input=b'{"id":1,"method":"initialize","params":{}}\n',
                          capture_output=True, timeout=WAIT, env=env)
    assert done.stdout == b'{"id":1,"result":{}}\n', done.stderr.decode()
    assert b"LOADED \n" in done.stderr, done.stderr.decode()
