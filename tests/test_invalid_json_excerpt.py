"""A hand-edited cassette that is not JSON (issue 23.8): the error is said once, naming
file:line, with the line's text around the column (escaped, capped, secrets scrubbed) and a
caret under it: in pytest, from the fake codex, from `codex-cassette show`, and for a big
(indexed) cassette when the play reaches the line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fake_server import FakeCodexCommand
from harness.errors import CassetteError
from harness.format.cassette import LAZY_FROM, load_cassette
from harness.safe_text import EXCERPT_RADIUS

pytest_plugins = ["pytester"]

HEADER = '{"codex_cassette": 1, "meta": {"complete": true}}\n'
# A trailing comma, as a hand edit leaves it: column 97 is the "}" after it.
BROKEN = '{"i": 1, "from": "client", "t": 0.0, "msg": {"id": 1, "method": "initialize", "params": {"a": 1,}}}'
HEADLINE = "2: not valid JSON: Expecting property name enclosed in double quotes at column 97"
EXCERPT = '    ...ethod": "initialize", "params": {"a": 1,}}}'
CARET = " " * (4 + 3 + EXCERPT_RADIUS) + "^"


def broken(directory: Path, line: str = BROKEN, name: str = "broken.jsonl") -> Path:
    path = directory / name
    path.write_text(HEADER + line + "\n")
    return path


def test_the_error_shows_the_line_and_a_caret_at_the_column(tmp_path: Path) -> None:
    path = broken(tmp_path)
    with pytest.raises(CassetteError) as info:
        load_cassette(path)
    assert str(info.value) == f"{path}:{HEADLINE}\n{EXCERPT}\n{CARET}"
    assert BROKEN[96] == "}" and EXCERPT[len(CARET) - 1] == "}"


def test_the_excerpt_is_escaped_capped_and_keeps_no_secret(tmp_path: Path) -> None:
    # Two strings with no comma between: the column is the second one's quote, 100 KB in.
    line = ('{"i": 1, "from": "client", "t": 0, "msg": {"method": "' + "x" * 100_000 + '" "\x1b]0;retitled\x07'
            + "y" * 100_000 + '"}}')
    with pytest.raises(CassetteError) as info:
        load_cassette(broken(tmp_path, line))
    excerpt, caret = info.value.excerpt.split("\n")
    assert "\x1b" not in str(info.value) and "\\x1b]0;retitled\\x07" in excerpt
    assert len(excerpt) < 4 + 2 * (3 + EXCERPT_RADIUS) + 20  # a window, not the line
    assert excerpt[len(caret) - 1] == '"' and caret.strip() == "^"
    key = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    for line in ('{"i": 1, "from": "client", "t": 0, "msg": {"params": {"token": "%s",}}}' % key,
                 '{"i": 1, "from": "client", "t": 0, "msg": {"params": {"token": "%s}}}' % key):
        with pytest.raises(CassetteError) as info:
            load_cassette(broken(tmp_path, line))
        assert key not in str(info.value) and key[:20] not in str(info.value)


def test_the_fake_and_show_say_it_once(tmp_path: Path) -> None:
    path = broken(tmp_path)
    command = FakeCodexCommand(path, report=tmp_path / "report.json")
    fake = subprocess.run(command.cold_argv(), capture_output=True, text=True, timeout=30, env=command.env(),
                          stdin=subprocess.DEVNULL)
    assert fake.returncode == 2
    assert fake.stderr.rstrip("\n") == f"fake codex: {path}:{HEADLINE}\n{EXCERPT}\n{CARET}"
    said = json.loads((tmp_path / "report.json").read_text())["divergence"]
    assert said["message"] == f"fake codex: {path}:{HEADLINE}" and said["excerpt"] == f"{EXCERPT}\n{CARET}"
    show = subprocess.run([sys.executable, "-m", "harness", "show", str(path)], capture_output=True, text=True,
                          timeout=30, env=command.env())
    assert show.returncode != 0
    assert (show.stdout + show.stderr).count(HEADLINE) == 1 and f"{EXCERPT}\n{CARET}" in show.stderr
    assert "Traceback" not in show.stderr + fake.stderr


def test_a_big_cassette_shows_the_line_when_the_play_reaches_it(tmp_path: Path) -> None:
    delta = json.dumps({"i": 2, "from": "server", "t": 0, "msg": {"method": "d", "params": {"delta": "x" * 200}}})
    count = LAZY_FROM // len(delta) + 1
    lines = [json.dumps({"i": n, "from": "server", "t": 0, "msg": {"method": "d", "params": {"delta": "x" * 200}}})
             for n in range(1, count + 1)]
    bad = BROKEN.replace('"i": 1', f'"i": {count + 1}')
    path = tmp_path / "big.jsonl"
    path.write_text(HEADER + "\n".join(lines) + "\n" + bad + "\n")
    command = FakeCodexCommand(path, report=tmp_path / "report.json", timeout=10)
    fake = subprocess.run(command.cold_argv(), capture_output=True, text=True, timeout=60, env=command.env(),
                          stdin=subprocess.DEVNULL)
    assert fake.returncode == 3
    where = f"{path}:{count + 2}: not valid JSON"
    assert fake.stderr.count(where) == 1, fake.stderr
    shown = fake.stderr.splitlines()
    at = next(n for n, text in enumerate(shown) if where in text)
    assert shown[at + 1].strip().endswith('"params": {"a": 1,}}}') and shown[at + 2].strip() == "^"


def test_pytest_says_a_broken_cassette_once_with_its_line(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=textwrap.dedent("""
        import pytest

        @pytest.mark.codex_cassette("broken")
        def test_replays(fake_codex):
            pass
        """))
    directory = pytester.path / "cassettes" / "test_inner"
    directory.mkdir(parents=True)
    path = broken(directory)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "During handling of the above exception" not in out
    assert out.count(f"{path}:{HEADLINE}") == 1, out
    assert f"{EXCERPT}\n{CARET}" in out


def test_the_fault_sweep_says_a_broken_cassette_once_without_a_traceback(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=textwrap.dedent("""
        import pytest

        @pytest.mark.codex_cassette("broken")
        def test_replays(fake_codex, codex_fault):
            pass
        """))
    directory = pytester.path / "cassettes" / "test_inner"
    directory.mkdir(parents=True)
    path = broken(directory)
    result = pytester.runpytest("-p", "no:cacheprovider", "--codex-faults=crash")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "Traceback" not in out and "faults.py" not in out, out
    assert out.count(f"{path}:{HEADLINE}") == 1 and f"{EXCERPT}\n{CARET}" in out, out
