"""What the recorder writes, and what it does when writing fails (issue 12, points 3 and 6):
files 0600 whatever the umask; a write error (a file size limit, a full device) never
takes the wire down, keeps the .partial and says so in one paragraph, and the proxy exits
with the server's code; an unusable -o is said before the server starts; a line the
JSON parser refuses is recorded as raw. All through the real proxy subprocess."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from harness.format.cassette import load_cassette

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
WAIT = 60.0
# A server that echoes its input, notes it on stderr, and exits with the code it is given.
ECHO = [PY, "-c", "import sys\n"
                  "open('started', 'w').close()\n"
                  "for line in sys.stdin.buffer:\n"
                  "    sys.stdout.buffer.write(line); sys.stdout.buffer.flush()\n"
                  "    sys.stderr.buffer.write(b'got a line\\n'); sys.stderr.buffer.flush()\n"
                  "sys.exit(int(sys.argv[1]))"]


def run_proxy(tmp_path: Path, *flags: str, server: list[str] = ECHO, code: str = "0", data: bytes = b"",
              **popen: object) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    argv = [PY, "-m", "harness", "record", *flags, "--", *server, *([code] if server is ECHO else [])]
    return subprocess.run(argv, input=data, capture_output=True, env=env, cwd=tmp_path, timeout=WAIT, **popen)


def lines(n: int, pad: int = 200) -> bytes:
    return b"".join(b'{"id":%d,"method":"x","params":{"pad":"%s"}}\n' % (i, b"p" * pad) for i in range(n))


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_cassettes_and_stderr_copies_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    done = run_proxy(tmp_path, "-o", "c.jsonl", "--stderr-file", "err.txt", data=lines(3), umask=umask)
    assert done.returncode == 0, done.stderr
    for name in ("c.jsonl", "err.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    assert (tmp_path / "err.txt").read_bytes() == b"got a line\n" * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "err.txt", "started"]


def test_a_file_size_limit_stops_the_recording_not_the_session(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write past 256 KiB fail (EFBIG): the session goes on to the
    end, the proxy exits with the server's code, one paragraph names the .partial kept."""
    data = lines(5000)  # ~1.2 MB each way

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    done = run_proxy(tmp_path, "-o", "c.jsonl", code="3", data=data, preexec_fn=limited)
    assert done.stdout == data  # every byte went through
    assert done.returncode == 3, done.stderr
    err = done.stderr.decode().replace("got a line\n", "")
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "(File too large)" in err
    # The limit stops the spool or the cassette first, depending on the timing; the paragraph
    # names whichever file holds what was recorded, and that one loads, complete: false.
    kept = [p for p in (tmp_path / "c.jsonl", tmp_path / "c.jsonl.partial") if p.exists()]
    assert len(kept) == 1 and f"{kept[0].name} (complete: false)" in err
    cassette = load_cassette(kept[0])
    assert not cassette.complete and 0 < len(cassette.events) < 10000


def test_a_full_device_for_the_stderr_copy_keeps_the_session_and_the_cassette(tmp_path: Path) -> None:
    done = run_proxy(tmp_path, "-o", "c.jsonl", "--stderr-file", "/dev/full", data=lines(50))
    assert done.returncode == 0 and done.stdout == lines(50)
    err = done.stderr.decode().replace("got a line\n", "")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "could not write the stderr copy /dev/full (No space left on device)" in err
    assert load_cassette(tmp_path / "c.jsonl").complete


def test_a_writer_that_cannot_write_keeps_what_it_wrote(tmp_path: Path) -> None:
    """The writer alone (as in-process recording uses it) under a file size limit."""
    script = (
        "import resource, sys\n"
        "from harness.format.writer import CassetteWriter\n"
        "from harness.format.cassette import Event\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))\n"
        "w = CassetteWriter(sys.argv[1], {})\n"
        "for i in range(5000):\n"
        "    w.write(Event(side='server', msg={'method': 'x', 'params': {'i': i, 'pad': 'p' * 100}}))\n"
        "print(w.finish(complete=True, end='clean'))\n"
        "print(w.failure_message())\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([PY, "-c", script, str(tmp_path / "w.jsonl")], capture_output=True, text=True,
                          env=env, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    kept, message = done.stdout.splitlines()
    assert kept == str(tmp_path / "w.jsonl.partial") and "File too large" in message
    assert not load_cassette(kept).complete


@pytest.mark.parametrize("output, why", [
    (".", "it is a directory"),
    ("x/c.jsonl", None),
    ("file/c.jsonl", "a part of the path is a file, not a directory"),
])
def test_an_unusable_output_is_said_before_the_server_starts(tmp_path: Path, output: str, why: str | None) -> None:
    (tmp_path / "file").write_text("not a directory")
    if why is None:  # a directory this user may not write into
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        (tmp_path / "x").mkdir(mode=0o500)
        why = "Permission denied"
    done = run_proxy(tmp_path, "-o", output, data=lines(1))
    assert done.returncode == 2 and done.stdout == b""
    err = done.stderr.decode()
    assert err.startswith("codex-cassette: cannot write the cassette") and why in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "started").exists()


def test_an_unusable_stderr_file_is_said_before_the_server_starts(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    done = run_proxy(tmp_path, "-o", "c.jsonl", "--stderr-file", "file/err.txt", data=lines(1))
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().startswith("codex-cassette: cannot write the stderr copy file/err.txt")
    assert not (tmp_path / "started").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_line_the_parser_refuses_is_recorded_raw(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    huge_number = b'{"id":' + b"9" * 5000 + b"}\n"
    data = deep + huge_number + b'{"id":1,"method":"after"}\n'
    done = run_proxy(tmp_path, "-o", "c.jsonl", data=data)
    assert done.returncode == 0 and done.stdout == data
    assert b"Traceback" not in done.stderr
    cassette = load_cassette(tmp_path / "c.jsonl")
    client = [e for e in cassette.events if e.side == "client" and e.kind in ("msg", "raw")]
    assert [e.kind for e in client] == ["raw", "raw", "msg"]
    assert client[0].raw == deep.rstrip(b"\n") and client[2].msg == {"id": 1, "method": "after"}
    assert cassette.complete
