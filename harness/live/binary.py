"""Finding the codex binary to run, and asking it its version.

Codex ships two ways: the PyPI package `openai-codex-cli-bin` (the binary inside the
Python package) and the npm package `@openai/codex`, whose `bin/codex.js` launcher runs
the native binary of a platform package (`@openai/codex-linux-x64`, itself a version of
`@openai/codex` such as `0.169.0-linux-x64`) from `vendor/<target-triple>/bin/codex`.
The launcher is found through `node_modules` or PATH and resolved to that binary, so
codex runs without node in between.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from harness.errors import HarnessError
from harness.format.codex_version import find_codex_version

PINNED_PACKAGE = "openai-codex-cli-bin"
PINNED_VERSION = "0.163.0"
NPM_PACKAGE = "@openai/codex"
# (system, machine) -> Rust target triple, as the npm launcher maps them; triple -> platform package suffix
TRIPLES = {
    ("linux", "x86_64"): "x86_64-unknown-linux-musl", ("linux", "amd64"): "x86_64-unknown-linux-musl",
    ("linux", "aarch64"): "aarch64-unknown-linux-musl", ("linux", "arm64"): "aarch64-unknown-linux-musl",
    ("darwin", "x86_64"): "x86_64-apple-darwin", ("darwin", "arm64"): "aarch64-apple-darwin",
    ("windows", "amd64"): "x86_64-pc-windows-msvc", ("windows", "arm64"): "aarch64-pc-windows-msvc",
}
PLATFORMS = {
    "x86_64-unknown-linux-musl": "linux-x64", "aarch64-unknown-linux-musl": "linux-arm64",
    "x86_64-apple-darwin": "darwin-x64", "aarch64-apple-darwin": "darwin-arm64",
    "x86_64-pc-windows-msvc": "win32-x64", "aarch64-pc-windows-msvc": "win32-arm64",
}


class CodexBinaryError(HarnessError):
    """No usable codex binary, or one that does not behave like codex."""


# What --codex-bin defaults to, for every command's help (find_codex_binary's order).
CODEX_BIN_METAVAR = "CODEX_BIN"  # every --codex-bin shows this one name
CODEX_BIN_HELP = ("codex binary (default: $CODEX_BIN, the pinned openai-codex-cli-bin, the npm package "
                  "in ./node_modules, then codex on PATH)")


def find_codex_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The codex binary to run, looked for in this order: an explicit path
    (`--codex-bin`), `$CODEX_BIN`, the pinned `openai-codex-cli-bin` package,
    the npm package in `./node_modules`, then `codex` on PATH. An npm launcher
    (`codex.js`, or a link to it) stands for its platform binary."""
    tried: list[str] = []
    if explicit:
        return native_binary(_must_be_executable(Path(explicit), "--codex-bin"))
    env = os.environ.get("CODEX_BIN")
    if env:
        return native_binary(_must_be_executable(Path(env), "$CODEX_BIN"))
    tried.append("$CODEX_BIN (unset)")
    bundled = bundled_binary()
    if bundled is not None:
        return bundled
    tried.append(f"the {PINNED_PACKAGE} package (not installed)")
    local = npm_platform_binary(Path.cwd() / "node_modules" / NPM_PACKAGE)
    if local is not None:
        return local
    tried.append(f"./node_modules/{NPM_PACKAGE} (not installed)")
    on_path = shutil.which("codex")
    if on_path:
        return native_binary(Path(on_path))
    tried.append("`codex` on PATH (not found)")
    raise CodexBinaryError(
        "No codex binary found. Looked at " + ", ".join(tried) + ". Install the pinned one with "
        f"`pip install {PINNED_PACKAGE}=={PINNED_VERSION}` (or `pip install codex-cassette[live]`), "
        "or point --codex-bin or $CODEX_BIN at a codex executable."
    )


def target_triple() -> str | None:
    """This machine's target triple as the npm package names its vendor directory."""
    return TRIPLES.get((platform.system().lower(), platform.machine().lower()))


def npm_platform_binary(package_dir: Path, triple: str | None = None) -> Path | None:
    """The native binary an installed `@openai/codex` runs: in its own `vendor/` (a platform
    package), in its nested `node_modules`, or in the platform package beside it."""
    triple = triple or target_triple()
    if triple is None:
        return None
    exe = "codex.exe" if triple.endswith("msvc") else "codex"
    platform_pkg = f"codex-{PLATFORMS[triple]}"
    for vendor in (package_dir / "vendor",
                   package_dir / "node_modules" / "@openai" / platform_pkg / "vendor",
                   package_dir.parent / platform_pkg / "vendor"):
        candidate = vendor / triple / "bin" / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def native_binary(path: Path) -> Path:
    """`path`, or the platform binary when it is (a link to) the npm launcher `bin/codex.js`."""
    real = path.resolve()
    if real.name == "codex.js" and real.parent.name == "bin":
        found = npm_platform_binary(real.parent.parent)
        if found is not None:
            return found
    return path


def bundled_binary() -> Path | None:
    try:
        import codex_cli_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        path = Path(codex_cli_bin.bundled_codex_path())
    except OSError:  # the package exists but lacks its binary (another platform's wheel)
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _must_be_executable(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise CodexBinaryError(f"The codex binary given by {origin} ({path}) does not exist or is not a file.")
    if not os.access(path, os.X_OK):
        raise CodexBinaryError(f"The codex binary given by {origin} ({path}) is not executable.")
    return path


def parse_codex_version(text: str, binary: str | os.PathLike[str] = "codex") -> str:
    """`codex-cli 0.163.0` -> `0.163.0`."""
    version = find_codex_version(text)
    if version is None:
        raise CodexBinaryError(f"Cannot read a version from `{os.fspath(binary)} --version`: it printed "
                               f"{text.strip()[:200]!r}, not `codex-cli X.Y.Z`; is it a codex binary?")
    return version


def run_codex(binary: str | os.PathLike[str], args: list[str], *, timeout: float,
              env: dict[str, str] | None = None) -> str:
    """Run `binary ARGS` to completion (stdin closed, waited for at most `timeout` s) and return
    its stdout; each way it can fail is a CodexBinaryError naming the command."""
    argv = [os.fspath(binary), *args]
    shown = " ".join(argv)
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CodexBinaryError(f"`{shown}` did not finish within {timeout:g} s.") from None
    except FileNotFoundError:
        raise CodexBinaryError(f"Cannot run `{shown}`: no such file. Point --codex-bin or $CODEX_BIN "
                               "at a codex executable.") from None
    except OSError as exc:
        raise CodexBinaryError(f"Cannot run `{shown}`: {exc.strerror or exc}.") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-300:]
        raise CodexBinaryError(f"`{shown}` exited with code {proc.returncode}: {tail!r}")
    return proc.stdout


def codex_version(path: str | os.PathLike[str], timeout: float = 20.0, env: dict[str, str] | None = None) -> str:
    """Run `codex --version` and return the bare version, e.g. "0.163.0"."""
    return parse_codex_version(run_codex(path, ["--version"], timeout=timeout, env=env), path)
