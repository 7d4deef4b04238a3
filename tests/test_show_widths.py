"""The text timeline keeps its divider in one terminal column when a message holds wide
characters (CJK, emoji: two cells each), whatever the rows hold."""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

from harness.format.load import open_cassette
from harness.show import render

ROOT = Path(__file__).resolve().parent.parent
WIDE = "漢字テスト😀🎉"


def cells(text: str) -> int:
    """Terminal cells by Unicode's East Asian Width (an oracle independent of the renderer's)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def test_the_divider_stays_in_one_column_with_wide_characters(tmp_path: Path):
    lines = (ROOT / "cassettes" / "optio" / "text_turn.jsonl").read_text().splitlines()
    out = [lines[0]]
    for raw in lines[1:]:
        event = json.loads(raw)
        msg = event.get("msg")
        if isinstance(msg, dict) and msg.get("method") == "turn/start":
            msg["params"]["input"] = [{"type": "text", "text": WIDE * 12}]  # wraps over three rows
        if isinstance(msg, dict) and msg.get("method") == "initialize":
            msg["method"] = "initialize" + WIDE
        out.append(json.dumps(event, ensure_ascii=False))
    path = tmp_path / "wide.jsonl"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    buf = io.StringIO()
    render(open_cassette(path), buf, width=100)
    rows = [line for line in buf.getvalue().splitlines() if "│" in line]
    assert any(WIDE in line for line in rows) and any("漢字" in line and "turn/start" in line for line in rows)
    columns = {cells(line.split("│")[0]) for line in rows}
    assert len(columns) == 1, sorted(columns)
