"""`codex-cassette show --html`: a cassette as one self-contained HTML page, and the page a
failed replay leaves for CI (the same view with the divergence on top).

Rendered with Jinja2 with autoescaping on: a cassette is hostile input (any string a peer
sent), and escaping by default is what makes a template safe where hand-built strings
forget one spot. The page needs no network (CSS inline, no script): each event is a
``<details>`` that opens to its JSON, each row carries its cassette line as an anchor
(``#L12``), placeholders and redaction markers are styled as what they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from harness.errors import HarnessError, UsageError
from harness.format.cassette import Cassette, Event
from harness.format.load import open_cassette
from harness.format.safe_files import write_atomically
from harness.replay.report import ReplayReport
from harness.safe_text import printable
from harness.show import render, rows

MARKER_RE = re.compile(r"\{\{(redacted:)?([A-Za-z0-9_.:-]{1,80})\}\}")
JSON_LIMIT = 64 * 1024  # characters of one event's JSON shown in the page
CLASSES = {"?": "approval", "✋": "interrupt", "!": "error", "■": "end", "✓": "accept", "✗": "decline", "…": "fold"}

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{{ title }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1em;color:#222}
h1{font-size:1.2em} .meta{color:#555}
.divergence{border:2px solid #c00;background:#fff3f3;padding:.5em 1em;margin:1em 0}
.divergence pre{white-space:pre-wrap}
.timeline{display:grid;grid-template-columns:4em 6em 1fr 1fr;border-top:1px solid #ccc}
.head{font-weight:bold;background:#eee;padding:.3em}
.row{display:contents}
.row>div{padding:.2em .4em;border-bottom:1px solid #eee}
.line a{color:#888;text-decoration:none} .t{color:#888;text-align:right}
.client .msg{background:#eef5ff} .server .msg{background:#f1fbef}
.row.approval .msg{border-left:4px solid #e6a700} .row.interrupt .msg{border-left:4px solid #a0f}
.row.error .msg{border-left:4px solid #c00} .row.end .msg{border-left:4px solid #555;font-style:italic}
.row.fault .msg{border-left:4px dashed #c00} .row.diverged>div{background:#ffd6d6}
.mark{font-weight:bold;margin-right:.3em}
.ph{background:#fff2b3;border-radius:3px;padding:0 2px} .red{background:#222;color:#fff;border-radius:3px;padding:0 2px}
details pre{white-space:pre-wrap;word-break:break-all;background:#fafafa;padding:.4em;margin:.2em 0}
:target>div{outline:2px solid #06c}
</style></head><body>
<h1>{{ title }}</h1>
<p class="meta">codex {{ codex }} · client {{ client }} · recorded {{ recorded }} · {{ complete }} ·
{{ counts.client }} event(s) from the client, {{ counts.server }} from the server</p>
{% if report %}<section class="divergence" id="divergence">
<h2>replay {{ report.status }}: {{ report.matched }} peer message(s) matched, {{ report.played }} of {{ report.total }} event(s) played</h2>
{% if div %}<p class="message">{{ div.message | markers }}</p>
{% if div_line %}<p>expected at <a class="expected-at" href="#L{{ div_line }}">{{ div.expected_at }}</a></p>{% endif %}
{% if div.diff %}<h3>structural diff (recorded → live)</h3><pre class="diff">{{ div.diff | markers }}</pre>{% endif %}
{% if expected %}<h3>nearest candidate (expected)</h3><pre class="expected">{{ expected | markers }}</pre>{% endif %}
{% if received %}<h3>received</h3><pre class="received">{{ received | markers }}</pre>{% endif %}
{% endif %}{% if report.unplayed %}<h3>{{ report.unplayed | length }} event(s) never played</h3><ul class="unplayed">
{% for u in report.unplayed[:20] %}<li>{{ u.at }}: {{ u.event }}</li>{% endfor %}</ul>{% endif %}
</section>{% endif %}
<div class="timeline">
<div class="head">line</div><div class="head">t (s)</div><div class="head">client</div><div class="head">server</div>
{% for r in rows %}<div class="row {{ r.side }} {{ r.classes }}" id="L{{ r.line }}">
<div class="line"><a href="#L{{ r.line }}">{{ r.line }}</a></div><div class="t">{{ "%.3f" | format(r.t) }}</div>
{% if r.side == "server" %}<div class="gap"></div>{% endif %}<div class="msg"><details><summary><span class="mark">{{ r.mark }}</span>{{ r.text | markers }}</summary>
<pre>{{ r.json | markers }}</pre></details></div>{% if r.side != "server" %}<div class="gap"></div>{% endif %}</div>
{% endfor %}</div>
</body></html>
"""


