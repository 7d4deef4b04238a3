"""Planted links are never written through (issue 21, point 1).

A symbolic link (or a second hard link) committed where the harness writes one of
its files would turn the next recording into an overwrite of the file it points
at. Each test plants one beside a real recording (the real proxy in front of the
real fake server) or a real writer of the harness, and checks the victim is byte
for byte and mode for mode what it was, and that one paragraph names the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.faults.catalogue import catalogue
from harness.faults.variants import FaultTiming, variant_filename, write_variant
from harness.format.cassette import load_cassette
from harness.format.writer import mark_incomplete
from harness.pytest.record_modes import CassetteLock

REPO = Path(__file__).resolve().parents[1]
HANDSHAKE = REPO / "cassettes" / "optio" / "handshake.jsonl"
PY = sys.executable
WAIT = 60.0
VICTIM = b"a file of the user's, not the harness's\n"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))


def _client_lines() -> bytes:
    """What the handshake's client said: the fake answers it as recorded."""
    return b"".join(json.dumps(e.msg).encode() + b"\n" for e in load_cassette(HANDSHAKE).events
                    if e.side == "client" and e.msg is not None)


def record(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [PY, "-m", "harness", "record", *flags, "--", PY, "-m", "fake_server", "--cassette", str(HANDSHAKE)]
    return subprocess.run(argv, input=_client_lines().decode(), capture_output=True, text=True, env=_env(),
                          cwd=tmp_path, timeout=WAIT)


def fake_with_report(tmp_path: Path, report: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "fake_server", "--cassette", str(HANDSHAKE), "--report", report],
                          input=_client_lines().decode(), capture_output=True, text=True, env=_env(),
                          cwd=tmp_path, timeout=WAIT)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_bytes(VICTIM)
    path.chmod(0o644)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == VICTIM and victim.stat().st_mode & 0o777 == 0o644


def refused(err: str, name: str) -> bool:
    return "Traceback" not in err and f"refused to write {name}" in err and "symbolic link" in err


def test_a_plain_recording_still_works(tmp_path: Path) -> None:
    done = record(tmp_path, "-o", "c.jsonl", "--stderr-file", "err.txt")
    assert done.returncode == 0, done.stderr
    assert load_cassette(tmp_path / "c.jsonl").complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "err.txt"]


@pytest.mark.parametrize("planted", ["c.jsonl.partial", "c.jsonl.tmp", "c.jsonl", "err.txt"])
def test_a_link_planted_where_the_recording_writes_is_refused(tmp_path: Path, victim: Path, planted: str) -> None:
    (tmp_path / planted).symlink_to(victim)
    done = record(tmp_path, "-o", "c.jsonl", "--stderr-file", "err.txt")
    assert done.returncode != 0
    assert refused(done.stderr, planted), done.stderr
    assert untouched(victim)
    assert (tmp_path / planted).is_symlink()  # left as found: the user decides
    assert not (tmp_path / "c.jsonl").exists() or (tmp_path / "c.jsonl").is_symlink()


def test_a_dangling_link_creates_nothing_at_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "created"
    target.parent.mkdir()
    (tmp_path / "c.jsonl.partial").symlink_to(target)
    done = record(tmp_path, "-o", "c.jsonl")
    assert done.returncode != 0 and refused(done.stderr, "c.jsonl.partial"), done.stderr
    assert not target.exists()


def test_a_hard_link_planted_at_the_partial_is_refused(tmp_path: Path, victim: Path) -> None:
    os.link(victim, tmp_path / "c.jsonl.partial")
    done = record(tmp_path, "-o", "c.jsonl")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "refused to write c.jsonl.partial" in done.stderr and "hard link" in done.stderr, done.stderr
    assert victim.read_bytes() == VICTIM


@pytest.mark.parametrize("planted", ["launches", "launches.lock"])
def test_the_launch_counter_and_its_lock_refuse_a_link(tmp_path: Path, victim: Path, planted: str) -> None:
    (tmp_path / planted).symlink_to(victim)
    done = record(tmp_path, "-o", "c.jsonl", "--connections", "launches")
    assert done.returncode != 0 and refused(done.stderr, planted), done.stderr
    assert untouched(victim)


def test_a_link_in_a_parent_directory_is_the_users_choice(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real, target_is_directory=True)
    done = record(tmp_path, "-o", "via/c.jsonl", "--stderr-file", "via/err.txt")
    assert done.returncode == 0, done.stderr
    assert load_cassette(real / "c.jsonl").complete and (real / "err.txt").is_file()


def test_a_cassette_is_still_read_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "linked.jsonl").symlink_to(HANDSHAKE)
    assert load_cassette(tmp_path / "linked.jsonl").events


def test_the_cassette_lock_of_a_test_refuses_a_link(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "c.jsonl.lock").symlink_to(victim)
    with pytest.raises(HarnessError, match="refused to write .*c.jsonl.lock: it is a symbolic link"):
        CassetteLock(tmp_path / "c.jsonl", wait=0.0).acquire()
    assert untouched(victim)


@pytest.mark.parametrize("planted", ["c.jsonl", "c.jsonl.tmp", "c.jsonl.partial"])
def test_marking_a_cassette_incomplete_never_writes_through_a_link(tmp_path: Path, victim: Path,
                                                                   planted: str) -> None:
    cassette = tmp_path / "c.jsonl"
    if planted == "c.jsonl":  # a cassette of someone else's, complete: marking it would rewrite it
        victim.write_bytes(HANDSHAKE.read_bytes())
        cassette.symlink_to(victim)
    else:
        cassette.write_bytes(HANDSHAKE.read_bytes())
        (tmp_path / planted).symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(HarnessError, match=f"refused to write .*{planted}"):
        mark_incomplete(cassette, "the test failed")
    assert victim.read_bytes() == before and victim.stat().st_mode & 0o777 == 0o644


def test_the_fakes_report_refuses_a_link(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "r.json.tmp").symlink_to(victim)
    done = fake_with_report(tmp_path, "r.json")
    assert refused(done.stderr, "r.json.tmp"), done.stderr
    assert untouched(victim) and not (tmp_path / "r.json").exists()


def test_a_report_never_replaces_a_linked_path(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "r.json").symlink_to(victim)
    done = fake_with_report(tmp_path, "r.json")
    assert refused(done.stderr, "r.json"), done.stderr
    assert untouched(victim) and (tmp_path / "r.json").is_symlink()
    assert not (tmp_path / "r.json.tmp").exists()


def test_a_fault_variant_refuses_a_link(tmp_path: Path, victim: Path) -> None:
    cassette = load_cassette(HANDSHAKE)
    fault = catalogue(cassette)[0]
    name = variant_filename(cassette, fault)
    (tmp_path / (name + ".partial")).symlink_to(victim)
    with pytest.raises(HarnessError, match="refused to write .*partial: it is a symbolic link"):
        write_variant(cassette, fault, tmp_path, FaultTiming())
    assert untouched(victim)
