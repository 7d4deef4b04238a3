"""`codex-cassette scan PATH...` through the real entry point, over planted files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STRIPE = "sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123"
PASSWORD = "Tr0ub4dor,x9Q(x)"
COOKIE = "sid=9f8e7d6c5b4a3921"
PEM_LINE = "MIIEowIBAAKCAQEAvQ3r8Tq4mZk2Xb7Jw9yLc5Hf"
SECRETS = [STRIPE, PASSWORD, COOKIE, PEM_LINE, "hunter2hunter2"]


def run(*paths: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "scan", *map(str, paths)], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_scan_names_file_line_and_kind_never_the_value(tmp_path: Path) -> None:
    cas = tmp_path / "cassettes"
    (cas / "sub").mkdir(parents=True)
    header = {"type": "header", "version": 1, "meta": {"redactions": ["api_key"]}}
    clean_event = {"side": "client", "msg": {"method": "x", "params": {"apiKey": "{{redacted:api_key}}", "cwd": "{{cwd}}"}}}
    leaked = {"side": "server", "msg": {"method": "x", "params": {"note": f"charge {STRIPE}"}}}
    go = {"side": "client", "msg": {"method": "y", "params": {"headers": {"Cookie": [COOKIE], "Accept": ["*/*"]}}}}
    (cas / "s.jsonl").write_text("\n".join(json.dumps(x) for x in (header, clean_event, leaked, go)) + "\n")
    (cas / "sub" / "scenario.yaml").write_text(f"name: s\nevents:\n  - client: {{method: login}}\n    # password: {PASSWORD}\n")
    (cas / "sub" / "key.txt").write_text(f"ok\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_LINE}\n-----END RSA PRIVATE KEY-----\n")
    (cas / "blob.bin").write_bytes(b"\0\1" + STRIPE.encode())          # binary: not looked at
    (cas / ".git").mkdir()
    (cas / ".git" / "config").write_text(f"token = {STRIPE}\n")          # VCS: not looked at
    (cas / "clean.md").write_text("Nothing here but {{redacted:openai_api_key}} and a path /tmp/x.\n")

    proc = run("cassettes", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "cassettes/s.jsonl:3: stripe_key",
        "cassettes/s.jsonl:4: cookie",
        "cassettes/sub/key.txt:2: private_key",  # where the block starts
        "cassettes/sub/scenario.yaml:4: password",
    ]
    assert not any(s in proc.stdout + proc.stderr for s in SECRETS)

    # One file named on its own (as pre-commit passes them), a clean one, and a mix.
    assert run(cas / "clean.md", cwd=tmp_path).returncode == 0
    one = run(cas / "sub" / "scenario.yaml", cas / "clean.md", cwd=tmp_path)
    assert one.returncode == 1 and one.stdout.strip().endswith("scenario.yaml:4: password")


def test_a_missing_path_is_one_clear_error(tmp_path: Path) -> None:
    proc = run(tmp_path / "nope.jsonl", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"scan: {tmp_path / 'nope.jsonl'}: no such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Refused before anything is scanned, whatever the order.
    (tmp_path / "leak.txt").write_text(f"token={STRIPE}\n")
    proc = run(tmp_path / "leak.txt", tmp_path / "nope.jsonl", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr


def test_an_unreadable_file_is_said_and_the_others_still_scanned(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "gone.txt").symlink_to(tmp_path / "nowhere")  # listed, but cannot be opened
    (tmp_path / "d" / "leak.txt").write_text(f"charge {STRIPE}\n")
    proc = run("d", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "d/leak.txt:1: stripe_key\n"
    assert "d/gone.txt: cannot be read" in proc.stderr and "Traceback" not in proc.stderr



def test_hostile_files_are_scanned_or_passed_over_never_a_hang_or_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "fifo")                                   # opening it would wait forever
    (tmp_path / "d" / "deep.json").write_text("[" * 100_000 + "\n")     # deeper than the parser reaches
    (tmp_path / "d" / "big.json").write_text('{"n": ' + "9" * 5000 + f', "note": "charge {STRIPE}"}}\n')
    proc = run("d", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == "d/big.json:1: stripe_key\n"


def test_the_shipped_cassettes_and_scenarios_scan_clean() -> None:
    proc = run("cassettes", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_pre_commit_users_get_the_hook_in_one_line() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "codex-cassette-scan")
    assert hook["entry"] == "codex-cassette scan" and hook["language"] == "python"
