"""A `codex` executable for a client to run: a /bin/sh script that sets up the environment
and execs a command with the client's own arguments appended.

The fake's bin dir (fake_server.commands.write_bin_dir, its cold form) and the recording
`codex` of the pytest fixture (harness.pytest.servers) are both written by it, so a
client finds either the same way: first on PATH, as `$CODEX_BIN`, or launched by path.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.format.safe_files import open_private


@dataclass
class ExecScript:
    """What the script does, in order: unset, set, prepend, then exec ``command "$@"`` (or,
    when ``when`` is given and no argument is that word, ``otherwise "$@"``)."""

    command: list[str]
    comment: str
    unset: tuple[str, ...] = ()
    setenv: dict[str, str] = field(default_factory=dict)
    # PATH-like variables: this entry goes first, what the client gave stays after it
    prepend: dict[str, str] = field(default_factory=dict)
    when: str | None = None            # e.g. "app-server": only such a launch runs ``command``
    otherwise: list[str] | None = None  # codex's other subcommands (--version, generate-json-schema)

    def text(self) -> str:
        lines = ["#!/bin/sh", f"# {self.comment}"]
        if self.unset:
            lines.append("unset " + " ".join(self.unset))
        for name, value in self.setenv.items():
            lines += [f"{name}={shlex.quote(value)}", f"export {name}"]
        for name, value in self.prepend.items():
            lines += [f"{name}={shlex.quote(value)}${{{name}:+:${name}}}", f"export {name}"]
        run = f'exec {shlex.join(self.command)} "$@"'
        if self.when is None or self.otherwise is None:
            return "\n".join([*lines, run]) + "\n"
        return "\n".join([*lines,
                          "for arg do",
                          f"  if [ \"$arg\" = {shlex.quote(self.when)} ]; then",
                          f"    {run}",
                          "  fi",
                          "done",
                          f'exec {shlex.join(self.otherwise)} "$@"']) + "\n"

    def write(self, exe: str | Path) -> Path:
        """Write it (executable) at ``exe``, its directory made if need be."""
        exe = Path(exe)
        exe.parent.mkdir(parents=True, exist_ok=True)
        write_executable(exe, self.text())
        return exe


def write_executable(exe: Path, text: str) -> None:
    """An executable of ours (0700), never written through a link planted where it goes
    (harness.format.safe_files)."""
    with open_private(exe) as out:
        out.write(text.encode())
        os.fchmod(out.fileno(), 0o700)
