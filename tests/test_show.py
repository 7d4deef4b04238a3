"""`codex-cassette show`: the timeline of shipped cassettes and scenarios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "harness", "show", "--width", "160"]


def show(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_an_interrupted_turn_reads_as_a_conversation() -> None:
    done = show(str(ROOT / "cassettes" / "optio" / "interrupt.jsonl"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "codex 0.163.0" in lines[0] and "client optio_codex 0.1.0" in lines[0] and "complete" in lines[0]
    interrupt = next(line for line in lines if "turn/interrupt" in line)
    assert "✋" in interrupt and interrupt.index("turn/interrupt") < interrupt.index("│")  # client column
    assert any("turn/completed status=interrupted" in line and line.index("│") < line.index("turn/completed")
               for line in lines)
    assert any("modelProvider=mock" in line for line in lines)
    assert lines[-1].startswith(f"{sum(1 for _ in open(ROOT / 'cassettes/optio/interrupt.jsonl')) - 1} events")


def test_deltas_fold_unless_asked_not_to(tmp_path: Path) -> None:
    path = ROOT / "cassettes" / "optio" / "text_turn.jsonl"
    folded, unfolded = show(str(path)).stdout, show("--no-fold", str(path)).stdout
    assert "item/agentMessage/delta ×" in folded
    assert "×" not in unfolded and unfolded.count("item/agentMessage/delta") > 1


def test_scenarios_faults_and_several_files() -> None:
    scenarios = ROOT / "tests" / "scenarios"
    done = show(str(scenarios / "garbage_line.yaml"), str(scenarios / "server_dies.yaml"))
    assert done.returncode == 0, done.stderr
    assert "non-JSON line" in done.stdout
    assert "process exits: 1" in done.stdout
    assert done.stdout.count(" events: ") == 2


def test_a_broken_cassette_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"codex_cassette": 1, "meta": {}}\n{"i": 1, "from": "nobody", "msg": {}}\n')
    done = show(str(bad))
    assert done.returncode == 2
    assert f"{bad}:2" in done.stderr and "nobody" in done.stderr
    assert "Traceback" not in done.stderr
