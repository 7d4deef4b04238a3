"""harness.format.redact: built-in detectors, user rules, idempotence, bytes."""

from __future__ import annotations

import copy
import json

import pytest

from harness.errors import UsageError
from harness.format.secret_gate import GATE, may_hold_secret, secret_env_values
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
    # Two values of one kind: two markers, so each binds to its own value at replay.
    assert (p["apiKey"], p["API_KEY"]) == ("{{redacted:api_key}}", "{{redacted:api_key#2}}")
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
    # A secret-named assignment: its value runs to whitespace (a password may end in `;`).
    assert r.scrub_text(f"token={JWT}; x") == "token={{redacted:token}} x"
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
                                      {"value": "{{redacted:item_secret#2}}"}]  # another value
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


# -- the detectors of issue 12 -------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from harness.errors import CassetteError  # noqa: E402
from harness.format import detectors  # noqa: E402
from harness.format.detectors import secret_field_kind  # noqa: E402


def test_the_gate_covers_every_trigger() -> None:
    # The gate is spelled by hand as a tree; a trigger it misses would never be scanned for.
    for d in detectors.BUILTINS:
        for t in d.cased + d.folded:
            assert GATE.search(t.replace("://", "//")), (d.name, t)
        for t in d.cased:
            assert detectors.key_gate().search(t.replace("://", "//")), (d.name, t)
    for escaped in ("\\u0067", "https:\\/\\/"):
        assert GATE.search(escaped) and detectors.key_gate().search(escaped)


@pytest.mark.parametrize("name, kind", [
    ("apiKey", "api_key"), ("api_key", "api_key"), ("API-KEY", "api_key"), ("ApiKey", "api_key"),
    ("x-api-key", "api_key"), ("token", "token"), ("pwd", "password"), ("passwd", "password"),
    ("pass", "password"), ("PASSWORD", "password"), ("private_key", "private_key"), ("credentials", "credentials"),
    ("sessionToken", "session_token"), ("GITHUB_TOKEN", "github_token"), ("client_secret", "secret"),
    ("stripe_secret", "stripe_secret"), ("db_pass", "db_pass"), ("SecretAccessKey", "aws_secret_access_key"),
    ("monkey", None), ("keyboard", None), ("passthrough", None), ("tokenUsage", None), ("inputTokens", None),
    ("key", None), ("sortKey", None), ("identityKey", None), ("cancellationToken", None), ("public_key", None),
    ("idempotencyKey", None), ("hasPassword", "has_password"),
])
def test_secret_field_names_in_every_case_style(name: str, kind: str | None) -> None:
    assert secret_field_kind(name) == kind


def test_booleans_and_nulls_under_secret_names_keep_their_type() -> None:
    r = Redactor()
    assert r.scrub({"hasPassword": True, "apiKey": None, "token": ""}) == {"hasPassword": True, "apiKey": None,
                                                                           "token": ""}
    assert r.scrub_text('"hasPassword": true, "token": null') == '"hasPassword": true, "token": null'


def test_rules_meta_names_rules_never_values_and_round_trips() -> None:
    env = {"MY_PIN": "4821", "SVC_TOKEN": "tok-0011223344", "UNUSED_TOKEN": "tok-5566778899"}
    r = Redactor.default([parse_rule_arg(r"ticket=TCK-\d{6}", path=False),
                          parse_rule_arg("pin=$.params.pin", path=True)], env=env, named_env=["MY_PIN"])
    r.scrub({"a": "svc tok-0011223344"})
    meta = r.rules_meta()
    assert meta["env"] == ["MY_PIN", "SVC_TOKEN"]  # named, or found; UNUSED_TOKEN was neither
    assert meta["regex"] == [{"kind": "ticket", "pattern": r"TCK-\d{6}"}]
    assert meta["paths"] == [{"kind": "pin", "path": "$.params.pin"}]
    assert meta["detectors"] == list(detectors.NAMES)
    assert not any(v in json.dumps(meta) for v in env.values())
    # At replay: the same rules, each variable's value from the replay's environment.
    again = Redactor.from_meta({"redaction_rules": meta}, {"MY_PIN": "9999", "SVC_TOKEN": "tok-replayed-1"})
    assert again is not None
    assert again.scrub({"x": "9999 tok-replayed-1 TCK-123456", "params": {"pin": 7}}) == {
        "x": "{{redacted:env:MY_PIN}} {{redacted:env:SVC_TOKEN}} {{redacted:ticket}}", "params": {"pin": "{{redacted:pin}}"}}
    assert Redactor.from_meta({}, {}) is None  # a header from before rules were named
    # A newer harness's detector is ignored; a malformed field is an error naming the file.
    assert Redactor.from_meta({"redaction_rules": {"detectors": ["jwt", "from_the_future"]}}, {}).detectors == ("jwt",)
    with pytest.raises(CassetteError, match=r"c\.jsonl:1: meta\.redaction_rules cannot be used"):
        Redactor.from_meta({"redaction_rules": {"regex": [{"kind": "k", "pattern": "(unclosed"}]}}, {}, "c.jsonl")


def test_a_user_regex_that_is_itself_a_secret_is_refused() -> None:
    with pytest.raises(UsageError, match="the pattern itself holds a secret"):
        Redactor.default([parse_rule_arg("mine=sk-proj-Abcdefghijklmnopqrstuvwx_0123", path=False)], env={})
    with pytest.raises(UsageError, match="--redact-env NOPE_X: the variable is not set"):
        Redactor.default(env={}, named_env=["NOPE_X"])


