"""Secret scrubbing, applied when a cassette is written and again when matching.

A secret is replaced by a marker ``{{redacted:KIND}}``. The same ``Redactor``
runs at record time (on every message, raw line and stderr line) and at replay
(on each live message before it is compared with the recorded one), so it is
deterministic and idempotent: markers are never touched, and scrubbing a
scrubbed value changes nothing.

Detectors:
- built-in text patterns: OpenAI keys, ``Bearer`` tokens, JWTs, email addresses;
- JSON fields whose name says "secret" (access_token, apiKey, password, ...);
- literal values of secret-looking environment variables (``from_environ``),
  so a token the child process holds cannot leak even in an unknown format;
- user rules: ``KIND=REGEX`` over text, ``KIND=$.json.path[*].x`` over messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Union

from harness.errors import UsageError

MARKER_RE = re.compile(r"\{\{redacted:[^{}]*\}\}")
KIND_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


def marker(kind: str) -> str:
    return "{{redacted:" + kind + "}}"


# Text detectors, tried left to right at each position (earlier wins a tie).
BUILTIN_PATTERNS: tuple[tuple[str, str], ...] = (
    ("openai_api_key", r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    ("bearer_token", r"(?<=[Bb]earer )[A-Za-z0-9._~+/-]{8,}=*"),
    ("email", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
)

# A substring every match of a built-in pattern contains.
BUILTIN_TRIGGERS = {"openai_api_key": "sk-", "jwt": "eyJ", "bearer_token": "earer ", "email": "@"}

# JSON field names (compared without case, "_" and "-") whose value is a secret.
SECRET_FIELDS: dict[str, str] = {
    "accesstoken": "access_token",
    "refreshtoken": "refresh_token",
    "idtoken": "id_token",
    "apikey": "api_key",
    "authorization": "authorization",
    "password": "password",
    "secret": "secret",
    "clientsecret": "secret",
}

# Every name in SECRET_FIELDS, normalized, ends with one of these.
FIELD_WORDS = ("token", "key", "authorization", "password", "secret")

# Environment variables whose values are redacted literally.
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)
MIN_LITERAL = 8


def _field_kind(key: str) -> str | None:
    return SECRET_FIELDS.get(key.replace("_", "").replace("-", "").lower())


@dataclass(frozen=True)
class RegexRule:
    kind: str
    pattern: str


@dataclass(frozen=True)
class LiteralRule:
    kind: str
    value: str


@dataclass(frozen=True)
class PathRule:
    kind: str
    path: str
    steps: tuple[Union[str, int, None], ...] = ()  # key, index, or None for [*]


Rule = Union[RegexRule, LiteralRule, PathRule]

_PATH_TOKEN = re.compile(r"\.([A-Za-z_$][\w$-]*)|\[(\*|\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def parse_path(kind: str, path: str) -> PathRule:
    """``$.a.b[*].c`` / ``$.a[0]`` / ``$['odd key']`` into a PathRule."""
    if not path.startswith("$"):
        raise UsageError(f"redaction path {path!r} for {kind!r} must start with '$', like $.params.token")
    steps: list[Union[str, int, None]] = []
    pos = 1
    while pos < len(path):
        m = _PATH_TOKEN.match(path, pos)
        if not m:
            raise UsageError(f"redaction path {path!r} for {kind!r} is not understood at "
                             f"{path[pos:]!r}; use dotted names, [N] and [*], like $.params.items[*].token")
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(None if m.group(2) == "*" else int(m.group(2)))
        else:
            steps.append(m.group(3))
        pos = m.end()
    if not steps:
        raise UsageError(f"redaction path {path!r} for {kind!r} names the whole message; name a field")
    return PathRule(kind, path, tuple(steps))


def parse_rule_arg(arg: str, *, path: bool) -> Rule:
    """A command-line ``KIND=REGEX`` or ``KIND=$.json.path``."""
    kind, sep, spec = arg.partition("=")
    if not sep or not spec or not KIND_RE.match(kind):
        raise UsageError(f"redaction rule {arg!r} must look like KIND={'$.a.b' if path else 'REGEX'} "
                         "with KIND made of letters, digits, '_', '.', ':' or '-'")
    if path:
        return parse_path(kind, spec)
    try:
        re.compile(spec)
    except re.error as exc:
        raise UsageError(f"redaction rule {arg!r}: the regex does not compile ({exc})") from None
    return RegexRule(kind, spec)


def secrets_from_environ(env: Mapping[str, str]) -> list[LiteralRule]:
    """Literal rules for env vars whose name looks secret (…_KEY, …TOKEN, …)."""
    rules = []
    for name, value in sorted(env.items()):
        # Paths (SSH_AUTH_SOCK, XAUTHORITY) are not secrets and appear in messages.
        if SECRET_ENV_NAME.search(name) and len(value) >= MIN_LITERAL and not value.startswith("/") \
                and "redacted" not in value:
            rules.append(LiteralRule(f"env:{name}", value))
    return rules


@dataclass
class Redactor:
    """Scrubs secrets out of messages and bytes; remembers which kinds it found."""

    rules: list[Rule] = field(default_factory=list)
    builtins: bool = True
    applied: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for rule in self.rules:
            if not KIND_RE.match(rule.kind):
                raise UsageError(f"redaction kind {rule.kind!r} may only hold letters, digits, '_', '.', ':' or '-'")
        # (kind, pattern, trigger): a trigger is a substring every match contains.
        text: list[tuple[str, str, str | None]] = []
        # Longest literals first, so a secret that contains another is caught whole.
        literals = sorted((r for r in self.rules if isinstance(r, LiteralRule) and r.value),
                          key=lambda r: -len(r.value))
        text += [(r.kind, re.escape(r.value), r.value) for r in literals]
        text += [(r.kind, r.pattern, None) for r in self.rules if isinstance(r, RegexRule)]
        if self.builtins:
            text += [(kind, pattern, BUILTIN_TRIGGERS[kind]) for kind, pattern in BUILTIN_PATTERNS]
        self._paths = [r for r in self.rules if isinstance(r, PathRule)]
        self._kinds = [kind for kind, _, _ in text]
        self._alternatives = [(f"(?P<g{i}>{pattern})", trigger) for i, (_, pattern, trigger) in enumerate(text)]
        # Python's re tries every alternative at every position, so a huge line is
        # scanned only with the alternatives whose trigger it contains (one regex per
        # such subset, cached); existing markers always match first and are kept.
        self._compiled: dict[tuple[int, ...], re.Pattern[str] | None] = {}
        # What each trigger looks like inside raw JSON text, computed once (hot path of the recorder).
        self._untriggered = any(t is None for _, t in self._alternatives)
        self._json_triggers = tuple(json.dumps(t, ensure_ascii=False)[1:-1] for _, t in self._alternatives
                                    if t is not None)

    def _regex_for(self, s: str) -> re.Pattern[str] | None:
        chosen = tuple(i for i, (_, trigger) in enumerate(self._alternatives) if trigger is None or trigger in s)
        if chosen not in self._compiled:
            parts = [f"(?P<m>{MARKER_RE.pattern})"] + [self._alternatives[i][0] for i in chosen]
            self._compiled[chosen] = re.compile("|".join(parts)) if chosen else None
        return self._compiled[chosen]

    @classmethod
    def default(cls, rules: Iterable[Rule] = (), env: Mapping[str, str] | None = None) -> "Redactor":
        """Built-ins + user rules + the secret-looking values of ``env``."""
        all_rules = list(rules)
        if env is not None:
            all_rules += secrets_from_environ(env)
        return cls(all_rules)

    # -- text ----------------------------------------------------------------

    def _sub(self, m: re.Match[str]) -> str:
        name = m.lastgroup
        if name == "m" or name is None:
            return m.group(0)
        kind = self._kinds[int(name[1:])]
        self.applied.add(kind)
        return marker(kind)

    def scrub_text(self, s: str) -> str:
        regex = self._regex_for(s)
        return s if regex is None else regex.sub(self._sub, s)

    def scrub_bytes(self, data: bytes) -> bytes:
        """Raw lines and stderr: bytes that need not be UTF-8 keep every other byte."""
        text = data.decode("utf-8", "surrogateescape")
        out = self.scrub_text(text)
        return data if out == text else out.encode("utf-8", "surrogateescape")

    # -- JSON ----------------------------------------------------------------

    def scrub(self, obj: Any, source: str | None = None) -> Any:
        """A scrubbed copy of a JSON value (the input is not modified).

        ``source``, the JSON text ``obj`` was parsed from, lets a message that
        holds nothing any rule could match skip the walk (the common case)."""
        for rule in self._paths:
            obj = self._scrub_path(obj, rule.steps, rule.kind)
        if source is not None and not self._may_match(source):
            return obj
        return self._walk(obj)

    def _may_match(self, source: str) -> bool:
        if self._untriggered or "\\u" in source:
            return True  # escapes hide substrings; user regexes have no trigger
        lowered = source.lower()
        if any(word in lowered for word in FIELD_WORDS):
            return True
        return any(t in source for t in self._json_triggers)

    def _walk(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.scrub_text(obj)
        if isinstance(obj, dict):
            out = {}
            for key, value in obj.items():
                kind = _field_kind(key) if isinstance(key, str) else None
                if kind and self._secret_value(value):
                    if not (isinstance(value, str) and MARKER_RE.fullmatch(value)):
                        self.applied.add(kind)
                        value = marker(kind)
                    out[self.scrub_text(key)] = value
                else:
                    out[self.scrub_text(key)] = self._walk(value)
            return out
        if isinstance(obj, list):
            return [self._walk(v) for v in obj]
        return obj

    @staticmethod
    def _secret_value(value: Any) -> bool:
        # `hasPassword: true` or `apiKey: null` carry no secret; keep their type.
        if isinstance(value, bool) or value is None:
            return False
        return isinstance(value, (int, float)) or (isinstance(value, str) and value != "")

    def _scrub_path(self, obj: Any, steps: tuple[Union[str, int, None], ...], kind: str) -> Any:
        if not steps:
            if obj is None or (isinstance(obj, str) and MARKER_RE.fullmatch(obj)):
                return obj
            self.applied.add(kind)
            return marker(kind)
        step, rest = steps[0], steps[1:]
        if isinstance(step, str) and isinstance(obj, dict) and step in obj:
            return {k: (self._scrub_path(v, rest, kind) if k == step else v) for k, v in obj.items()}
        if isinstance(obj, list):
            if step is None:
                return [self._scrub_path(v, rest, kind) for v in obj]
            if isinstance(step, int) and -len(obj) <= step < len(obj):
                out = list(obj)
                out[step] = self._scrub_path(out[step], rest, kind)
                return out
        if step is None and isinstance(obj, dict):
            return {k: self._scrub_path(v, rest, kind) for k, v in obj.items()}
        return obj
