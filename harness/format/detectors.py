"""The built-in secret detectors: what people actually paste, each with its kind name.

Written after reading detect-secrets' plugins and gitleaks' rules for the facts (token
prefixes, lengths, the contexts that give a value away); the patterns are our own.
detect-secrets itself scans a line some 400 times slower than the recorder must
(docs/recording.md), so it is not used.

A detector is a regex plus its triggers: substrings every match contains, so a text
holding none of them is never scanned (``cased`` are looked for as they are, ``folded``
in the lowered text). A pattern names the secret part ``(?P<s...>)``; the whole match is
the secret when it names none. ``name`` is what a cassette header lists; several
detectors may share one (the text forms of a secret-named field).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from harness.format.secret_gate import GITLAB_PREFIXES

MARKER = r"\{\{redacted:[^{}]*\}\}"

# The value of `name = value`, `"name": value`, `name: value`: quoted (JSON's `\"` too) or bare.
_VALUE = (r"""(?:\\?"(?P<sd>[^"\\\n]+)\\?"|'(?P<sq>[^'\n]+)'"""
          r"""|(?P<s>[^\s"'`&;,<>(){}\[\]\\=][^\s"'`&;,<>(){}\[\]\\]*))""")
# A name that ends like a secret's (the classifier below has the last word).
_SECRET_NAME = (r"(?P<n>(?:[A-Za-z_][\w.-]{0,60}?)?"
                r"(?i:token|key|secret|passwd|password|pwd|pass|credentials?|cookie))")


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: str
    cased: tuple[str, ...] = ()
    folded: tuple[str, ...] = ()
    kind: str = ""  # the marker's kind; empty: decided per match (kind_of_match)

    @property
    def marker_kind(self) -> str:
        return self.kind or self.name


_PEM = (r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
        r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)")
PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")

# Tried left to right at each position: an earlier detector wins a tie.
BUILTINS: tuple[Detector, ...] = (
    # A PEM block, whole; unterminated, up to the end of the text (a line scrubber goes on).
    Detector("private_key", _PEM, cased=("PRIVATE KEY",)),
    # A service-account key file as text (`cat key.json`): its key id; the key is a PEM block.
    Detector("gcp_service_account", r"""\\?"private_key_id\\?"\s*:\s*\\?"(?P<s>[0-9a-f]{40})\\?\"""",
             folded=("private_key_id",)),
    Detector("aws_access_key_id", r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
             cased=("AKIA", "ASIA", "ABIA", "ACCA", "A3T")),
    Detector("azure_connection_string",
             r"(?<![A-Za-z])(?i:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*(?P<s>[^;\"'\s\\]+)",
             folded=("accountkey", "sharedaccess")),
    Detector("github_token", r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
             cased=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    Detector("gitlab_token", r"(?<![A-Za-z0-9_-])(?:%s)-[A-Za-z0-9_-]{20,}" % "|".join(GITLAB_PREFIXES),
             cased=tuple(p + "-" for p in GITLAB_PREFIXES)),
    Detector("slack_webhook", r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/-]+",
             cased=("hooks.slack.com",)),
    Detector("slack_token", r"(?<![A-Za-z0-9])(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]{10,}", cased=("xox", "xapp-")),
    Detector("anthropic_api_key", r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,}", cased=("sk-ant-",)),
    Detector("openai_api_key", r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", cased=("sk-",)),
    Detector("gcp_api_key", r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])", cased=("AIza",)),
    Detector("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", cased=("eyJ",)),
    # `Authorization: Basic|Bearer|Token|... CREDENTIALS` (kind by scheme), before the bare `Bearer`.
    Detector("authorization_header",
             r"""(?i:(?:proxy-)?authorization)\\?["']?\s*[:=]\s*\\?["']?"""
             r"""(?:(?P<scheme>(?i:basic|bearer|token|digest|negotiate))\s+)?(?P<s>[^\s"'\\,;]{4,})""",
             folded=("authorization",)),
    Detector("bearer_token", r"(?i:bearer)\s+(?P<s>[A-Za-z0-9._~+/-]{8,}=*)", folded=("bearer",)),
    # scheme://user:PASSWORD@host: the password only.
    Detector("url_password", r"(?i:\b[a-z][a-z0-9+.-]{1,20})://[^\s:/@\"'<>{}\\]*:(?P<s>[^\s/@\"'<>{}\\]+)@",
             cased=("://",)),
    Detector("email", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
             cased=("@",)),
    # Secret-named fields in text: "name": value, name=value, and `name: value` at a line's start.
    Detector("secret_field", r"""(?P<q>\\?["'])""" + _SECRET_NAME + r"(?P=q)\s*:\s*" + _VALUE,
             folded=("token", "key", "secret", "pass", "pwd", "credential", "cookie")),
    Detector("secret_field", r"(?<![\w.-])-{0,2}" + _SECRET_NAME + r"\s*=\s*" + _VALUE,
             folded=("token", "key", "secret", "pass", "pwd", "credential", "cookie")),
    Detector("secret_field", r"(?m:^)[ \t]*(?:-[ \t]+)?" + _SECRET_NAME + r":[ \t]+" + _VALUE,
             folded=("token", "key", "secret", "pass", "pwd", "credential", "cookie")),
)
NAMES: tuple[str, ...] = tuple(dict.fromkeys(d.name for d in BUILTINS))