def test_short_env_values_only_as_words_and_plain_words_are_no_secrets() -> None:
    r = Redactor.default(env={"MY_PIN": "4821"}, named_env=["MY_PIN"])
    assert r.scrub_text("pin 4821, id 148210") == "pin {{redacted:env:MY_PIN}}, id 148210"
    env = {"DESKTOP_SESSION": "ubuntu", "XDG_SESSION_TYPE": "wayland", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/x",
           "USE_AUTH": "1", "DB_DSN": "postgres://u:p@h/db", "DATABASE_URL": "mysql://a:b@c/d", "SHORT_KEY": "Ab3x"}
    assert {r.kind for r in secrets_from_environ(env)} == {"env:DB_DSN", "env:DATABASE_URL", "env:SHORT_KEY"}


def test_a_private_key_block_over_several_lines_is_redacted_whole() -> None:
    lines = [b"log: key follows", b"-----BEGIN OPENSSH PRIVATE KEY-----", b"b3BlbnNzaC1rZXktdjEAAAAA",
             b"QyNTUxOQAAACBqT0n", b"-----END OPENSSH PRIVATE KEY----- tail", b"after"]
    scrub = Redactor().line_scrubber()
    out = [scrub.scrub_bytes(line) for line in lines]
    assert out == [b"log: key follows"] + [b"{{redacted:private_key}}"] * 3 + [b"{{redacted:private_key}} tail", b"after"]


def test_json_escapes_in_a_raw_line_do_not_hide_a_secret() -> None:
    raw = '{"note": "\\u0067hp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "url": "https:\\/\\/bob:pw-1234@h.example\\/x"'
    assert Redactor().scrub_raw(raw) == ('{"note": "{{redacted:github_token}}", '
                                         '"url": "https:\\/\\/bob:{{redacted:url_password}}@h.example\\/x"')


def test_the_shipped_cassettes_hold_nothing_the_detectors_take_for_a_secret() -> None:
    # They were recorded from the real codex: a detector that fires on them would redact
    # what codex says in every recording (false positives cost replays their meaning).
    from pathlib import Path

    from harness.format.cassette import load_cassette

    r = Redactor()
    paths = sorted((Path(__file__).resolve().parents[1] / "cassettes").rglob("*.jsonl"))
    assert paths
    for path in paths:
        for e in load_cassette(path).events:
            assert e.msg is None or r.scrub(e.msg) == e.msg, (path, e.line)
            assert e.raw is None or r.scrub_bytes(e.raw) == e.raw, (path, e.line)
    assert r.applied == set()


SECRETS = ["ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "AKIAQWERTYUIOPASDF23", "password=Hunter2x",
           "postgres://al:S3cret@db.example.com/x", "Authorization: Basic dXNlcjpwYXNz", "xoxb-1234567890-abcdefghij",
           "carol@example.org", "Bearer abcDEF123456", "sk_live_51HqLyjWDarjtT1zdp7dc", "SK" + "0a" * 16,
           "0123456789abcdef0123456789abcdef-us6", "PGPASSWORD=Tr0ub,4(x)", "curl -u al:pw1 h", "q8Q~" + "a" * 32,
           "patAbCdEfGhIjKlMn." + "0a" * 32, "123456789:AA" + "x" * 33]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(SECRETS), st.text(max_size=12)), max_size=8))
def test_scrubbing_is_idempotent(parts: list[str]) -> None:
    text = " ".join(parts)
    r = Redactor()
    once = r.scrub_text(text)
    assert r.scrub_text(once) == once
    assert r.scrub_raw(once) == once


GATE_ENV = {"OPENAI_API_KEY": "sk-live-0123456789abcdef", "MY_TOKEN": "opaque-Token-42", "PIN_PASS": "4711",
            "QUOTED_SECRET": 'ab"cd1234', "HOME": "/root", "DESKTOP_SESSION": "gnome"}
KEYS = ["cwd", "home", "apiKey", "note", "sortKey", "x", "private_key_id", "Authorization"]
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(SECRETS + list(GATE_ENV.values())),
              st.text(max_size=12), st.sampled_from(["/w", "/root/.codex", "a\\u0067hp_x", 'say "4711"', 'ab\\"cd1234'])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_the_secret_gate_lets_through_only_what_a_report_redactor_leaves_as_it_is(value: object) -> None:
    # The gate spares a report the Redactor's import: it may say "maybe" too often, never "no" wrongly.
    literals = tuple(v for _, v in secret_env_values(GATE_ENV))
    if may_hold_secret(value, literals):
        return
    r = Redactor.widened({}, GATE_ENV)
    assert r.scrub(value) == value
    if isinstance(value, str):
        assert r.scrub_raw(value) == value


def test_the_secret_gate_passes_plain_paths_and_stops_planted_secrets() -> None:
    literals = tuple(v for _, v in secret_env_values(GATE_ENV))
    assert set(literals) == {"sk-live-0123456789abcdef", "opaque-Token-42", "4711", 'ab"cd1234'}
    assert not may_hold_secret({"cwd": "/work/x", "home": "/root", "codex_home": "/root/.codex"}, literals)
    for planted in (MESSAGE, {"cwd": "/w/opaque-Token-42"}, ["4711"], {"apiKey": 12}, {"n": JWT}, "a\\u0067hp_x"):
        assert may_hold_secret(planted, literals), planted
