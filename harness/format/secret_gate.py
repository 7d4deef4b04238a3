"""The cheap look before redaction: whether a value may hold anything a rule could find.

Importing the redaction machinery (harness.format.redact) costs a cold fake more than
answering a handshake, and most reports hold nothing to scrub: a few paths, a status.
So a report passes this gate first, and only what may hold a secret goes on to the
``Redactor``. The gate is a superset of the built-in detectors, of secret-named fields
and of this environment's secret-looking values: False means none of them could match.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

GITLAB_PREFIXES = ("glpat", "gldt", "glrt", "glptt", "glcbt", "gloas", "glft", "glsoat", "glimt", "glagent")

# Every trigger of harness.format.detectors (a test checks the cover) and the words of every
# secret-named field, lowered; ``//`` stands for ``://`` (a colon is in every JSON line); ``\\u``
# and ``\\/``: JSON escapes can hide a trigger, and then only the decoded text can tell.
GATE_WORDS = (
    "akia", "asia", "abia", "acca", "a3t", "aiza", "authorization", "private key", "service_account",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", *(p + "-" for p in GITLAB_PREFIXES),
    "xox", "xapp-", "hooks.slack.com", "sk-", "eyj", "//", "@", "\\u", "\\/", "sharedaccess",
    "token", "key", "secret", "pass", "pwd", "credential", "cookie", "bearer", "basic", "curl", "mysql", "mariadb", "sshpass", "sig=",
    # Issued tokens (harness.format.detectors.ISSUED), by the prefix their issuer gives them.
    "sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_", "whsec_", "npm_", "pypi-", "hf_",
    "api_org_", "ya29.", "gocspx-", "sg.", "discord", "shpat_", "shpca_", "shppa_", "shpss_",
    "dp.pt.", "dp.st.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit.", "dapi", "dop_v1_", "doo_v1_", "dor_v1_",
    "lin_api_", "pmak-", "pul-", "q~", "gsk_", "hvs.", "hvb.", "atlasv1", "glsa_", "glc_", "nrak-", "nrjs-",
    "nrii-", "sntrys_", "sntryu_", "rubygems_", "sq0atp-", "sq0csp-", "pplx-", "xai-", "r8_", "ops_eyj",
    "ntn_", "fo1_", "dt0c01.", "sha256~", "pnu_", "rdme_", "pscale_", "tk-us-", "shippo_", "duffel_", "tfp_",
    "sgp_", "fio-u-", "clojars_", "p8e-", "v1.0-", "hrku-", "dckr_pat_", "sbp_", "sb_secret_", "rnd_", "nfp_",
    "sk.eyj", "age-secret-key-1", "eaaa", "ltai", "atatt3", "ezak", "eztk", "flwseck", "akcp", "gr1348941",
)
# Shapes with no distinctive prefix (Twilio's SK/AC + 32 hex, Mailchimp's -usN, Airtable's
# pat...., Telegram's digits:AA...; a colon is in every JSON line, so not a separator below), lowered: each detector's ``shape`` is covered by one of these. Each starts with a
# literal, so the regex engine finds its candidates by a fast scan.
SHAPE_MIN = 34  # the shortest match of a shape (SK + 32 hex)
GATE_SHAPES = (r":aa(?<=[0-9]:aa)", r"sk[0-9a-f]{32}", r"ac[0-9a-f]{32}", r"-us\d(?<=[0-9a-f]{32}-us\d)", r"pat[a-z0-9]{14}\.[0-9a-f]")
# A word holding one of these is looked for from it (`_(?<=npm)`): the regex engine scans for
# one character, where a tree of a hundred words would try nearly every position.
_SEPARATORS = "_-.~"


def word_tree(words: tuple[str, ...] | list[str]) -> str:
    """One regex alternation for ``words``, spelled as a tree (common prefixes factored out), so
    the regex engine tries few branches per position. A word holding another is dropped: a
    search for the shorter one finds it too."""
    kept = sorted({w for w in words if not any(o != w and o in w for o in words)})
    tree: dict[str, Any] = {}
    for word in kept:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        return alts[0] if len(alts) == 1 and "" not in node else "(?:" + "|".join(alts) + ")" + ("?" if "" in node else "")
    return emit(tree)


def _by_separator(words: list[str]) -> str:
    """``words`` (each holding a separator) as one regex that starts at a separator and looks
    behind it one character at a time, along a tree of the reversed prefixes (so a separator
    that follows no prefix's last letter costs one look per letter, not one per word).
    Compile with re.S: a ``.`` there only skips characters already looked at."""
    groups: dict[str, dict[str, Any]] = {}
    for word in words:
        i = min(word.index(c) for c in _SEPARATORS if c in word)
        node = groups.setdefault(word[i], {})
        for ch in reversed(word[:i]):
            node = node.setdefault(ch, {})
        node.setdefault("", set()).add(word[i + 1:])

    def emit(node: dict[str, Any], depth: int) -> str:
        alts = [f"(?<={re.escape(ch)}{'.' * (depth + 1)})" + emit(child, depth + 1)
                for ch, child in sorted(node.items()) if ch]
        alts += [f"(?={re.escape(rest)})" if rest else "" for rest in sorted(node.get("", ()))]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    return "|".join(re.escape(c) + emit(tree, 0) for c, tree in groups.items())


class _Gate:
    """One look at a text says whether any built-in detector could match it (False: none can).
    Its regexes are compiled on the first look: importing this module costs a fake that never
    looks (most never do) nothing."""

    def _compile(self) -> tuple[re.Pattern[str], re.Pattern[str], tuple[re.Pattern[str], ...]]:
        kept = [w for w in GATE_WORDS if not any(o != w and o in w for o in GATE_WORDS)]
        spaced = [w for w in kept if any(c in w for c in _SEPARATORS) and len(w) > 1]
        self._regexes = (re.compile(word_tree([w for w in kept if w not in spaced])),
                         re.compile(_by_separator(spaced), re.S), tuple(re.compile(p) for p in GATE_SHAPES))
        return self._regexes

    def search(self, text: str) -> bool:
        words, spaced, shapes = self.__dict__.get("_regexes") or self._compile()
        lowered = text.lower()
        if words.search(lowered) or spaced.search(lowered):
            return True
        # Every shape is longer than this: a short string (most of a message's) needs no look.
        return len(lowered) >= SHAPE_MIN and any(p.search(lowered) for p in shapes)


GATE = _Gate()

# Variables whose values are redacted literally, by a word in their name ...
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|CREDENTIAL|AUTH|COOKIE|SESSION|DSN|DATABASE_URL", re.I)
# ... except these, whose values are paths, sockets or desktop names that messages do carry.
NOT_SECRET_ENV = re.compile(r"^(?:XDG_SESSION_\w+|DESKTOP_SESSION|SESSION_MANAGER|DBUS_SESSION_BUS_ADDRESS|"
                            r"SSH_AUTH_SOCK|XAUTHORITY|\w*ASKPASS\w*|KEYTIMEOUT)$")
LONG_LITERAL = 8   # from this length a value is matched anywhere, as part of a longer string too
SHORT_LITERAL = 4  # shorter values of secret-looking names are not redacted (1, true, yes)


def secret_env_values(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, value) of the variables whose name looks secret (…_KEY, …TOKEN, DATABASE_URL, …)
    and whose value could be one, sorted by name."""
    found = []
    for name, value in sorted(env.items()):
        if not SECRET_ENV_NAME.search(name) or NOT_SECRET_ENV.match(name) or "redacted" in value:
            continue
        if value.startswith(("/", "~")) or len(value) < SHORT_LITERAL:
            continue  # paths appear in messages; 1, yes, true say nothing
        if len(value) < LONG_LITERAL and value.isalpha() and value.islower():
            continue  # a short plain word (a desktop's name) is no secret
        found.append((name, value))
    return found


def may_hold_secret(value: Any, literals: tuple[str, ...]) -> bool:
    """Whether a built-in detector, a secret-named field or one of ``literals`` (the values
    of ``secret_env_values``) could find anything in ``value``, a JSON value or a text.
    Every string is looked at, keys too; numbers and booleans only matter under a secret-named
    key, which the key's own look catches. A backslash may be a JSON escape hiding a literal:
    such a string may hold one."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts: Any = (item,)
        elif isinstance(item, dict):
            stack.extend(item.values())
            texts = [k if isinstance(k, str) else str(k) for k in item]
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
            continue
        else:
            continue
        for text in texts:
            if GATE.search(text) or (literals and ("\\" in text or any(v in text for v in literals))):
                return True
    return False
