"""Secret kinds and shapes the first detectors let through (issue 21, item 2), planted.

Each secret is made up in the shape its issuer gives it; each is planted in free text, in a
JSON message and in a raw line, and must not survive any of them. The values under
secret-named keys are planted as lists and nested values (Go's ``http.Header`` shape), and a
password with punctuation must be taken whole.
"""

from __future__ import annotations

import json

import pytest

from harness.format.redact import Redactor

HEX32 = "0123456789abcdef0123456789abcdef"
ALNUM36 = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"

# (kind the marker must name, the secret, the text it sits in: {} is the secret)
PREFIXED = [
    ("stripe_key", "sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123", "STRIPE: {} done"),
    ("stripe_key", "rk_live_51HqLyjWDarjtT1zdp7dcXYZabc123", "restricted {}"),
    ("stripe_key", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "test key {}."),
    ("npm_token", "npm_" + ALNUM36, "//registry.npmjs.org/:_authToken {}"),
    ("pypi_token", "pypi-AgEIcHlwaS5vcmcCJDkxZmQ0NzQ1LWI3ZjEtNDcwZi1hMzU2LTk0OGE3ZTQyYzAxMQ",
     "twine upload with {}"),
    ("huggingface_token", "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh", "huggingface-cli login --token-arg {}"),
    ("google_oauth_token", "ya29.a0AfH6SMBx7Yd3kL9pQ2rS5tU8vW1xZ4cE6gH9jK2mN5pQ8rT1", "access {} here"),
    ("sendgrid_api_key", "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", "mail via {}"),
    ("discord_webhook", "https://discord.com/api/webhooks/123456789012345678/AbCdEf_GhIjKl-MnOpQrStUvWxYz0123456789abcdefGHIJKLmnopqrstUVWXyz01",
     "notify {} now"),
    ("telegram_bot_token", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1", "bot {} ok"),
    ("twilio_key", "SK" + HEX32, "twilio {} key"),
    ("twilio_key", "AC" + HEX32, "account {} sid"),
    ("shopify_token", "shpat_" + HEX32, "shop {}"),
    ("mailgun_key", "key-" + HEX32, "mailgun {}"),
    ("doppler_token", "dp.pt.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfG", "doppler {}"),
    ("databricks_token", "dapi" + HEX32, "databricks {}"),
    ("digitalocean_token", "dop_v1_" + HEX32 + HEX32, "doctl {}"),
    ("linear_api_key", "lin_api_" + ALNUM36 + "AbCd", "linear {}"),
    ("postman_api_key", "PMAK-0123456789abcdef01234567-0123456789abcdef0123456789abcdef01", "postman {}"),
    ("pulumi_token", "pul-" + HEX32 + "01234567", "pulumi {}"),
    ("azure_client_secret", "abc8Q~AbCdEfGhIjKlMnOpQrStUvWxYz0123456", "client {} ."),
    ("gcp_oauth_client_secret", "GOCSPX-AbCdEfGhIjKlMnOpQrStUvWxYz01", "oauth {}"),
    ("age_secret_key", "AGE-SECRET-KEY-1QQPZRY9X8GF2TVDW0S3JN54KHCE6MUA7LQQPZRY9X8GF2TVDW0S3JN54KH", "age {}"),
    ("groq_api_key", "gsk_" + ALNUM36 + "AbCdEfGhIjKlMnOp", "groq {}"),
    ("hashicorp_token", "hvs.CAESIJ" + ALNUM36 + ALNUM36 + "AbCdEf", "vault {}"),
    ("grafana_token", "glsa_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345" + "_0123abcd", "grafana {}"),
    ("new_relic_key", "NRAK-ABCDEFGHIJKLMNOPQRSTUVWXYZ0", "nr {}"),
    ("sentry_token", "sntryu_" + HEX32 + HEX32, "sentry {}"),
    ("rubygems_api_key", "rubygems_" + HEX32 + "0123456789abcdef", "gem {}"),
    ("airtable_token", "patAbCdEfGhIjKlMn." + HEX32 + HEX32, "airtable {}"),
    ("square_token", "EAAAEOuLQObrVwJvCvoio-sZX0fZvQCyR7AbCdEfGhIjKlMnOpQrStUvWxYz0123", "square {}"),
    ("perplexity_api_key", "pplx-" + ALNUM36 + "AbCdEfGhIjKl", "pplx {}"),
]

# Secrets in text that a command line or a shell session gives away by their place.
IN_TEXT = [
    ("password", "Tr0ub4dor,x9Q(x)", "password: {}"),
    ("password", "Tr0ub4dor;x9Q&x", "password={} next"),
    ("password", "p@ss,w(0)rd;!", '--password "{}"'),
    ("basic_auth", "Wond3rland!x", "curl -u alice:{} https://api.example.com"),
    ("basic_auth", "s3cr3t-Pw", "curl -sS --user bob:{} -X POST https://h"),
    ("basic_auth", "Hunter2x", "curl -X GET -u 'carol:{}' https://h"),
    ("password", "Sup3r,S3cret!x", "PGPASSWORD={} psql -h db"),
    ("pwd", "my-sql-pw9", "MYSQL_PWD={} mysql"),
    ("token", "tok_9f8e7d6c5b4a", "export DEPLOY_TOKEN={}"),
    ("secret", "s3cr3t_value_42", "APP_SECRET={} ./run"),
    ("api_key", "0a1b2c3d4e5f6a7b", "OPENWEATHER_API_KEY={} node app.js"),
    ("password", "S3cr3t,pw!", "mysql -h db -u root -p{} app"),
    ("password", "S3cr3t pw", "mysqldump -u root -p'{}' app"),
    ("password", "hunter2-x", "sshpass -p {} ssh host"),
    ("password", "n3trc-pw", "machine api.example.com login alice password {}"),
    ("cookie", "sid=9f8e7d6c; csrftoken=1a2b3c; theme=dark", "Cookie: {}"),
    ("token", "Zm9vYmFyYmF6", "curl -H 'X-Auth-Token: {}' https://h"),
    ("azure_sas_signature", "Xm2ys0sqd7hYdA9Ws0sQs3Q%2BmQ1dRqJ8kT9z3Xy0mWw%3D",
     "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&ss=b&sig={}"),
]


@pytest.mark.parametrize("kind, secret, text", PREFIXED + IN_TEXT, ids=[f"{k}-{i}" for i, (k, _, _) in
                                                                          enumerate(PREFIXED + IN_TEXT)])
def test_every_kind_is_redacted_in_text_json_and_raw_lines(kind: str, secret: str, text: str) -> None:
    said = text.format(secret)
    r = Redactor()
    out = r.scrub_text(said)
    assert secret not in out and "{{redacted:" in out, out
    # The marker names a kind of its own (a `secret_field` name, or the issuer's); what the
    # secret sat in is kept.
    assert any(k.endswith(kind) for k in r.applied), (r.applied, out)
    assert out.startswith(said[:said.index(secret)][:4])
    msg = {"id": 1, "method": "x", "params": {"note": said, "items": [said]}}
    assert secret not in json.dumps(Redactor().scrub(msg))
    raw = json.dumps(msg)[:-1]  # JSON that does not parse: a raw line
    assert secret not in Redactor().scrub_raw(raw)
    assert secret not in Redactor().scrub_bytes(raw.encode()).decode()


def test_a_password_with_punctuation_is_taken_to_its_end_and_no_further() -> None:
    assert Redactor().scrub_text("password: Tr0ub4dor,x9Q(x)") == "password: {{redacted:password}}"
    assert Redactor().scrub_text('{"cmd": "login password=a,b;c&d(e) --verbose"}') == \
        '{"cmd": "login password={{redacted:password}} --verbose"}'
    assert Redactor().scrub_text("x password='a b,c' y") == "x password='{{redacted:password}}' y"
    # A URL's query: the next parameter is not part of the value.
    assert Redactor().scrub_text("https://h/cb?token=abc,def;g&state=xyz") == \
        "https://h/cb?token={{redacted:token}}&state=xyz"


GO_HEADERS = {"Authorization": ["Basic YWxpY2U6V29uZGVybGFuZA=="], "Cookie": ["sid=9f8e7d6c5b4a3921"],
              "X-Api-Key": ["k-0a1b2c3d4e5f"], "Accept": ["application/json"]}


def test_lists_and_nested_values_under_secret_names_are_redacted() -> None:
    r = Redactor()
    assert r.scrub({"password": ["Hunter2Hunter2"]}) == {"password": ["{{redacted:password}}"]}
    out = r.scrub({"headers": GO_HEADERS})["headers"]
    assert out == {"Authorization": ["{{redacted:authorization}}"], "Cookie": ["{{redacted:cookie}}"],
                   "X-Api-Key": ["{{redacted:api_key}}"], "Accept": ["application/json"]}
    nested = r.scrub({"token": {"value": "opaque-aa11bb22", "alt": [["opaque-cc33dd44", 12345678]]},
                      "secrets": {"db": "p4ss-word-77"}})
    text = json.dumps(nested)
    for secret in ("opaque-aa11bb22", "opaque-cc33dd44", "12345678", "p4ss-word-77"):
        assert secret not in text, text
    # The same in text: a raw line (JSON cut short), Go's fmt of an http.Header, YAML's flow style.
    raw = '{"password": ["Hunter2Hunter2"], "token": {"value": "opaque-aa11bb22"}, "n": 1'
    assert Redactor().scrub_raw(raw) == '{"password": {{redacted:password}}, "token": {{redacted:token}}, "n": 1'
    go = "map[Accept:[*/*] Authorization:[Basic YWxpY2U6V29uZGVybGFuZA==] X-Api-Key:[k-0a1b2c3d4e5f]]"
    out = Redactor().scrub_text(go)
    assert "YWxpY2U6V29uZGVybGFuZA" not in out and "k-0a1b2c3d4e5f" not in out and "Accept:[*/*]" in out, out
    assert Redactor().scrub_text("password: [Hunter2, x]\nuser: bob") == "password: {{redacted:password}}\nuser: bob"
    # No secret held, type kept: booleans and nulls under a secret name, in lists too.
    assert r.scrub({"password": [None, True], "apiKey": []}) == {"password": [None, True], "apiKey": []}


def test_two_secrets_of_one_kind_keep_distinct_markers_all_session_long() -> None:
    r = Redactor()
    a, b = "sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123", "sk_live_51HqLyjWDarjtT1zdp7dcXYZabc999"
    assert r.scrub_text(f"{a} {b} {a}") == "{{redacted:stripe_key}} {{redacted:stripe_key#2}} {{redacted:stripe_key}}"
    # The same value in another message, and escaped in a raw line: the same marker. (Under a
    # secret name a value takes that name's kind: another kind, so its own first marker.)
    assert r.scrub({"apiKey": b, "x": [f"key {a}"]}) == {"apiKey": "{{redacted:api_key}}",
                                                         "x": ["key {{redacted:stripe_key}}"]}
    assert r.scrub_raw('{"k": "\\u0073' + b[1:] + '"') == '{"k": "{{redacted:stripe_key#2}}"'
    assert r.applied == {"stripe_key", "api_key"}
    assert a not in repr(r) and b not in repr(r)  # the values it remembers are never said


def test_a_command_line_is_also_read_as_one_line() -> None:
    r = Redactor()
    argv = ["curl", "-sS", "-u", "alice:Wond3r,land", "https://h", "--api-key", "k-123456789"]
    assert r.scrub_argv(argv) == ["curl", "-sS", "-u", "alice:{{redacted:basic_auth}}", "https://h", "--api-key",
                                  "{{redacted:api_key}}"]
    assert r.scrub_argv(["mysql", "-h", "db", "-pS3cr3t,pw!", "app"])[3] == "-p{{redacted:password}}"
    assert r.scrub_argv(["sshpass", "-p", "hunter2-x", "ssh", "h"])[2] == "{{redacted:password#2}}"  # another value
    assert r.scrub_argv(["ls", "-la", "/tmp"]) == ["ls", "-la", "/tmp"]
