"""Running codex to ask it something (harness.live.binary.run_codex), as both its callers meet it:
the live kit's `codex_version` and the drift snapshot. Each failure is one paragraph naming the binary."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from harness.drift.snapshot import SchemaError, snapshot
from harness.live.binary import CodexBinaryError, codex_version


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def one_paragraph_naming(message: str, binary: Path) -> None:
    assert str(binary) in message and "\n" not in message and "Traceback" not in message


def test_a_binary_that_prints_garbage(tmp_path: Path) -> None:
    garbage = script(tmp_path, "garbage", "printf 'hello\\033[31m there\\n\\nsecond line\\n'\n")
    with pytest.raises(CodexBinaryError) as live:
        codex_version(garbage)
    one_paragraph_naming(str(live.value), garbage)
    assert "Cannot read a version from" in str(live.value) and "\\x1b[31m" in str(live.value)
    with pytest.raises(SchemaError) as drift:
        snapshot(str(garbage), tmp_path / "out")
    assert str(drift.value) == str(live.value)          # one wording, whoever asked
    assert not (tmp_path / "out").exists()


def test_a_missing_binary(tmp_path: Path) -> None:
    missing = tmp_path / "no-codex"
    with pytest.raises(CodexBinaryError) as live:
        codex_version(missing)
    one_paragraph_naming(str(live.value), missing)
    assert "no such file" in str(live.value) and "--codex-bin" in str(live.value)
    with pytest.raises(SchemaError) as drift:
        snapshot(str(missing), tmp_path / "out")
    assert str(drift.value) == str(live.value)


def test_a_binary_that_never_answers(tmp_path: Path) -> None:
    silent = script(tmp_path, "silent", "exec sleep 30\n")
    with pytest.raises(CodexBinaryError) as live:
        codex_version(silent, timeout=0.5)
    one_paragraph_naming(str(live.value), silent)
    assert "did not finish within 0.5 s" in str(live.value)
    # the snapshot's generator, past a version it did answer
    slow = script(tmp_path, "slow", 'if [ "$1" = --version ]; then echo "codex-cli 0.163.0"; exit 0; fi\nexec sleep 30\n')
    with pytest.raises(SchemaError) as drift:
        snapshot(str(slow), tmp_path / "out", timeout=0.5)
    one_paragraph_naming(str(drift.value), slow)
    assert "generate-json-schema" in str(drift.value) and "did not finish within 0.5 s" in str(drift.value)
    assert not (tmp_path / "out").exists()


def test_a_binary_that_fails(tmp_path: Path) -> None:
    failing = script(tmp_path, "failing", "echo 'error: unknown flag' >&2\nexit 2\n")
    with pytest.raises(SchemaError) as drift:
        snapshot(str(failing), tmp_path / "out")
    one_paragraph_naming(str(drift.value), failing)
    assert "exited with code 2" in str(drift.value) and "unknown flag" in str(drift.value)
