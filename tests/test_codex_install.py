"""`codex-cassette codex install` and finding the npm package's binary, without the network.

The PyPI path runs the real pip against a wheel built here (PIP_NO_INDEX, PIP_FIND_LINKS);
the npm path runs the real npm against a registry served on 127.0.0.1 from a tarball built
here. The one check that fetches a real codex from the registries is marked `network` and
runs only with CODEX_CASSETTE_NETWORK=1.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.cli import main
from harness.live.binary import PLATFORMS, find_codex_binary, native_binary, npm_platform_binary, target_triple
from harness.live.install import InstallError, install, unpack_npm_tarball

TRIPLE = target_triple()
pytestmark = pytest.mark.skipif(TRIPLE is None, reason="npm ships codex for no such platform")


def fake_codex(version: str) -> bytes:
    return f"#!/bin/sh\necho 'codex-cli {version}'\n".encode()


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644, **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data))


def platform_tarball(path: Path, version: str) -> Path:
    """A platform package as npm serves it: package.json, vendor/<triple>/..., and two members
    that must not be written (a path that climbs out, a link)."""
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "package/package.json", json.dumps({"name": "@openai/codex", "version": version}).encode())
        _add(tf, f"package/vendor/{TRIPLE}/bin/codex", fake_codex(version.split("-")[0]), 0o755)
        _add(tf, f"package/vendor/{TRIPLE}/codex-path/rg", b"#!/bin/sh\n", 0o755)
        _add(tf, f"package/vendor/{TRIPLE}/../../../escaped.txt", b"no")
        _add(tf, f"package/vendor/{TRIPLE}/bin/link", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    return path


def test_npm_tarball_unpacks_only_its_vendor_tree(tmp_path):
    tgz = platform_tarball(tmp_path / "p.tgz", "9.9.1-x")
    binary = unpack_npm_tarball(tgz, tmp_path / "out", TRIPLE)
    assert binary == tmp_path / "out" / "vendor" / TRIPLE / "bin" / "codex"
    assert subprocess.run([binary], capture_output=True, text=True).stdout.strip() == "codex-cli 9.9.1"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["out/vendor/" + TRIPLE + "/bin/codex", "out/vendor/" + TRIPLE + "/codex-path/rg", "p.tgz"]
    with pytest.raises(InstallError, match="has no vendor/"):
        unpack_npm_tarball(tgz, tmp_path / "other", "aarch64-apple-darwin")


def build_wheel(folder: Path, version: str, says: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"openai_codex_cli_bin-{version}-py3-none-any.whl"
    dist = f"openai_codex_cli_bin-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        info = zipfile.ZipInfo("codex_cli_bin/bin/codex")
        info.external_attr = 0o755 << 16
        zf.writestr(info, fake_codex(says))
        zf.writestr("codex_cli_bin/__init__.py", "")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: openai-codex-cli-bin\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return wheel


@pytest.fixture
def offline_pip(tmp_path, monkeypatch) -> Path:
    """pip sees only a local folder of wheels."""
    links = tmp_path / "wheels"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def test_install_from_pypi_into_the_cache(tmp_path, offline_pip, monkeypatch, capsys):
    build_wheel(offline_pip, "9.9.2", says="9.9.2")
    monkeypatch.setenv("CODEX_CASSETTE_CACHE", str(tmp_path / "cache"))
    assert main(["codex", "install", "9.9.2"]) == 0
    out, err = capsys.readouterr()
    binary = tmp_path / "cache" / "9.9.2" / "pypi" / "codex_cli_bin" / "bin" / "codex"
    assert out == f"{binary}\n"
    assert "from pypi" in err
    assert subprocess.run([binary], capture_output=True, text=True).stdout.strip() == "codex-cli 9.9.2"
    # the second time it is in the cache: nothing fetched
    for wheel in offline_pip.iterdir():
        wheel.unlink()
    assert main(["codex", "install", "9.9.2"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{binary}\n" and "already in" in err


def test_a_package_whose_binary_is_another_version_is_refused(tmp_path, offline_pip):
    build_wheel(offline_pip, "9.9.3", says="9.9.4")
    with pytest.raises(InstallError, match="holds codex 9.9.4"):
        install("9.9.3", tmp_path / "cache")
    assert not (tmp_path / "cache" / "9.9.3").exists()


def test_a_bad_version_is_refused_readably(capsys):
    assert main(["codex", "install", "latest; rm -rf /"]) == 2
    assert "is not a codex version" in capsys.readouterr().err


class _Registry(BaseHTTPRequestHandler):
    """Just enough of an npm registry for `npm pack @openai/codex@V-platform`."""

    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        found = self.files.get(self.path.lower())
        if found is None:
            self.send_response(404)
            self.end_headers()
            return
        kind, body = found
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def npm_registry(tmp_path, monkeypatch):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("npm_config_registry", url + "/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    for key in ("npm_config_audit", "npm_config_fund", "npm_config_update_notifier"):
        monkeypatch.setenv(key, "false")

    def publish(version: str) -> None:
        full = f"{version}-{PLATFORMS[TRIPLE]}"
        data = platform_tarball(tmp_path / f"{full}.tgz", full).read_bytes()
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        packument = {"name": "@openai/codex", "dist-tags": {"latest": version}, "versions": {full: {
            "name": "@openai/codex", "version": full,
            "dist": {"tarball": f"{url}/codex-{full}.tgz", "shasum": hashlib.sha1(data).hexdigest(),
                     "integrity": integrity}}}}
        _Registry.files = {"/@openai%2fcodex": ("application/json", json.dumps(packument).encode()),
                           f"/codex-{full}.tgz": ("application/octet-stream", data)}

    yield publish
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_install_falls_back_to_the_npm_platform_tarball(tmp_path, offline_pip, npm_registry, capsys):
    npm_registry("9.9.5")  # pip's local folder is empty: PyPI "does not have it"
    assert main(["codex", "install", "9.9.5", "--dir", str(tmp_path / "cache")]) == 0
    out, err = capsys.readouterr()
    binary = tmp_path / "cache" / "9.9.5" / "npm" / "vendor" / TRIPLE / "bin" / "codex"
    assert out == f"{binary}\n"
    assert "not from PyPI" in err and f"npm pack @openai/codex@9.9.5-{PLATFORMS[TRIPLE]}" in err
    assert json.loads((tmp_path / "cache" / "9.9.5" / "install.json").read_text())["source"] == "npm"
    assert not (tmp_path / "cache" / "escaped.txt").exists()


def test_install_says_what_both_registries_said(tmp_path, offline_pip, npm_registry):
    npm_registry("9.9.5")
    with pytest.raises(InstallError) as exc:
        install("9.9.6", tmp_path / "cache")
    assert "PyPI: pip download openai-codex-cli-bin==9.9.6 failed" in str(exc.value)
    assert "npm: npm pack @openai/codex@9.9.6-" in str(exc.value)


# -- discovery --------------------------------------------------------------------------


def npm_layout(root: Path, *, nested: bool = False) -> tuple[Path, Path]:
    """node_modules as npm lays it out: the launcher package, its platform package (hoisted
    beside it, or nested in its own node_modules) and node_modules/.bin/codex -> bin/codex.js."""
    main_pkg = root / "node_modules" / "@openai" / "codex"
    (main_pkg / "bin").mkdir(parents=True)
    (main_pkg / "bin" / "codex.js").write_text("#!/usr/bin/env node\n")
    (main_pkg / "bin" / "codex.js").chmod(0o755)
    plat = (main_pkg / "node_modules" / "@openai" if nested else root / "node_modules" / "@openai") \
        / f"codex-{PLATFORMS[TRIPLE]}"
    binary = plat / "vendor" / TRIPLE / "bin" / "codex"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(fake_codex("9.9.7"))
    binary.chmod(0o755)
    (root / "node_modules" / ".bin").mkdir()
    link = root / "node_modules" / ".bin" / "codex"
    link.symlink_to(os.path.relpath(main_pkg / "bin" / "codex.js", link.parent))
    return link, binary


@pytest.mark.parametrize("nested", [False, True], ids=["hoisted", "nested"])
def test_the_npm_launcher_stands_for_its_platform_binary(tmp_path, nested, monkeypatch):
    link, binary = npm_layout(tmp_path, nested=nested)
    assert find_codex_binary(link) == binary           # --codex-bin node_modules/.bin/codex
    monkeypatch.setenv("CODEX_BIN", str(link))
    assert find_codex_binary() == binary
    assert native_binary(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # anything else stays itself
    assert npm_platform_binary(tmp_path / "node_modules" / "@openai" / "codex") == binary


def test_a_platform_package_alone_is_found_in_its_own_vendor(tmp_path):
    tgz = platform_tarball(tmp_path / "p.tgz", "9.9.8-x")
    unpack_npm_tarball(tgz, tmp_path / "pkg", TRIPLE)
    assert npm_platform_binary(tmp_path / "pkg") == tmp_path / "pkg" / "vendor" / TRIPLE / "bin" / "codex"
    assert npm_platform_binary(tmp_path / "nothing") is None


@pytest.mark.network
def test_codex_0_169_0_installs_from_the_registries(tmp_path):
    """Opt-in (CODEX_CASSETTE_NETWORK=1): 0.169.0 is not on PyPI, so this takes npm's tarball."""
    done = install("0.169.0", tmp_path / "cache")
    assert done.source == "npm"
    assert subprocess.run([done.binary, "--version"], capture_output=True, text=True,
                          timeout=30).stdout.strip() == "codex-cli 0.169.0"


def test_the_version_installed_here_is_used_where_it_is(tmp_path, capsys):
    import codex_cli_bin
    assert main(["codex", "install", "0.163.0", "--dir", str(tmp_path / "cache")]) == 0
    out, err = capsys.readouterr()
    assert out == f"{codex_cli_bin.bundled_codex_path()}\n" and "installed here" in err
    assert not (tmp_path / "cache").exists()
