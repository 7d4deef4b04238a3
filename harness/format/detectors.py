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

from harness.format.secret_gate import GITLAB_PREFIXES, word_tree

MARKER = r"\{\{redacted:[^{}]*\}\}"

# The value of `name = value`, `"name": value`, `name: value`: quoted (JSON's `\"` too) or bare.
# A bare value runs to whitespace or a quote: a password may hold any punctuation
# (`Tr0ub4dor,x9Q(x)`); only `&name=` (the next parameter of a query) ends it earlier. One
# opening with `=` is `==`; a list or an object (one line, no nesting: JSON that did not parse,
# Go's `map[Cookie:[sid=...]]`, YAML's `[a, b]`) is taken whole, brackets and all.
_VALUE = (r"""(?:\\?"(?P<sd>[^"\\\n]+)\\?"|'(?P<sq>[^'\n]+)'"""
          r"""|(?P<sb>\[[^\[\]\n]*\]|\{[^{}\n]*\})"""
          r"""|(?P<s>[^\s"'`\\={\[](?:[^\s"'`\\&]|&(?![A-Za-z_][\w.-]*=))*))""")
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
    shape: str = ""  # a regex every match holds, for tokens with no distinctive prefix (Twilio's SK + hex)

    @property
    def marker_kind(self) -> str:
        return self.kind or self.name



