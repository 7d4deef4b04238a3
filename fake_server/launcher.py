"""Ways to launch the fake as a process: an argv, or a `codex` executable on PATH."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.matching import DEFAULT_ORDER

if TYPE_CHECKING:
    from harness.replay import ReplayOptions

# The directory that holds the fake_server and harness packages, so a launched
# fake finds them even when they are not installed (a source checkout).
SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)
BOOT = str(Path(__file__).resolve().parent / "_boot.py")
# Where this interpreter finds installed packages; the fake runs with -S and is told.
SITE_DIRS = os.pathsep.join(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))


@dataclass
class FakeCodexCommand:
    """The command line that starts the fake serving one cassette."""

    cassette: Path
    report: Path | None = None
    timeout: float | None = None
    pace: str | None = None
    bindings: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    @classmethod
    def from_options(cls, cassette: Path, options: "ReplayOptions", report: Path | None = None) -> "FakeCodexCommand":
        """The command line that replays with these options (all but in-process ones: scrub)."""
        extra = [] if options.strict else ["--allow-unplayed"]
        extra += [f"--ignore={path}" for path in options.ignore]
        if tuple(options.match_on) != DEFAULT_ORDER:
            extra.append("--match-on=" + ",".join(options.match_on))
        if options.pace_scale != 1.0:
            extra.append(f"--pace-scale={options.pace_scale:g}")
        extra.append(f"--linger={options.linger:g}")
        return cls(cassette=cassette, report=report, timeout=options.timeout, pace=options.pace,
                   bindings=dict(options.bindings), extra=extra)

    def argv(self, *codex_args: str) -> list[str]:
        args = [sys.executable, "-S", BOOT, SITE_DIRS, "--cassette", str(self.cassette)]
        if self.report is not None:
            args += ["--report", str(self.report)]
        if self.timeout is not None:
            args += ["--timeout", str(self.timeout)]
        if self.pace is not None:
            args += ["--pace", self.pace]
        for name, value in self.bindings.items():
            args += ["--bind", f"{name}={value}"]
        return args + self.extra + list(codex_args or ("app-server",))

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        return env


def write_bin_dir(directory: str | Path, command: FakeCodexCommand) -> Path:
    """A directory with an executable `codex` that starts the fake; put it first on PATH."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "codex"
    fixed = shlex.join(command.argv()[:-1])  # everything but the default "app-server"
    exe.write_text(
        "#!/bin/sh\n"
        "# codex-cassette: a fake codex serving one cassette; codex's own arguments pass through.\n"
        f"PYTHONPATH={shlex.quote(SOURCE_ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {fixed} "$@"\n'
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return directory
