"""What `drift rerecord` says about a real upgrade: the shipped file-change cassette (codex
0.163.0) against its re-recording by codex 0.171.0 (tests/data/rerecorded_0.171.0/README.md).

0.171.0 sends `turn/diff/updated` twice where 0.163.0 sent it three times, makes
gpt-6.2-sol the default model and rewrites six model descriptions; the report must name
the missing message where it was, the default by model id, and the descriptions in one line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.drift.compare import compare_cassettes
from harness.drift.rerecord import check_cassette
from harness.drift.rerecord_report import DriftResult, render_markdown, render_text
from harness.format.load import open_cassette
from harness.live.install import RECORD, cache_dir, install

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


def model_list_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("result.data")]


def test_the_default_model_descriptions_and_new_models_are_said_by_model_id():
    [catalogue] = [c for c in changes() if c.label == "result of model/list"]
    result = DriftResult(str(OLD), "changed", "0.163.0", "0.171.0", changes=[catalogue], replay="ok")
    assert model_list_lines(render_text([result])) == [
        "result.data[*].isDefault: true moved from [id=gpt-6.1-sol] to [id=gpt-6.2-sol]",
        "result.data[*].description: changed in 6 entries: id=gpt-5.6-luna, id=gpt-5.6-sol, id=gpt-5.6-terra, "
        "id=gpt-6-astra, id=gpt-6-sol, id=gpt-6.1-sol",
        "result.data: 3 entries added: id=gpt-6.1-terra, id=gpt-6.2-astra, id=gpt-6.2-sol",
    ]  # not `isDefault: true -> false`, a cut-off blob per new model, and a line per description
    # the values stay in the data (the JSON report)
    default = next(f for f in catalogue.fields if f.path == "result.data[*].isDefault")
    assert (default.kind, default.old, default.new) == ("moved", "[id=gpt-6.1-sol]", "[id=gpt-6.2-sol]")
    described = [f for f in catalogue.fields if f.path.endswith(".description")]
    assert ("result.data[id=gpt-6.1-sol].description", "Latest workhorse model for coding and everyday work.",
            "Previous generation model for coding and everyday work.") in [(f.path, f.old, f.new) for f in described]


def test_the_whole_report_keeps_what_is_real_and_drops_the_noise():
    text = render_text([DriftResult(str(OLD), "changed", "0.163.0", "0.171.0", changes=changes(), replay="ok")])
    lines = text.splitlines()
    assert f"  - removed server turn/diff/updated  [old {OLD}:30]" in lines
    assert not [line for line in lines if "..." in line or "isDefault: true -> false" in line]
    assert len(model_list_lines(text)) == 3
    md = render_markdown([DriftResult(str(OLD), "changed", "0.163.0", "0.171.0", changes=changes(), replay="ok")])
    assert "`result.data[*].isDefault: true moved from [id=gpt-6.1-sol] to [id=gpt-6.2-sol]`" in md


def test_only_a_flag_true_in_exactly_one_entry_of_each_side_is_a_mark():
    from harness.drift.compare import field_changes

    def models(default: str, hidden: tuple[str, ...]) -> dict:
        return {"data": [{"id": i, "isDefault": i == default, "hidden": i in hidden} for i in ("a", "b", "c")]}

    got = [(f.path, f.kind, f.old, f.new) for f in field_changes(models("a", ("b", "c")), models("b", ("c",)))]
    assert got == [("data[*].isDefault", "moved", "[id=a]", "[id=b]"),     # one true each side: which one
                   ("data[id=b].hidden", "changed", True, False)]          # two true in the old: per entry


@pytest.mark.live
def test_codex_0_171_0_itself_says_the_same(tmp_path):
    """The fixture's origin, re-run: only where codex 0.171.0 is installed already
    (`codex-cassette codex install 0.171.0`); nothing is fetched here."""
    if not (cache_dir() / "0.171.0" / RECORD).is_file():
        pytest.skip("codex 0.171.0 is not installed (codex-cassette codex install 0.171.0)")
    binary = install("0.171.0").binary
    result = asyncio.run(asyncio.wait_for(check_cassette(OLD, codex_bin=str(binary), out_dir=tmp_path), 300))
    assert result.new_version == "0.171.0"
    gone = [(c.label, c.old_at) for c in result.changes if c.kind == "removed"]
    assert gone == [("turn/diff/updated", f"{OLD}:30")]
    [catalogue] = [c for c in result.changes if c.label == "result of model/list"]
    assert ("result.data[*].isDefault", "moved", "[id=gpt-6.1-sol]", "[id=gpt-6.2-sol]") in \
        [(f.path, f.kind, f.old, f.new) for f in catalogue.fields]


def test_the_same_change_in_several_named_entries_is_one_line():
    from harness.drift.compare import FieldChange
    from harness.drift.rerecord_report import summarise

    fields = [FieldChange("result.turns[id=t1].items[id=a].startedAtMs", "added", None, "<int>"),
              FieldChange("result.turns[id=t1].items[id=b].startedAtMs", "added", None, "<int>"),
              FieldChange("result.turns[id=t1].items[id=b].moderation", "added", None, None)]
    assert [(f.path, f.kind, f.new, f.entries) for f in summarise(fields)] == [
        ("result.turns[*].items[*].startedAtMs", "added", "<int>", []),
        ("result.turns[id=t1].items[id=b].moderation", "added", None, []),
    ]
