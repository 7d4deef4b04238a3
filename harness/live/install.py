"""`codex-cassette codex install VERSION [--dir DIR]`: one codex version, into a cache.

PyPI first (`openai-codex-cli-bin`, through pip), else the npm registry's platform
package (`@openai/codex@VERSION-linux-x64`, through `npm pack`): newer versions reach npm
before PyPI. Only the registries' own clients talk to the network; what they fetch is
unpacked here into ``DIR/VERSION`` (default: ``$CODEX_CASSETTE_CACHE`` or
``~/.cache/codex-cassette/codex``), checked with ``codex --version``, and the binary's
path is printed alone on stdout, so ``B=$(codex-cassette codex install 0.169.0)`` works.
A second call finds it in the cache and fetches nothing; a version that is installed as
this environment's `openai-codex-cli-bin` (the pinned one) is used where it is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Callable

from harness.format.pins import PIN_PACKAGE, pinned_version, recorded_version
from harness.errors import HarnessError
from harness.live.binary import (NPM_PACKAGE, PINNED_PACKAGE, PLATFORMS, bundled_binary, codex_version,
                                 target_triple)

RECORD = "install.json"
FETCH_TIMEOUT_S = 900.0  # a codex release is 130-170 MB
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$")


class InstallError(HarnessError):
    """A codex version that could not be fetched or does not run."""


@dataclass
class Installed:
    version: str
    binary: Path
    source: str          # pypi | npm | installed


def cache_dir() -> Path:
    base = os.environ.get("CODEX_CASSETTE_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "codex-cassette" / "codex"


def install(version: str, root: str | Path | None = None, *,
            log: Callable[[str], None] = lambda _: None) -> Installed:
    if not _VERSION.match(version):
        raise InstallError(f"{version!r} is not a codex version (e.g. 0.169.0)")
    here = _installed_package(version)
    if here is not None:
        log(f"codex {version}: installed here as {PINNED_PACKAGE}")
        return here
    root = Path(root) if root else cache_dir()
    dest = root / version
    cached = _cached(dest, version)
    if cached is not None:
        log(f"codex {version}: already in {dest}")
        return cached
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{version}-", dir=root) as tmp:
        staged = Path(tmp) / "staged"
        try:
            rel, source = from_pypi(version, Path(tmp), staged, log), "pypi"
        except InstallError as pypi:
            log(f"codex {version}: not from PyPI ({pypi}); trying npm")
            try:
                rel, source = from_npm(version, Path(tmp), staged, log), "npm"
            except InstallError as npm:
                raise InstallError(f"codex {version} could not be installed: PyPI: {pypi}; npm: {npm}") from None
        found = codex_version(staged / rel)
        if found != version:
            raise InstallError(f"the {source} package of codex {version} holds codex {found}")
        (staged / RECORD).write_text(json.dumps({"version": version, "source": source, "binary": rel}) + "\n")
        if dest.exists():  # a half-written earlier attempt: no record, or a broken one
            shutil.rmtree(dest)
        staged.rename(dest)
    log(f"codex {version}: from {source} into {dest}")
    return Installed(version, dest / rel, source)


def _installed_package(version: str) -> Installed | None:
    try:
        if metadata.version(PINNED_PACKAGE) != version:
            return None
    except metadata.PackageNotFoundError:
        return None
    binary = bundled_binary()
    return Installed(version, binary, "installed") if binary is not None else None


def _cached(dest: Path, version: str) -> Installed | None:
    try:
        record = json.loads((dest / RECORD).read_text())
    except (OSError, ValueError):
        return None
    binary = dest / record.get("binary", "")
    if record.get("version") != version or not binary.is_file() or not os.access(binary, os.X_OK):
        return None
    return Installed(version, binary, record.get("source", "?"))


def _run(argv: list[str], what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InstallError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"{what} did not finish within {FETCH_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise InstallError(f"{what} failed: {lines[-1].strip() if lines else f'exit code {proc.returncode}'}")


# -- PyPI --------------------------------------------------------------------------------


def from_pypi(version: str, tmp: Path, staged: Path, log: Callable[[str], None]) -> str:
    """Download the wheel for this platform with pip and unpack it; the binary's relative path."""
    spec = f"{PINNED_PACKAGE}=={version}"
    log(f"codex {version}: pip download {spec}")
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
          "--dest", str(tmp / "pypi"), spec], f"pip download {spec}")
    wheels = sorted((tmp / "pypi").glob("*.whl"))
    if not wheels:
        raise InstallError(f"pip download {spec} gave no wheel")
    return unpack_wheel(wheels[0], staged / "pypi")


