"""Finding the codex binary to run, and asking it its version."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.errors import HarnessError
from harness.format.codex_version import find_codex_version

PINNED_PACKAGE = "openai-codex-cli-bin"
PINNED_VERSION = "0.163.0"


class CodexBinaryError(HarnessError):
    """No usable codex binary, or one that does not behave like codex."""


def find_codex_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The codex binary to run, looked for in this order: an explicit path
    (`--codex-bin`), `$CODEX_BIN`, the pinned `openai-codex-cli-bin` package,
    then `codex` on PATH."""
    tried: list[str] = []
    if explicit:
        return _must_be_executable(Path(explicit), "--codex-bin")
    env = os.environ.get("CODEX_BIN")
    if env:
        return _must_be_executable(Path(env), "$CODEX_BIN")
    tried.append("$CODEX_BIN (unset)")
    bundled = _bundled_binary()
    if bundled is not None:
        return bundled
    tried.append(f"the {PINNED_PACKAGE} package (not installed)")
    on_path = shutil.which("codex")
    if on_path:
        return Path(on_path)
    tried.append("`codex` on PATH (not found)")
    raise CodexBinaryError(
        "No codex binary found. Looked at " + ", ".join(tried) + ". Install the pinned one with "
        f"`pip install {PINNED_PACKAGE}=={PINNED_VERSION}` (or `pip install codex-cassette[live]`), "
        "or point --codex-bin or $CODEX_BIN at a codex executable."
    )


def _bundled_binary() -> Path | None:
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


def parse_codex_version(text: str) -> str:
    """`codex-cli 0.163.0` -> `0.163.0`."""
    version = find_codex_version(text)
    if version is None:
        raise CodexBinaryError(f"Cannot read a version from `codex --version` output {text.strip()[:200]!r}.")
    return version


def codex_version(path: str | os.PathLike[str], timeout: float = 20.0) -> str:
    """Run `codex --version` and return the bare version, e.g. "0.163.0"."""
    try:
        proc = subprocess.run(
            [os.fspath(path), "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise CodexBinaryError(f"`{path} --version` did not answer within {timeout:g} s.") from None
    except OSError as exc:
        raise CodexBinaryError(f"Cannot run `{path} --version`: {exc.strerror or exc}.") from None
    if proc.returncode != 0:
        raise CodexBinaryError(
            f"`{path} --version` exited with code {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:300]}"
        )
    return parse_codex_version(proc.stdout)