@dataclass
class PageRow:
    line: int
    t: float
    side: str
    text: str
    mark: str
    classes: str
    json: str


def _markers(text: Any) -> Markup:
    """Escaped text with ``{{placeholder}}`` and ``{{redacted:KIND}}`` shown as what they are."""
    def styled(m: re.Match[str]) -> str:
        return f'<span class="{"red" if m.group(1) else "ph"}">{m.group(0)}</span>'
    return Markup(MARKER_RE.sub(styled, str(escape(printable(str(text), keep="\n")))))


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ENV.filters["markers"] = _markers
_PAGE = _ENV.from_string(TEMPLATE)


def _event_json(event: Event) -> str:
    text = json.dumps(event.to_json(), ensure_ascii=False, indent=2, default=str)
    return text if len(text) <= JSON_LIMIT else text[:JSON_LIMIT] + f"\n... {len(text) - JSON_LIMIT} characters more"


def page_rows(cassette: Cassette, diverged_line: int | None = None) -> list[PageRow]:
    by_line = {e.line: e for e in cassette.events}
    out = []
    for row in rows(cassette):
        event = by_line.get(row.line)
        classes = [CLASSES.get(row.mark, "")]
        if event is not None and event.fault is not None:
            classes.append("fault")
        if diverged_line is not None and row.line == diverged_line:
            classes.append("diverged")
        out.append(PageRow(row.line, row.t, row.side, row.text, row.mark.strip(), " ".join(c for c in classes if c),
                           _event_json(event) if event is not None else ""))
    return out


def _line_of(where: str | None) -> int | None:
    match = re.search(r":(\d+)$", where or "")
    return int(match.group(1)) if match else None


def divergence_line(report: ReplayReport) -> int | None:
    """The cassette line a failed replay points at: where the divergence expected something,
    else the first event never played."""
    div = report.divergence
    line = _line_of(div.expected_at) if div else None
    if line is None and report.unplayed:
        line = _line_of(str(report.unplayed[0].get("at")))
    return line


def render_page(cassette: Cassette, report: ReplayReport | None = None) -> str:
    meta = cassette.meta
    client = meta.get("client") if isinstance(meta.get("client"), dict) else {}
    div = report.divergence if report else None
    div_line = divergence_line(report) if report else None
    pretty = (lambda v: json.dumps(v, ensure_ascii=False, indent=2, default=str) if v is not None else "")
    return _PAGE.render(
        title=f"{cassette.path}", codex=str(meta.get("codex_version", "?")),
        client=f"{client.get('name', '?')} {client.get('version', '')}".strip(),
        recorded=str(meta.get("recorded_at", "?")), complete="complete" if cassette.complete else "INCOMPLETE",
        counts={s: sum(1 for e in cassette.events if e.side == s) for s in ("client", "server")},
        rows=page_rows(cassette, div_line), report=report, div=div, div_line=div_line,
        expected=pretty(div.expected) if div else "", received=pretty(div.received) if div else "")


def write_page(cassette: Cassette, out: str | Path, report: ReplayReport | None = None) -> Path:
    """The page, written through the safe writer (never through a planted link)."""
    try:
        write_atomically(out, render_page(cassette, report).encode("utf-8"))
    except HarnessError:
        raise
    except OSError as exc:
        raise HarnessError(f"cannot write the page {out}: {exc.strerror or exc}") from None
    return Path(out)




# The `show` command lives here, above both of its views (the layers: show_html imports show).
def cli_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a cassette as a conversation timeline",
                       description="Print a cassette (or YAML scenario) as a two-column timeline: client left, "
                                   "server right; ? approval requests, ✓/✗ decisions, ✋ interrupts, ! errors, "
                                   "… folded runs of deltas, ■ end of stream or process exit.")
    p.add_argument("cassettes", nargs="+", metavar="PATH", help="cassettes (.jsonl) or YAML scenarios (.yaml)")
    p.add_argument("--width", type=int, default=None, help="output width (default: the terminal's)")
    p.add_argument("--no-fold", action="store_true", help="one row per delta notification")
    p.add_argument("--html", action="store_true",
                   help="write one self-contained HTML page instead (needs -o; one PATH): each event opens "
                        "to its JSON, cassette lines are anchors (#L12)")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="where --html writes its page")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.html or args.output:
        if not (args.html and args.output and len(args.cassettes) == 1):
            raise UsageError("show --html takes one PATH and -o FILE.html (and -o only goes with --html)")
        print(write_page(open_cassette(args.cassettes[0]), args.output))
        return 0
    for n, path in enumerate(args.cassettes):
        if n:
            sys.stdout.write("\n")
        render(open_cassette(path), sys.stdout, args.width, fold=not args.no_fold)
    sys.stdout.flush()
    return 0
