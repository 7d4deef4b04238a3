"""No secret on a command line: `record --ssh ... --remote-env NAME` takes the value from
the recorder's environment, against a real asyncssh server on 127.0.0.1 (tests/sshd.py).
The value reaches the remote command but never the proxy's argv (what `ps` shows every
user of the machine), and the cassette names the variable, never its value. The pytest
plugin's ``ssh`` option hands a client the same: names on argv, values in env.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from sshd import SSHTestServer  # noqa: E402

from harness.format.cassette import load_cassette  # noqa: E402
from harness.pytest.servers import CodexAppServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
T = 10.0
SECRET = "remote-s3cr3t-7f3a9c2e1b5d"


def env_with(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


async def proxy_cmdline(pid: int) -> bytes:
    """What `ps` shows of the proxy, once it runs the recorder (not the interpreter's start)."""
    for _ in range(int(T / 0.01)):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"record" in cmdline:
            return cmdline
        await asyncio.sleep(0.01)
    raise AssertionError(f"the proxy's command line never showed `record`: {cmdline!r}")


@pytest.mark.asyncio
async def test_remote_env_by_name_reaches_the_remote_command_and_never_the_command_line(tmp_path: Path) -> None:
    cassette, copy = tmp_path / "remote.jsonl", tmp_path / "stderr.txt"
    # The remote command says the value it got on stderr, then echoes its stdin.
    script = 'printf "got=%s\\n" "$MY_REMOTE_TOKEN" >&2; printf "{\\"said\\":\\"%s\\"}\\n" "$MY_REMOTE_TOKEN"; cat'
    async with SSHTestServer(tmp_path) as srv:
        argv = [PY, "-m", "harness", "record", "-o", str(cassette), "--stderr-file", str(copy),
                "--ssh", f"tester@127.0.0.1:{srv.port}", "--identity", srv.client_key_path,
                "--known-hosts", srv.known_hosts_path, "--connect-timeout", "5",
                "--remote-env", "MY_REMOTE_TOKEN", "--", "sh", "-c", script]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env_with(MY_REMOTE_TOKEN=SECRET))
        cmdline = await proxy_cmdline(proc.pid)
        out, err = await asyncio.wait_for(proc.communicate(b'{"id":1,"method":"x"}\n'), T)
    assert out.split(b"\n")[0] == b'{"said":"%s"}' % SECRET.encode()  # the value crossed SSH
    assert f"got={SECRET}".encode() in err
    assert b"MY_REMOTE_TOKEN" in cmdline and SECRET.encode() not in cmdline  # the name only
    assert proc.returncode == 0, err.decode(errors="replace")
    text = cassette.read_text() + copy.read_text()
    assert SECRET not in text
    c = load_cassette(cassette)
    assert c.meta["ssh"]["remote_env"] == ["MY_REMOTE_TOKEN"]
    assert "{{redacted:env:MY_REMOTE_TOKEN}}" in copy.read_text()


@pytest.mark.parametrize("arg, says", [
    (f"MY_REMOTE_TOKEN={SECRET}", "looks like a secret"),                    # by its name
    ("NOTE=ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "looks like a secret"),  # by its value
    ("UNSET_VARIABLE_X", "is not set in the recorder's environment"),
])
def test_a_secret_on_the_command_line_is_refused_without_saying_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        arg: str, says: str) -> None:
    from harness.cli import main

    monkeypatch.delenv("UNSET_VARIABLE_X", raising=False)
    code = main(["record", "-o", str(tmp_path / "x.jsonl"), "--ssh", "a@127.0.0.1:1",
                 "--remote-env", arg, "--", "codex", "app-server"])
    err = capsys.readouterr().err
    assert code == 2 and says in err, err
    assert SECRET not in err and "ghp_A1b2" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_a_harmless_value_may_still_be_given(tmp_path: Path) -> None:
    from harness.record.ssh_recording import remote_env_arg

    assert remote_env_arg("RUST_LOG=debug", {}) == ("RUST_LOG", "debug")
    assert remote_env_arg("MY_REMOTE_TOKEN", {"MY_REMOTE_TOKEN": SECRET}) == ("MY_REMOTE_TOKEN", SECRET)


def test_the_plugins_ssh_option_puts_names_on_argv_and_values_in_env(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_MY_ENV_TOKEN", "listed-s3cr3t-0d4c8b2a")
    for remote_env in ({"MY_REMOTE_TOKEN": SECRET, "PYTHONPATH": str(REPO)}, ["FROM_MY_ENV_TOKEN"]):
        server = CodexAppServer(cassette_path=tmp_path / "c.jsonl", recording=True, workdir=tmp_path,
                                ssh={"target": "tester@127.0.0.1:2222", "remote_env": remote_env}).start()
        # .argv launches the recording `codex`, a script whose exec line is the proxy's command line.
        script = (server.bin_dir / "codex").read_text()
        argv, env = shlex.split(next(line for line in script.splitlines() if "--ssh" in line)), server.env
        names = [argv[n + 1] for n, a in enumerate(argv) if a == "--remote-env"]
        values = dict(remote_env) if isinstance(remote_env, dict) else {"FROM_MY_ENV_TOKEN": "listed-s3cr3t-0d4c8b2a"}
        for name, value in values.items():
            if name == "PYTHONPATH":  # the proxy's own: it keeps its own value, so the remote one goes on argv
                assert f"PYTHONPATH={value}" in names
                continue
            assert name in names and value not in script
            assert env[name] == value


@pytest.mark.asyncio
async def test_meta_given_on_the_command_line_is_scrubbed_too(tmp_path: Path) -> None:
    cassette = tmp_path / "m.jsonl"
    meta = '{"note": "deploy key ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "owner": "team"}'
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "harness", "record", "-o", str(cassette), "--meta", meta, "--", PY, "-c", "import sys; sys.stdin.read()",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env_with())
    await asyncio.wait_for(proc.communicate(b""), T)
    assert proc.returncode == 0
    header = load_cassette(cassette).meta
    assert header["note"] == "deploy key {{redacted:github_token}}" and header["owner"] == "team"
