"""harness.format.redact: built-in detectors, user rules, idempotence, bytes."""

from __future__ import annotations

import copy
import json

import pytest

from harness.errors import UsageError
from harness.format.redact import (
    LiteralRule,
    Redactor,
    parse_path,
    parse_rule_arg,
    secrets_from_environ,
)

OPENAI_KEY = "sk-proj-Abcdefghijklmnopqrstuvwx_0123456789"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"

MESSAGE = {
    "id": 3,
    "method": "account/login",
    "params": {
        "note": f"use {OPENAI_KEY} please",
        "headers": ["Authorization: Bearer abcDEF123456.xyz", "Accept: */*"],
        "idToken": JWT,
        "access_token": "opaque-access-value",
        "refreshToken": "opaque-refresh-value",
        "apiKey": "k-123456789",
        "API_KEY": "k-987654321",
        "password": "hunter2hunter2",
        "clientSecret": "cs-very-secret",
        "hasPassword": True,
        "authorization": None,
        "account": {"email": "alice.smith+codex@example.co.uk", "plan": "pro"},
        "cwd": "/work/task-abcdefghijklmnopqrstuvwxyz",  # "sk-" inside a word is not a key
    },
}


def test_builtin_detectors_replace_every_secret_with_a_marker() -> None:
    r = Redactor()
    out = r.scrub(MESSAGE)
    p = out["params"]
    assert p["note"] == "use {{redacted:openai_api_key}} please"
    assert p["headers"] == ["Authorization: Bearer {{redacted:bearer_token}}", "Accept: */*"]
    assert p["idToken"] == "{{redacted:id_token}}"
    assert p["access_token"] == "{{redacted:access_token}}"
    assert p["refreshToken"] == "{{redacted:refresh_token}}"
    assert p["apiKey"] == p["API_KEY"] == "{{redacted:api_key}}"
    assert p["password"] == "{{redacted:password}}"
    assert p["clientSecret"] == "{{redacted:secret}}"
    assert p["hasPassword"] is True and p["authorization"] is None  # no secret, type kept
    assert p["account"] == {"email": "{{redacted:email}}", "plan": "pro"}
    assert p["cwd"] == MESSAGE["params"]["cwd"]
    assert r.applied == {"openai_api_key", "bearer_token", "id_token", "access_token", "refresh_token",
                         "api_key", "password", "secret", "email"}
    text = json.dumps(out)
    for secret in (OPENAI_KEY, JWT, "abcDEF123456", "opaque-access", "hunter2", "alice.smith", "cs-very"):
        assert secret not in text


def test_input_is_not_modified_and_scrub_is_idempotent() -> None:
    original = copy.deepcopy(MESSAGE)
    r = Redactor([LiteralRule("env:TOKEN", "opaque-refresh-value")])
    once = r.scrub(MESSAGE)
    assert MESSAGE == original
    applied = set(r.applied)
    r2 = Redactor([LiteralRule("env:TOKEN", "opaque-refresh-value")])
    assert r2.scrub(once) == once
    assert r2.applied == set()  # nothing new found in scrubbed data
    assert r.scrub(once) == once and r.applied == applied


def test_jwt_and_bare_tokens_in_free_text() -> None:
    r = Redactor()
    assert r.scrub_text(f"see {JWT};") == "see {{redacted:jwt}};"
    assert r.scrub_text(f"token={JWT};") == "token={{redacted:token}};"  # a secret-named assignment
    assert r.scrub_text("curl -H 'authorization: bearer Zm9vYmFyYmF6cXV4==' x") == \
        "curl -H 'authorization: bearer {{redacted:bearer_token}}' x"
    assert r.scrub_text("sk-short") == "sk-short"  # too short to be a key
    assert r.scrub_text("mail bob@example.com now") == "mail {{redacted:email}} now"


def test_user_regex_and_path_rules() -> None:
    rules = [parse_rule_arg(r"ticket=TCK-\d{6}", path=False),
             parse_rule_arg("item_secret=$.params.items[*].value", path=True),
             parse_rule_arg("first=$.params.list[0]", path=True)]
    r = Redactor(rules)
    msg = {"params": {"text": "see TCK-123456 and TCK-12", "items": [{"value": "a", "k": 1}, {"value": {"x": 1}}],
                      "list": ["p", "q"]}}
    out = r.scrub(msg)
    assert out["params"]["text"] == "see {{redacted:ticket}} and TCK-12"
    assert out["params"]["items"] == [{"value": "{{redacted:item_secret}}", "k": 1},
                                      {"value": "{{redacted:item_secret}}"}]
    assert out["params"]["list"] == ["{{redacted:first}}", "q"]
    assert r.scrub(out) == out
    assert {"ticket", "item_secret", "first"} <= r.applied
    # A path that does not exist in a message leaves it alone.
    assert r.scrub({"method": "x"}) == {"method": "x"}


def test_bad_rules_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="KIND=REGEX"):
        parse_rule_arg("no-equals-sign", path=False)
    with pytest.raises(UsageError, match="does not compile"):
        parse_rule_arg("k=(unclosed", path=False)
    with pytest.raises(UsageError, match=r"must start with '\$'"):
        parse_path("k", "params.x")
    with pytest.raises(UsageError, match="not understood"):
        parse_path("k", "$.params..x")


def test_scrub_bytes_keeps_invalid_utf8_and_finds_secrets() -> None:
    r = Redactor()
    data = b"\xff\xfe garbage " + OPENAI_KEY.encode() + b" \x80tail"
    assert r.scrub_bytes(data) == b"\xff\xfe garbage {{redacted:openai_api_key}} \x80tail"
    clean = b"\xff plain bytes \x00"
    assert r.scrub_bytes(clean) is clean


def test_secret_environment_values_become_literal_rules() -> None:
    env = {"MY_SERVICE_TOKEN": "tok-9f8e7d6c5b4a", "PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": "/tmp/ssh-x/agent.1",
           "SHORT_KEY": "abc", "DB_PASSWORD": "pw-00001111"}
    rules = secrets_from_environ(env)
    assert {(r.kind, r.value) for r in rules} == {("env:MY_SERVICE_TOKEN", "tok-9f8e7d6c5b4a"),
                                                  ("env:DB_PASSWORD", "pw-00001111")}
    r = Redactor.default(env=env)
    assert r.scrub({"x": "a tok-9f8e7d6c5b4a b"}) == {"x": "a {{redacted:env:MY_SERVICE_TOKEN}} b"}
    assert r.scrub_bytes(b"pw-00001111") == b"{{redacted:env:DB_PASSWORD}}"
