"""The output formats every reporting command offers (`drift schema`, `drift coverage`,
`drift rerecord`, `faults`): one tuple, one order, one help text."""

from __future__ import annotations

FORMATS = ("text", "json", "markdown")
FORMAT_HELP = ("text (default): for a terminal; json: for a program; markdown: for a CI job summary "
               "(written there too when $GITHUB_STEP_SUMMARY is set)")