# A JSON key, as it is: only a token or a value in it (a key named like a secret is the walk's).
KEY_GATE = re.compile(r"A(?:KIA|SIA|BIA|CCA|3T|Iza)|PRIVATE KEY|g(?:h[pousr]_|ithub_pat_|l(?:%s)-)"
                      r"|x(?:ox|app-)|hooks\.slack\.com|sk-|eyJ|//|@|\\[u/]" % "|".join(p[2:] for p in GITLAB_PREFIXES))


# -- secret-named fields --------------------------------------------------------------------------

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Whole names (words run together), with the kind they keep across case styles.
_CANONICAL = {
    "accesstoken": "access_token", "refreshtoken": "refresh_token", "idtoken": "id_token",
    "apikey": "api_key", "xapikey": "api_key", "clientsecret": "secret", "privatekey": "private_key",
    "awssecretaccesskey": "aws_secret_access_key", "secretaccesskey": "aws_secret_access_key",
    "authorization": "authorization", "proxyauthorization": "authorization",
    "password": "password", "passwd": "password", "pwd": "password", "pass": "password",
    "secret": "secret", "token": "token", "credentials": "credentials", "credential": "credentials",
    "cookie": "cookie", "setcookie": "cookie",
}
# A name of several words is a secret's when its last word is one of these ...
_LAST_WORDS = {"token", "secret", "key", "password", "passwd", "pwd", "pass", "credentials", "credential", "cookie"}
# ... unless another of its words says it is not (codex's own sortKey, identityKey, cancellationToken).
_NOT_SECRET_WORDS = {"sort", "public", "publishable", "idempotency", "identity", "cache", "partition", "primary",
                     "foreign", "lookup", "index", "group", "order", "row", "column", "cancellation", "page",
                     "continuation", "next", "max", "min", "num", "total"}


@functools.lru_cache(maxsize=4096)
def secret_field_kind(name: str) -> str | None:
    """The kind of a field (or assignment) named ``name`` when its value is a secret, else None.

    Words are split on case changes and separators, so apiKey, api_key, API-KEY and
    ApiKey are one name; monkey, keyboard or passthrough are not secrets' names."""
    words = [w.lower() for w in _WORD.findall(name)]
    if not words:
        return None
    joined = "".join(words)
    if joined in _CANONICAL:
        return _CANONICAL[joined]
    if len(words) < 2 or words[-1] not in _LAST_WORDS or _NOT_SECRET_WORDS.intersection(words[:-1]):
        return None
    return "_".join(words)[:64]


def kind_of_match(detector: Detector, groups: dict[str, str | None]) -> str | None:
    """The marker kind for one match of ``detector`` (None: not a secret after all)."""
    if detector.name == "secret_field":
        # `-c model_providers.openai.api_key=...`: the last part names it.
        return secret_field_kind((groups["n"] or "").rsplit(".", 1)[-1])
    if detector.name == "authorization_header":
        scheme = (groups.get("scheme") or "").lower()
        return {"basic": "basic_auth", "bearer": "bearer_token"}.get(scheme, "authorization")
    return detector.marker_kind


# -- JSON escapes in raw text ---------------------------------------------------------------------

_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def has_escapes(text: str) -> bool:
    return "\\" in text and _ESCAPE.search(text) is not None


def unescaped_view(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with its JSON string escapes decoded, and for each decoded character the
    span of ``text`` it came from (a raw line may be JSON that did not parse)."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _ESCAPE.finditer(text):
        out.append(text[pos:m.start()])
        spans.extend((i, i + 1) for i in range(pos, m.start()))
        out.append(chr(int(m.group(1), 16)) if m.group(1) else _SIMPLE[m.group(2)])
        spans.append((m.start(), m.end()))
        pos = m.end()
    out.append(text[pos:])
    spans.extend((i, i + 1) for i in range(pos, len(text)))
    return "".join(out), spans