def unpack_wheel(wheel: Path, dest: Path) -> str:
    """The wheel's files under dest, executable bits kept; relative path of its codex binary."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            target = _inside(dest, info.filename)
            if target is None or info.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            mode = (info.external_attr >> 16) & 0o777
            if mode or target.parent.name in ("bin", "codex-path"):
                target.chmod((mode or 0o644) | (0o755 if target.parent.name in ("bin", "codex-path") else 0))
    binary = dest / "codex_cli_bin" / "bin" / ("codex.exe" if os.name == "nt" else "codex")
    if not binary.is_file():
        raise InstallError(f"{wheel.name} has no codex_cli_bin/bin/codex")
    return str(Path("pypi") / binary.relative_to(dest))


# -- npm ---------------------------------------------------------------------------------


def from_npm(version: str, tmp: Path, staged: Path, log: Callable[[str], None]) -> str:
    """`npm pack` the platform package and unpack its vendor directory; the binary's relative path."""
    triple = target_triple()
    if triple is None:
        raise InstallError("npm ships no codex for this platform")
    spec = f"{NPM_PACKAGE}@{version}-{PLATFORMS[triple]}"
    log(f"codex {version}: npm pack {spec}")
    (tmp / "npm").mkdir()
    _run(["npm", "pack", spec, "--pack-destination", str(tmp / "npm"), "--silent"], f"npm pack {spec}")
    tarballs = sorted((tmp / "npm").glob("*.tgz"))
    if not tarballs:
        raise InstallError(f"npm pack {spec} wrote no tarball")
    binary = unpack_npm_tarball(tarballs[0], staged / "npm", triple)
    return str(Path("npm") / binary.relative_to(staged / "npm"))


def unpack_npm_tarball(tarball: Path, dest: Path, triple: str) -> Path:
    """The platform package's `vendor/<triple>/` under dest/vendor/<triple>/; its codex binary.
    Only regular files and directories inside that tree are written."""
    prefix = PurePosixPath("package", "vendor", triple)
    try:
        with tarfile.open(tarball, "r:gz") as tf:
            for member in tf.getmembers():
                name = PurePosixPath(member.name)
                if not (member.isfile() or member.isdir()) or prefix not in (name, *name.parents):
                    continue
                target = _inside(dest, str(name.relative_to("package")))
                if target is None:
                    continue
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                if src is None:
                    continue
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                target.chmod((member.mode & 0o777) | stat.S_IRUSR | stat.S_IWUSR)
    except (tarfile.TarError, OSError) as exc:
        raise InstallError(f"{tarball.name} cannot be unpacked: {exc}") from None
    binary = dest / "vendor" / triple / "bin" / ("codex.exe" if triple.endswith("msvc") else "codex")
    if not binary.is_file():
        raise InstallError(f"{tarball.name} has no vendor/{triple}/bin/codex")
    return binary


def _inside(root: Path, name: str) -> Path | None:
    """root/name, or None when name would land outside root (absolute, or with '..')."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        return None
    return root.joinpath(*parts)


# -- the command -------------------------------------------------------------------------


def cmd_install(args: argparse.Namespace) -> int:
    done = install(args.version, args.dir, log=lambda text: print(text, file=sys.stderr))
    print(done.binary)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(pinned_version(args.pinned) if args.pinned else recorded_version(args.cassettes))
    return 0


def cli_register(subparsers: argparse._SubParsersAction) -> None:
    codex = subparsers.add_parser("codex", help="codex binaries: install a version into a cache, say which version a project uses")
    csub = codex.add_subparsers(dest="codex_command", metavar="ACTION")
    csub.required = True
    p = csub.add_parser("install", help="fetch a codex version (PyPI, else npm) and print its binary's path",
                        description="Fetch codex VERSION from PyPI (openai-codex-cli-bin) or, when PyPI does "
                                    "not have it, from the npm registry's platform package, with pip or npm; "
                                    "unpack it into DIR/VERSION and print the binary's path.")
    p.add_argument("version", metavar="VERSION", help="e.g. 0.169.0")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="cache directory (default: $CODEX_CASSETTE_CACHE or ~/.cache/codex-cassette/codex)")
    p.set_defaults(func=cmd_install)
    p = csub.add_parser("version", help="print the codex version a project pins or its cassettes were recorded with",
                        description="Print one codex version read from the project: the pin "
                                    f"`{PIN_PACKAGE}==VERSION` of a pyproject.toml (--pinned), or the version "
                                    "most cassettes' headers say they were recorded with (--cassettes; fault "
                                    "variants follow their source). Exit 2, saying why, when there is none.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pinned", metavar="PYPROJECT", help="a pyproject.toml whose dependencies pin codex")
    which.add_argument("--cassettes", metavar="DIR", nargs="+", help="cassettes, or directories of them")
    p.set_defaults(func=cmd_version)
