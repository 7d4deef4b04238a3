"""Every detector, planted in every place a recording writes, through the real proxy.

One recording per detector: `python -m harness record` in front of a scripted peer. The
secret travels client -> server and server -> client, as a JSON message, as the same
message with JSON escapes (``\\u0067``, ``\\/``), as a raw (non-JSON) line, as a raw line
with those escapes (JSON that does not parse), on the server's stderr (copied to
``--stderr-file``) and on the server's command line (the header's ``command``). The client
must get every byte unchanged; the cassette and the stderr copy must hold no secret, and
each place the marker of the detector's kind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.format.cassette import load_cassette
from harness.format.detectors import NAMES

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
WAIT = 30.0

# The peer: prints its planned stdout and stderr lines, then reads the client to its end.
PEER = r'''
import json, sys
plan = json.load(open(sys.argv[1]))
sys.stdout.buffer.write("".join(plan["stdout"]).encode()); sys.stdout.buffer.flush()
sys.stderr.buffer.write("".join(plan["stderr"]).encode()); sys.stderr.buffer.flush()
sys.stdin.buffer.read()
'''

PEM_LINES = ["MIIEowIBAAKCAQEAvQ3r8Tq4mZk2Xb7Jw9yLc5Hf", "Qz1Nn8Rk0Pp6Ss2Tt4Uu6Vv8Ww0Xx2Yy4Zz6Aa8B",
             "b0Cc2Dd4Ee6Ff8Gg0Hh2Ii4Jj6Kk8Ll0Mm2Nn4Oo"]
PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_LINES) + "\n-----END RSA PRIVATE KEY-----"
SA_KEY_ID = "3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c9e2b4d6f8a"
SA_PEM_LINE = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSj"
SA_FILE = {"type": "service_account", "project_id": "demo-proj", "private_key_id": SA_KEY_ID,
           "private_key": f"-----BEGIN PRIVATE KEY-----\n{SA_PEM_LINE}\n-----END PRIVATE KEY-----\n",
           "client_email": "robot@demo-proj.iam.gserviceaccount.com"}
AZURE_KEY = base64.b64encode(bytes(range(66))).decode()  # 88 characters with + and /
BASIC = base64.b64encode(b"alice:Wonderland-42").decode()


@dataclass
class Case:
    name: str             # the detector (or rule) planted
    text: str             # what is said; it holds every string of `secrets`
    secrets: list[str]
    kind: str             # the marker every place must show
    fields: dict[str, Any] = field(default_factory=dict)  # also as JSON fields of the messages
    env: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)        # more `record` flags
    argv: list[str] | None = None                         # the server's extra arguments


CASES = [
    Case("private_key", f"key:\n{PEM}\nend", PEM_LINES, "private_key"),
    Case("gcp_service_account", json.dumps(SA_FILE), [SA_KEY_ID, SA_PEM_LINE], "gcp_service_account",
         fields={"credentials": SA_FILE}),
    Case("aws_access_key_id", "id AKIAQWERTYUIOPASDF23 here", ["AKIAQWERTYUIOPASDF23"], "aws_access_key_id"),
    Case("aws_secret_access_key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE12",
         ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE12"], "aws_secret_access_key",
         fields={"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE12"}),
    Case("azure_connection_string",
         f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net",
         [AZURE_KEY], "azure_connection_string"),
    Case("github_token", "push with ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 now",
         ["ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"], "github_token"),
    Case("gitlab_token", "glpat-Zy9Xw8Vu7Ts6Rq5Po4Nm ok", ["glpat-Zy9Xw8Vu7Ts6Rq5Po4Nm"], "gitlab_token"),
    Case("slack_webhook", "post to https://hooks.slack.com/services/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",
         ["Qw3rTy7uIo9pAs2dFg4hJk6L"], "slack_webhook"),
    Case("slack_token", "bot xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
         ["xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"], "slack_token"),
    Case("anthropic_api_key", "sk-ant-api03-Qw3rTy7uIo9pAs2dFg4hJk6LzXcVbNm1234567",
         ["sk-ant-api03-Qw3rTy7uIo9pAs2dFg4hJk6LzXcVbNm1234567"], "anthropic_api_key"),
    Case("openai_api_key", "key sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa_0123",
         ["sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa_0123"], "openai_api_key"),
    Case("gcp_api_key", "maps AIzaSyQw3rTy7uIo9pAs2dFg4hJk6LzXcVbNm12 x",
         ["AIzaSyQw3rTy7uIo9pAs2dFg4hJk6LzXcVbNm12"], "gcp_api_key"),
    Case("jwt", "id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.Zm9vYmFyYmF6cXV4MTIzNDU2 ok",
         ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.Zm9vYmFyYmF6cXV4MTIzNDU2"], "jwt"),
    Case("authorization_header", f"Authorization: Basic {BASIC}", [BASIC], "basic_auth"),
    Case("bearer_token", "use Bearer abcDEF123456.xyz7890 now", ["abcDEF123456.xyz7890"], "bearer_token"),
    Case("url_password", "postgres://alice:S3cretPassw0rd-x@db.example.com:5432/app",
         ["S3cretPassw0rd-x"], "url_password"),
    Case("email", "mail carol.danvers@example.org today", ["carol.danvers@example.org"], "email"),
    Case("secret_field (punctuation, a list)", "login with password: Tr0ub4dor,x9Q(x)", ["Tr0ub4dor,x9Q(x)"],
         "password", fields={"password": ["Tr0ub4dor,x9Q(x)"]}),
    Case("secret_field (Go headers)", "Cookie: sid=9f8e7d6c5b4a3921; theme=dark", ["sid=9f8e7d6c5b4a3921"], "cookie",
         fields={"headers": {"Cookie": ["sid=9f8e7d6c5b4a3921"], "Accept": ["*/*"]}}),
    Case("command_password", "curl -sS -u alice:Wond3r,land(x) https://api.example.com/v1", ["Wond3r,land(x)"], "basic_auth"),
    Case("service_token", "charge with sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123 now",
         ["sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123"], "stripe_key"),
    Case("secret_field", "password=Hunter2Hunter2", ["Hunter2Hunter2"], "password",
         fields={"pwd": "Hunter2Hunter2"}, argv=["--password", "Hunter2Hunter2"]),
    # Values of variables the user names (any length), and of variables named like secrets.
    Case("env (named)", "pin 4821-77 ok", ["4821-77"], "env:MY_PIN", env={"MY_PIN": "4821-77"},
         flags=["--redact-env", "MY_PIN"]),
    Case("env (secret name)", "svc tok-9f8e7d6c5b4a3210 ok", ["tok-9f8e7d6c5b4a3210"], "env:MY_SERVICE_TOKEN",
         env={"MY_SERVICE_TOKEN": "tok-9f8e7d6c5b4a3210"}),
]
PLACES = ["client-json", "client-json-escaped", "client-raw", "client-raw-escaped",
          "server-json", "server-json-escaped", "server-raw", "server-raw-escaped", "stderr", "argv"]


def escaped(line: str, secrets: list[str]) -> str:
    """``line`` (JSON) with every '/' as '\\/' and the first character of each secret as a
    \\u escape: the same message, in which no secret appears as plain text."""
    line = line.replace("/", "\\/")
    for secret in secrets:
        plain = json.dumps(secret)[1:-1].replace("/", "\\/")
        assert plain in line, (plain, line)
        line = line.replace(plain, "\\u%04x" % ord(plain[0]) + plain[1:])
    return line


def lines_for(case: Case, side: str) -> list[str]:
    """What one side says: its JSON, escaped JSON, raw and escaped raw (JSON cut short) lines."""
    def message(place: str) -> str:
        return json.dumps({"method": "plant", "params": {"place": place, "note": case.text, **case.fields}})

    return [message(f"{side}-json") + "\n",
            escaped(message(f"{side}-json-escaped"), case.secrets) + "\n",
            f"place={side}-raw {case.text}\n",
            escaped(message(f"{side}-raw-escaped"), case.secrets)[:-1] + "\n"]


def decoded(text: str) -> str:
    """JSON escapes undone, so a secret hidden by them is seen."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text).replace("\\/", "/")


