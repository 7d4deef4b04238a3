"""The commands that start the fake as a process: an argv, or a `codex` executable on PATH.

Both are warm (fake_server/_launch.py through a fork server, see
fake_server.forkserver) when this process runs a fork server, else cold (a
fresh interpreter that imports the engine itself). Either way the process the
client starts is the one whose pid the reports carry and whose signals count.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fake_server.forkserver import launcher_argv
from fake_server.paths import BOOT, LAUNCH, LAUNCH_MAIN, MARKER, SITE_DIRS, SOURCE_ROOT
from harness.record.exec_script import ExecScript, write_executable
from harness.replay.matching import DEFAULT_ORDER

if TYPE_CHECKING:
    from harness.replay.options import ReplayOptions


@dataclass
class FakeCodexCommand:
    """The command line that starts the fake serving one cassette."""

    cassette: Path
    report: Path | None = None
    timeout: float | None = None
    pace: str | None = None
    bindings: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    connections: Path | None = None  # a launch counter: launch k serves connection k's cassette

    @classmethod
    def from_options(cls, cassette: Path, options: "ReplayOptions", report: Path | None = None,
                     connections: Path | None = None) -> "FakeCodexCommand":
        """The command line that replays with these options (all but in-process ones: scrub)."""
        extra = [] if options.strict else ["--allow-unplayed"]
        extra += [f"--ignore={path}" for path in options.ignore]
        if tuple(options.match_on) != DEFAULT_ORDER:
            extra.append("--match-on=" + ",".join(options.matchers.portable(name) for name in options.match_on))
        if options.pace_scale != 1.0:
            extra.append(f"--pace-scale={options.pace_scale:g}")
        extra.append(f"--linger={options.linger:g}")
        return cls(cassette=cassette, report=report, timeout=options.timeout, pace=options.pace,
                   bindings=dict(options.bindings), extra=extra, connections=connections)

    def argv(self, *codex_args: str) -> list[str]:
        """The warm launcher's command when this process runs a fork server, else the cold one."""
        args = self.fake_args(*codex_args)
        return launcher_argv(args) or self.cold_argv(*codex_args)

    def cold_argv(self, *codex_args: str) -> list[str]:
        """A fresh interpreter that imports the engine itself (no fork server involved)."""
        return [sys.executable, "-S", BOOT, SITE_DIRS, *self.fake_args(*codex_args)]

    def fake_args(self, *codex_args: str) -> list[str]:
        """The arguments of fake_server.__main__.main."""
        args = ["--cassette", str(self.cassette)]
        if self.report is not None:
            args += ["--report", str(self.report)]
        if self.timeout is not None:
            args += ["--timeout", str(self.timeout)]
        if self.pace is not None:
            args += ["--pace", self.pace]
        for name, value in self.bindings.items():
            args += ["--bind", f"{name}={value}"]
        if self.connections is not None:
            args += ["--connections", str(self.connections)]
        return args + self.extra + list(codex_args or ("app-server",))

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        return env


# Linux reads at most this much of a #! line (older kernels; newer ones read 256).
_SHEBANG_MAX = 127


def write_bin_dir(directory: str | Path, command: FakeCodexCommand) -> Path:
    """A directory with an executable `codex` that starts the fake; put it first on PATH."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    warm = launcher_argv(command.fake_args()[:-1])  # everything but the default "app-server"
    if warm is not None:
        write_launcher(directory / "codex", warm[4:], "serving one cassette through a fork server")
    else:
        _write_sh(directory / "codex", command.cold_argv()[:-1], "serving one cassette")
    return directory


def write_launcher(exe: Path, fixed: list[str], what: str) -> None:
    """An executable `codex` that is the warm launcher with ``fixed`` (socket, site dirs,
    fake arguments) built in; codex's own arguments pass through."""
    shebang = f"#!{sys.executable} -SI"
    if len(shebang) <= _SHEBANG_MAX and not any(c.isspace() for c in sys.executable):
        # The launcher itself, with its arguments built in: no sh to start first.
        write_executable(exe,
            f"{shebang}\n"
            f"# {MARKER}: a fake codex {what}; codex's own arguments pass through.\n"
            "import sys\n"
            f"sys.path[0:0] = [{os.path.dirname(LAUNCH)!r}]\n"
            "import _launch\n"
            f"_launch.main([*{fixed!r}, *sys.argv[1:]], _launch.BOOT)\n")
    else:
        _write_sh(exe, [sys.executable, "-S", "-I", LAUNCH_MAIN, *fixed], what)


def _write_sh(exe: Path, command: list[str], what: str) -> None:
    ExecScript(command=command, prepend={"PYTHONPATH": SOURCE_ROOT},
               comment=f"{MARKER}: a fake codex {what}; codex's own arguments pass through.").write(exe)