# Tokens an issuer marks with its own prefix (facts read off gitleaks' default rules; the
# patterns are ours): (kind, pattern, triggers). Each is taken whole, wherever it stands,
# unless a letter, digit, `_` or `-` runs into its start. Shapes without a prefix of their
# own are below (SHAPED).
ISSUED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("stripe_key", r"[sr]k_(?:live|test|prod)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9+/=]{24,}",
     ("sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_", "whsec_")),
    ("npm_token", r"npm_[A-Za-z0-9]{30,}", ("npm_",)),
    ("pypi_token", r"pypi-[A-Za-z0-9_-]{32,}", ("pypi-",)),
    ("huggingface_token", r"(?:hf_|api_org_)[A-Za-z0-9]{30,}", ("hf_", "api_org_")),
    ("google_oauth_token", r"ya29\.[A-Za-z0-9_-]{20,}|1//0[A-Za-z0-9_-]{30,}", ("ya29.", "1//0")),
    ("gcp_oauth_client_secret", r"GOCSPX-[A-Za-z0-9_-]{24,}", ("GOCSPX-",)),
    ("sendgrid_api_key", r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}", ("SG.",)),
    ("discord_webhook", r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]+",
     ("discord",)),
    ("shopify_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", ("shpat_", "shpca_", "shppa_", "shpss_")),
    ("mailgun_key", r"key-[0-9a-f]{32}", ("key-",)),
    ("doppler_token", r"dp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9]{40,}",
     ("dp.pt.", "dp.st.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit.")),
    ("databricks_token", r"dapi[a-f0-9]{32}(?:-[0-9])?", ("dapi",)),
    ("digitalocean_token", r"do[opr]_v1_[a-f0-9]{64}", ("dop_v1_", "doo_v1_", "dor_v1_")),
    ("linear_api_key", r"lin_api_[A-Za-z0-9]{40}", ("lin_api_",)),
    ("postman_api_key", r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}", ("PMAK-",)),
    ("pulumi_token", r"pul-[a-f0-9]{40}", ("pul-",)),
    ("azure_client_secret", r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}", ("Q~",)),
    ("age_secret_key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}", ("AGE-SECRET-KEY-1",)),
    ("groq_api_key", r"gsk_[A-Za-z0-9]{48,}", ("gsk_",)),
    ("hashicorp_token", r"hv[sb]\.[A-Za-z0-9_-]{24,}|[a-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}",
     ("hvs.", "hvb.", "atlasv1")),
    ("grafana_token", r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,}={0,2}", ("glsa_", "glc_")),
    ("new_relic_key", r"NR(?:AK|JS|II)-[A-Za-z0-9]{19,32}", ("NRAK-", "NRJS-", "NRII-")),
    ("sentry_token", r"sntry[su]_[A-Za-z0-9+/=_]{40,}", ("sntrys_", "sntryu_")),
    ("rubygems_api_key", r"rubygems_[a-f0-9]{48}", ("rubygems_",)),
    ("square_token", r"(?:EAAA|sq0atp-|sq0csp-)[A-Za-z0-9_-]{22,60}", ("EAAA", "sq0atp-", "sq0csp-")),
    ("perplexity_api_key", r"pplx-[A-Za-z0-9]{40,}", ("pplx-",)),
    ("xai_api_key", r"xai-[A-Za-z0-9]{70,}", ("xai-",)),
    ("replicate_token", r"r8_[A-Za-z0-9]{37}", ("r8_",)),
    ("onepassword_token", r"ops_eyJ[A-Za-z0-9+/=_-]{100,}", ("ops_eyJ",)),
    ("alibaba_access_key", r"LTAI[A-Za-z0-9]{20}", ("LTAI",)),
    ("atlassian_token", r"ATATT3[A-Za-z0-9_=-]{100,}", ("ATATT3",)),
    ("notion_token", r"ntn_[0-9]{11}[A-Za-z0-9]{32,}|secret_[A-Za-z0-9]{43}(?![A-Za-z0-9])", ("ntn_", "secret_")),
    ("flyio_token", r"fo1_[A-Za-z0-9_-]{43}", ("fo1_",)),
    ("dynatrace_token", r"dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}", ("dt0c01.",)),
    ("easypost_key", r"EZ[AT]K[A-Za-z0-9]{54}", ("EZAK", "EZTK")),
    ("openshift_token", r"sha256~[A-Za-z0-9_-]{43}", ("sha256~",)),
    ("prefect_token", r"pnu_[A-Za-z0-9]{36}", ("pnu_",)),
    ("readme_key", r"rdme_[a-z0-9]{70}", ("rdme_",)),
    ("planetscale_token", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,64}", ("pscale_",)),
    ("scalingo_token", r"tk-us-[A-Za-z0-9_-]{48}", ("tk-us-",)),
    ("shippo_token", r"shippo_(?:live|test)_[a-fA-F0-9]{40}", ("shippo_",)),
    ("duffel_token", r"duffel_(?:test|live)_[A-Za-z0-9_=-]{43}", ("duffel_",)),
    ("flutterwave_key", r"FLWSECK(?:_TEST)?-[a-hA-H0-9]{32}-X", ("FLWSECK",)),
    ("typeform_token", r"tfp_[A-Za-z0-9_.=-]{59}", ("tfp_",)),
    ("sourcegraph_token", r"sgp_(?:[a-fA-F0-9]{16}|local)_[a-fA-F0-9]{40}", ("sgp_",)),
    ("frameio_token", r"fio-u-[A-Za-z0-9_=-]{64}", ("fio-u-",)),
    ("clojars_token", r"CLOJARS_[A-Za-z0-9]{60}", ("CLOJARS_",)),
    ("artifactory_key", r"AKCp[A-Za-z0-9]{69}", ("AKCp",)),
    ("adobe_secret", r"p8e-[A-Za-z0-9]{32}", ("p8e-",)),
    ("cloudflare_origin_ca_key", r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}", ("v1.0-",)),
    ("heroku_key", r"HRKU-AA[A-Za-z0-9_-]{58}", ("HRKU-",)),
    ("docker_hub_token", r"dckr_pat_[A-Za-z0-9_-]{27,}", ("dckr_pat_",)),
    ("supabase_key", r"sbp_[a-f0-9]{40}|sb_secret_[A-Za-z0-9_-]{20,}", ("sbp_", "sb_secret_")),
    ("render_key", r"rnd_[A-Za-z0-9]{32}", ("rnd_",)),
    ("netlify_token", r"nfp_[A-Za-z0-9]{36}", ("nfp_",)),
    ("mapbox_secret_token", r"sk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}", ("sk.eyJ",)),
    ("gitlab_token", r"GR1348941[A-Za-z0-9_-]{20}", ("GR1348941",)),
)
# Tokens whose only mark is their shape: (kind, pattern, shape, the gate's lowered cover in
# harness.format.secret_gate.GATE_SHAPES).
SHAPED: tuple[tuple[str, str, str], ...] = (
    ("twilio_key", r"(?:SK|AC)[0-9a-fA-F]{32}(?![A-Za-z0-9])", r"(?:SK|AC)[0-9a-fA-F]{32}"),
    ("mailchimp_api_key", r"[0-9a-f]{32}-us[0-9]{1,2}(?![A-Za-z0-9])", r"[0-9a-f]{32}-us[0-9]"),
    ("airtable_token", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}", r"pat[A-Za-z0-9]{14}\.[a-f0-9]"),
    ("telegram_bot_token", r"(?<![0-9])[0-9]{6,12}:AA[A-Za-z0-9_-]{30,}", r"[0-9]:AA"),
)
_ISSUED_START = r"(?<![A-Za-z0-9_-])"

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
             r"""\[?(?:(?P<scheme>(?i:basic|bearer|token|digest|negotiate))\s+)?(?P<s>[^\s"'\\,;\]]{4,})""",
             folded=("authorization",)),
    # Passwords commands take in their arguments: `curl -u user:PASSWORD` (`--user`, `-uuser:pw`,
    # `--user=`, quoted), `mysql -pPASSWORD`, `sshpass -p PASSWORD`, a .netrc's `password VALUE`.
    Detector("command_password", r"""(?i:\bcurl)[^\n|;&]{0,200}?\s(?:-u|--user)(?:\s*|=)"""
                                 r"""(?P<q>\\?["']?)[^\s:"'\\]*:(?P<s>[^\s"'\\]+)""",
             folded=("curl",), kind="basic_auth"),
    Detector("command_password", r"""\b(?:mysql(?:dump|admin|import|check|show)?|mariadb)\b[^\n|;&]{0,200}?\s-p"""
                                 r"""(?:'(?P<sq>[^'\n]+)'|\\?"(?P<sd>[^"\\\n]+)\\?"|(?P<s>[^\s"'\\]+))""",
             folded=("mysql", "mariadb"), kind="password"),
    Detector("command_password", r"""\bsshpass\s+-p\s*(?:'(?P<sq>[^'\n]+)'|\\?"(?P<sd>[^"\\\n]+)\\?"|(?P<s>[^\s"'\\]+))""",
             folded=("sshpass",), kind="password"),
    Detector("command_password", r"""(?:\blogin\s+\S+\s+|(?m:^)[ \t]*)password[ \t]+(?P<s>[^\s"'\\]+)""",
             folded=("password",), kind="password"),
    Detector("bearer_token", r"(?i:bearer)\s+(?P<s>[A-Za-z0-9._~+/-]{8,}=*)", folded=("bearer",)),
    # scheme://user:PASSWORD@host: the password only.
    Detector("url_password", r"(?i:\b[a-z][a-z0-9+.-]{1,20})://[^\s:/@\"'<>{}\\]*:(?P<s>[^\s/@\"'<>{}\\]+)@",
             cased=("://",)),
    Detector("email", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
             cased=("@",)),
    *(Detector("service_token", _ISSUED_START + f"(?:{pattern})", cased=triggers, kind=kind)
      for kind, pattern, triggers in ISSUED),
    *(Detector("service_token", _ISSUED_START + pattern, kind=kind, shape=shape) for kind, pattern, shape in SHAPED),
    # `Cookie: a=1; b=2` / `Set-Cookie: ...`: every cookie, to the end of the line or a closing quote.
    Detector("secret_field", r"""(?i:\b(?:set-)?cookie)\\?["']?\s*:\s*(?P<s>[^\r\n"'\\]*[^\s"'\\])""",
             folded=("cookie",), kind="cookie"),
    # An Azure SAS URL's signature (`...?sv=2022-11-02&...&sig=...`).
    Detector("service_token", r"[?&]sig=(?P<s>[A-Za-z0-9%+/=]{20,})", folded=("sig=",), kind="azure_sas_signature"),
    # Secret-named fields in text: "name": value, name=value, and `name: value` at a line's start.
    Detector("secret_field", r"""(?P<q>\\?["'])""" + _SECRET_NAME + r"(?P=q)\s*:\s*" + _VALUE,
             folded=("token", "key", "secret", "pass", "pwd", "credential", "cookie")),
    Detector("secret_field", r"(?<![\w.-])-{0,2}" + _SECRET_NAME + r"\s*=\s*" + _VALUE,
             folded=("token", "key", "secret", "pass", "pwd", "credential", "cookie")),
    # `name: value` where a line, a string or a list item starts (YAML, a log, a message's text).
    Detector("secret_field", r"(?:(?m:^)|(?<=[\s\"'{(,\[]))(?:-[ \t]+)?" + _SECRET_NAME + r":(?:[ \t]+|(?=\[))" + _VALUE,
             folded=("token", "key", "secret", "pass", "pwd", "credential", "cookie")),
    # `--name VALUE` in text (a command line quoted in a message or a log).
    Detector("secret_field", r"(?<![\w.-])--" + _SECRET_NAME + r"[ \t]+(?!-)" + _VALUE,
             folded=("token", "key", "secret", "pass", "pwd", "credential", "cookie")),
)
NAMES: tuple[str, ...] = tuple(dict.fromkeys(d.name for d in BUILTINS))