def places_of(cassette: Path, stderr: str) -> dict[str, str]:
    """The text each place ended up as."""
    c = load_cassette(cassette)
    found: dict[str, str] = {"stderr": stderr, "argv": json.dumps(c.meta["command"])}
    current: str | None = None
    for e in c.events:
        if e.msg is not None and isinstance(e.msg.get("params"), dict):
            found[e.msg["params"]["place"]] = json.dumps(e.msg)
            current = None
        elif e.raw is not None:
            text = e.raw.decode("utf-8", "replace")
            tag = re.search(r'place=([a-z-]+)|"place": "([a-z-]+)"', text)
            current = (tag.group(1) or tag.group(2)) if tag else current  # a PEM block's later lines
            if current is not None:
                found[current] = found.get(current, "") + text + "\n"
    return found


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_planted_secret_is_redacted_everywhere(tmp_path: Path, case: Case) -> None:
    peer, plan = tmp_path / "peer.py", tmp_path / "plan.json"
    peer.write_text(PEER)
    server_out = lines_for(case, "server")
    plan.write_text(json.dumps({"stdout": server_out, "stderr": [f"place=stderr {case.text}\n"]}))
    cassette, errfile = tmp_path / "out.jsonl", tmp_path / "server.stderr"
    env = {**os.environ, **case.env,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    argv = [PY, "-m", "harness", "record", "-o", str(cassette), "--stderr-file", str(errfile), *case.flags,
            "--", PY, str(peer), str(plan), *(case.argv or ["--note", case.text])]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env, cwd=str(tmp_path))
    out, err = await asyncio.wait_for(proc.communicate("".join(lines_for(case, "client")).encode()), WAIT)
    assert proc.returncode == 0, err.decode(errors="replace")
    assert out.decode() == "".join(server_out)  # the client gets every byte as the server said it
    assert case.text.encode() in err  # and the server's stderr, passed through untouched

    written = decoded(cassette.read_text() + errfile.read_text())
    for secret in case.secrets:
        assert secret not in written, f"{case.name}: {secret!r} reached the cassette or the stderr copy"
    found = places_of(cassette, errfile.read_text())
    assert set(found) == set(PLACES), sorted(found)
    missing = [p for p in PLACES if "{{redacted:" + case.kind + "}}" not in found[p]]
    assert not missing, f"{case.name}: no {{{{redacted:{case.kind}}}}} in {missing}: " + repr(
        {p: found[p][:300] for p in missing})
    header = load_cassette(cassette).meta
    assert case.kind in header["redactions"]
    rules = json.dumps(header["redaction_rules"])
    assert all(secret not in rules for secret in case.secrets)  # names of rules, never values
    for name in case.env:
        assert name in header["redaction_rules"]["env"]


def test_every_builtin_detector_is_planted() -> None:
    planted = {c.name for c in CASES}
    assert set(NAMES) <= planted, sorted(set(NAMES) - planted)
    print(f"\n{len(CASES)} detectors and rules x {len(PLACES)} places = {len(CASES) * len(PLACES)} plantings")
