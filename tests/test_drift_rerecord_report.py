"""What `drift rerecord` says about a real upgrade: the shipped file-change cassette (codex
0.163.0) against its re-recording by codex 0.171.0 (tests/data/rerecorded_0.171.0/README.md).

0.171.0 sends `turn/diff/updated` twice where 0.163.0 sent it three times, makes
gpt-6.2-sol the default model and rewrites six model descriptions; the report must name
the missing message where it was, the default by model id, and the descriptions in one line.
"""

from __future__ import annotations

from pathlib import Path

from harness.drift.compare import compare_cassettes
from harness.drift.rerecord_report import DriftResult, render_markdown, render_text
from harness.format.load import open_cassette

ROOT = Path(__file__).resolve().parent.parent
OLD = ROOT / "cassettes" / "optio" / "file_change_approval.jsonl"
NEW = ROOT / "tests" / "data" / "rerecorded_0.171.0" / "file_change_approval.jsonl"


def changes():
    return compare_cassettes(open_cassette(OLD), open_cassette(NEW))


def test_the_missing_turn_diff_is_the_one_between_the_two_model_calls():
    gone = [c for c in changes() if c.kind == "removed"]
    # lines 27, 30 and 38 of the old cassette; the new one has the first and the last
    assert [(c.label, c.old_at) for c in gone] == [("turn/diff/updated", f"{OLD}:30")]
    assert not [c for c in changes() if c.kind in ("added", "moved")]