# A JSON key, as it is: only a token or a value in it (a key named like a secret is the walk's):
# every cased trigger and shape. Compiled on first use, as the gate is.
@functools.lru_cache(maxsize=1)
def key_gate() -> re.Pattern[str]:
    return re.compile("|".join((word_tree([t.replace("://", "//") for d in BUILTINS for t in d.cased] + ["\\u", "\\/"]),
                                *dict.fromkeys(d.shape for d in BUILTINS if d.shape))))


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
    "cookie": "cookie", "setcookie": "cookie", "cookies": "cookie", "secrets": "secret", "passwords": "password",
}
# A name of several words is a secret's when its last word is one of these ...
_LAST_WORDS = {"token", "secret", "key", "password", "passwd", "pwd", "pass", "credentials", "credential", "cookie"}
# A single word ends like a secret's name only with one of these (not key: monkey, hockey).
_RUN_TOGETHER = ("password", "passwd", "secret", "token", "apikey")
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
    if len(words) == 1:
        # One word run together, as variables are named (PGPASSWORD, MYSQLPASSWORD, VAULTTOKEN).
        prefix = next((joined[:-len(w)] for w in _RUN_TOGETHER if joined.endswith(w)), "")
        return joined[:64] if prefix and prefix not in _NOT_SECRET_WORDS else None
    if len(words) < 2 or words[-1] not in _LAST_WORDS or _NOT_SECRET_WORDS.intersection(words[:-1]):
        return None
    return "_".join(words)[:64]


def kind_of_match(detector: Detector, groups: dict[str, str | None]) -> str | None:
    """The marker kind for one match of ``detector`` (None: not a secret after all)."""
    if detector.kind:
        return detector.kind
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
