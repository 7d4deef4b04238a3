"""Secret scrubbing: applied when a cassette is written, and again at replay.

A secret is replaced by a marker ``{{redacted:KIND}}``. The recorder scrubs every
message, raw line, stderr line and the command line; the cassette header names the
rules that were in force (``rules_meta``: detector names, user regexes and JSON paths,
environment variable names, never a value). At replay ``Redactor.from_meta`` rebuilds
the same rules, taking each named variable's value from the replay's own environment,
and the engine scrubs every live message with them before matching, so a marker
matches the live secret; reports are scrubbed with those rules and more
(``widened``). Scrubbing is deterministic and idempotent: markers are never
touched, and scrubbing a scrubbed value changes nothing.

Rules:
- the built-in detectors (harness.format.detectors), by name;
- JSON fields whose name says "secret" (apiKey, access_token, PASSWORD, ...);
- literal values of environment variables: those the user names, and those whose
  name looks secret (``secrets_from_environ``), so a token in an unknown format is caught;
- user rules: ``KIND=REGEX`` over text, ``KIND=$.json.path[*].x`` over messages.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from harness.errors import CassetteError, UsageError
from harness.format import detectors as det
from harness.format.secret_gate import GATE
from harness.format.rules import (KIND_RE, LiteralRule, PathRule, RegexRule, Rule, env_rule, parse_path, parse_rule_arg,
                                  scrub_path, secrets_from_environ)

MARKER_RE = re.compile(det.MARKER)
_SECRET_GROUPS = ("s", "sd", "sq", "sb")
_GROUP = re.compile(r"\(\?P<(\w+)>")
_BACKREF = re.compile(r"\(\?P=(\w+)\)")
_FLAG = re.compile(r"^-{1,2}([A-Za-z][\w.-]*)$")
PLAIN_KEYS = 10_000  # JSON keys remembered as holding nothing to scrub
PLAIN_TEXT = 256     # strings up to this length remembered (as many) as holding nothing to scrub
NUMBERED = 10_000    # distinct secrets a session remembers (memory stays bounded); past them, none is bound


def marker(kind: str) -> str:
    return "{{redacted:" + kind + "}}"


@dataclass
class MarkerTable:
    """The marker each secret got in one session: one value keeps one marker all session long,
    and a second value of a kind gets ``{{redacted:KIND#2}}``, a third ``#3``, so that at replay
    each marker binds to its own value. The values stay in this object (memory) and nowhere
    else: nothing writes or reports ``bound``.

    ``planned``, at replay: the markers the recording gave the values of a kind that the peer
    said, in the order it first said them; the live peer's n-th value of that kind takes the
    n-th (the same client says its secrets in the same order)."""

    planned: Callable[[str], list[str]] | None = field(default=None, repr=False)
    # marker -> the first value it stood for; kept out of repr, so no message or log says one.
    bound: dict[str, Any] = field(default_factory=dict, repr=False)
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _count: dict[str, int] = field(default_factory=dict, repr=False)

    def marker_for(self, kind: str, value: Any) -> str:
        key = (kind, value if isinstance(value, str) else json.dumps(value))
        found = self._by_value.get(key)
        if found is not None:
            return found
        n = self._count.get(kind, 0)
        plan = self.planned(kind) if self.planned is not None else []
        if plan:
            found = plan[min(n, len(plan) - 1)]  # more values than recorded: the last one's (an old cassette)
        else:
            found = marker(kind if n == 0 else f"{kind}#{n + 1}")
        if len(self._by_value) < NUMBERED:
            self._count[kind] = n + 1
            self._by_value[key] = found
            self.bound.setdefault(found, value)
        return found


# One regex for a set of alternatives, and each alternative's secret groups.
_Compiled = tuple[re.Pattern[str], dict[int, tuple[str, ...]]]


@dataclass(frozen=True)
class _Alt:
    """One alternative of the combined text regex: a detector, a literal or a user regex."""

    kind: str                      # "" when the detector decides per match
    pattern: str
    cased: tuple[str, ...] | None  # None: no trigger, always tried
    folded: tuple[str, ...] = ()
    detector: det.Detector | None = None
    shape: str = ""                # tried when this regex is found (a detector with no prefix)


@dataclass
class Redactor:
    """Scrubs secrets out of messages and bytes; remembers which kinds it found.

    ``detectors``: the built-in detectors in force, by name (None: all of them)."""

    rules: list[Rule] = field(default_factory=list)
    detectors: Sequence[str] | None = None
    applied: set[str] = field(default_factory=set)
    markers: MarkerTable = field(default_factory=MarkerTable)

    def __post_init__(self) -> None:
        names = det.NAMES if self.detectors is None else tuple(self.detectors)
        unknown = sorted(set(names) - set(det.NAMES))
        if unknown:
            raise UsageError(f"unknown redaction detector(s) {unknown}; known: {list(det.NAMES)}")
        self.detectors = tuple(n for n in det.NAMES if n in names)
        for rule in self.rules:
            if not KIND_RE.match(rule.kind):
                raise UsageError(f"redaction kind {rule.kind!r} may only hold letters, digits, '_', '.', ':' or '-'")
        # Longest literals first, so a secret that contains another is caught whole; a short
        # one only as a word of its own (a PIN must not eat the digits of every number).
        literals = sorted((r for r in self.rules if isinstance(r, LiteralRule) and r.value),
                          key=lambda r: -len(r.value))
        alts = [_Alt(r.kind, r.pattern(), (r.value,)) for r in literals]
        alts += [_Alt(r.kind, r.pattern, None) for r in self.rules if isinstance(r, RegexRule)]
        alts += [_Alt("", d.pattern, d.cased, d.folded, d, d.shape) for d in det.BUILTINS if d.name in self.detectors]
        self._alts = alts
        self._cased = _trigger_finder(tuple((t, i) for i, a in enumerate(alts) for t in a.cased or ()))
        self._folded = _trigger_finder(tuple((t, i) for i, a in enumerate(alts) for t in a.folded))
        self._shaped = [(re.compile(a.shape), i) for i, a in enumerate(alts) if a.shape]
        self._untriggered = tuple(i for i, a in enumerate(alts) if a.cased is None)
        self._paths = [r for r in self.rules if isinstance(r, PathRule)]
        self._literals = tuple(r.value for r in literals)
        self._json_literals = tuple(json.dumps(v, ensure_ascii=False)[1:-1] for v in self._literals)
        self._always = any(a.cased is None for a in alts)
        self._fields = "secret_field" in self.detectors
        self._service_accounts = "gcp_service_account" in self.detectors
        self._plain_keys: set[str] = set()
        self._plain_texts: set[str] = set()
        self._compiled: dict[tuple[int, ...], _Compiled | None] = {}

    # -- building one ------------------------------------------------------------------------

    @classmethod
    def default(cls, rules: Iterable[Rule] = (), env: Mapping[str, str] | None = None,
                named_env: Iterable[str] = ()) -> "Redactor":
        """Every built-in + user rules + the values of the variables named in ``named_env``
        (a UsageError when one is unset) + the secret-looking values of ``env``."""
        all_rules = list(rules)
        env = env or {}
        named = list(dict.fromkeys(named_env))
        for name in named:
            if not env.get(name):
                raise UsageError(f"--redact-env {name}: the variable is not set (or empty) in the recorder's "
                                 "environment, so there is no value to redact")
            all_rules.append(env_rule(name, env[name], named=True))
        all_rules += [r for r in secrets_from_environ(env) if r.kind[4:] not in named]
        # The header records user regexes: one that is itself a secret (a key pasted as a
        # pattern) would put it in the cassette.
        others = cls([r for r in all_rules if not isinstance(r, RegexRule)])
        for rule in all_rules:
            if isinstance(rule, RegexRule) and others.scrub_text(rule.pattern) != rule.pattern:
                raise UsageError(f"--redact-regex {rule.kind}=...: the pattern itself holds a secret "
                                 f"({', '.join(sorted(others.applied))}), and cassette headers record patterns; "
                                 "use --redact-env NAME for a secret you hold in an environment variable")
        return cls(all_rules)

    def rules_meta(self) -> dict[str, Any]:
        """The header's ``redaction_rules``: which rules were in force, never a value.
        Environment variables are named when the user named them or their value was found."""
        env = sorted({r.kind[4:] for r in self.rules if isinstance(r, LiteralRule) and r.kind.startswith("env:")
                      and (r.named or r.kind in self.applied)})
        return {"detectors": list(self.detectors or ()),
                "regex": [{"kind": r.kind, "pattern": r.pattern} for r in self.rules if isinstance(r, RegexRule)],
                "paths": [{"kind": r.kind, "path": r.path} for r in self._paths],
                "env": env}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], env: Mapping[str, str],
                  where: str = "the cassette") -> "Redactor | None":
        """The rules a cassette was recorded with, each named variable's value taken from
        ``env``; None for a cassette whose header names none (recorded before they were named)."""
        found = _rules_from_meta(meta, env, where)
        return None if found is None else cls(found[1], found[0])

    @classmethod
    def widened(cls, meta: Mapping[str, Any], env: Mapping[str, str],
                    where: str = "the cassette") -> "Redactor":
        """The cassette's rules, every built-in, and this environment's secret-looking values:
        what scrubs a report (which may say more than matching compares) and what records the
        cassette again (harness.drift.rerecord)."""
        found = _rules_from_meta(meta, env, where)
        rules = found[1] if found else []
        known = {r.kind for r in rules}
        return cls(rules + [r for r in secrets_from_environ(env) if r.kind not in known])

    def detects(self, name: str) -> bool:
        return name in (self.detectors or ())

    def line_scrubber(self) -> "LineScrubber":
        return LineScrubber(self)

    # -- text ----------------------------------------------------------------------------------

    def _hit(self, s: str) -> bool:
        """Whether any rule could match ``s`` (a superset: the cheap look before the real one)."""
        if self._always:
            return True
        if len(self._alts) > len(self._literals) and GATE.search(s):
            return True
        return any(v in s for v in self._literals)

    def _regex_for(self, s: str, exclude: frozenset[int] = frozenset()) -> "_Compiled | None":
        found = set(self._untriggered)
        found.update(*(self._cased[1][m.group(1)] for m in self._cased[0].finditer(s)))
        found.update(*(self._folded[1][m.group(1)] for m in self._folded[0].finditer(s.lower())))
        found.update(i for shape, i in self._shaped if shape.search(s))
        chosen = tuple(sorted(found - exclude))
        if chosen not in self._compiled:
            self._compiled[chosen] = _combine(self._alts, chosen) if chosen else None
        return self._compiled[chosen]

    def _replacements(self, s: str, exclude: frozenset[int] = frozenset()) -> Iterator[tuple[int, int, str]]:
        """(start, end, kind) for each secret in ``s``, left to right."""
        found = self._regex_for(s, exclude)
        if found is None:
            return
        regex, secret_groups = found
        for m in regex.finditer(s):
            name = m.lastgroup
            if name is None or name == "m":
                continue  # a marker: kept as it is
            i = int(name[2:])
            alt = self._alts[i]
            groups = {k.rsplit("_", 1)[0]: v for k, v in m.groupdict().items() if k.endswith(f"_{i}")}
            kind = alt.kind or det.kind_of_match(alt.detector, groups)  # type: ignore[arg-type]
            if kind is None:
                # Not a secret's name after all (sortKey=...): what it holds may still be one.
                inner = self._replacements(m.group(0), exclude | {i})
                yield from ((m.start() + a, m.start() + b, r) for a, b, r in inner)
                continue
            span = next(((m.start(g), m.end(g)) for g in secret_groups[i] if m.group(g) is not None),
                        (m.start(), m.end()))
            value = s[span[0]:span[1]]
            if "{{" in value or value.rstrip(",;)}]") in ("true", "false", "null", "[", "{"):
                continue  # a marker or placeholder already, or no secret (hasPassword: true)
            yield span[0], span[1], kind

    def _mark(self, kind: str, value: Any) -> str:
        self.applied.add(kind)
        return self.markers.marker_for(kind, value)

    def scrub_text(self, s: str) -> str:
        # A stream repeats its short strings (methods, ids, statuses): one found plain is
        # remembered, and the gate's three looks are not taken again.
        if s in self._plain_texts:
            return s
        if not self._hit(s):
            if len(s) <= PLAIN_TEXT and len(self._plain_texts) < PLAIN_KEYS:
                self._plain_texts.add(s)
            return s
        return _apply(s, list(self._replacements(s)), self._mark)

    def scrub_raw(self, s: str) -> str:
        """A line that is not a JSON message: also the secrets that JSON escapes
        (``\\u0067hp_...``, ``https:\\/\\/``) hide, if the line is JSON that did not parse."""
        if det.has_escapes(s):
            view, spans = det.unescaped_view(s)
            if self._hit(view):
                # The marker is the decoded value's: the same secret escaped or not is one value.
                s = _apply(s, [(spans[a][0], spans[b - 1][1], k, view[a:b]) for a, b, k in self._replacements(view)
                               if b > a], self._mark)
        return self.scrub_text(s)

    def scrub_bytes(self, data: bytes) -> bytes:
        """Raw lines and stderr: bytes that need not be UTF-8 keep every other byte."""
        text = data.decode("utf-8", "surrogateescape")
        out = self.scrub_raw(text)
        return data if out == text else out.encode("utf-8", "surrogateescape")

    def scrub_argv(self, argv: Sequence[str]) -> list[str]:
        """A command line: each argument, and the value after a flag named like a secret
        (``--api-key VALUE``); ``--api-key=VALUE`` is a text rule's. The arguments are also
        looked at together, as a shell line (``curl -u user:PASSWORD``, ``mysql -pPASSWORD``:
        the context is in another argument); a secret found there within one argument is
        replaced in it."""
        joined = " ".join(argv)
        spans: list[list[tuple[int, ...]]] = [[] for _ in argv]
        if self._hit(joined):
            starts, pos = [], 0
            for a in argv:
                starts.append(pos)
                pos += len(a) + 1
            for start, end, kind in self._replacements(joined):
                k = next((k for k, at in enumerate(starts) if at <= start and end <= at + len(argv[k])), None)
                if k is not None:
                    spans[k].append((start - starts[k], end - starts[k], kind))
        out = [self.scrub_text(_apply(a, found, self._mark)) for a, found in zip(argv, spans)]
        for n in range(len(out) - 1):
            flag = _FLAG.match(out[n])
            kind = det.secret_field_kind(flag.group(1)) if flag and self._fields else None
            if kind and not out[n + 1].startswith("-") and "{{" not in out[n + 1]:
                out[n + 1] = self._mark(kind, out[n + 1])
        return out

    # -- JSON ----------------------------------------------------------------------------------

    def scrub(self, obj: Any, source: str | None = None) -> Any:
        """A scrubbed copy of a JSON value (the input is not modified; an unchanged value
        comes back as the same object). ``source``, the JSON text ``obj`` was parsed from,
        lets a message that holds nothing any rule could match skip the walk."""
        for rule in self._paths:
            obj = scrub_path(obj, rule.steps, rule.kind, self._mark)
        if source is not None and not self._may_match(source):
            return obj
        return self._walk(obj)

    def _may_match(self, source: str) -> bool:
        if self._always or GATE.search(source):
            return True
        return any(v in source for v in self._json_literals)

    def _walk(self, obj: Any, under: str | None = None) -> Any:
        """``under``: the kind of the secret-named key this value sits under (a list or an
        object there holds that secret: Go's headers are ``{"Cookie": ["sid=..."]}``)."""
        if under is not None and _secret_value(obj):
            return obj if isinstance(obj, str) and "{{" in obj else self._mark(under, obj)
        if isinstance(obj, str):
            return self.scrub_text(obj)
        if isinstance(obj, list):
            out = [self._walk(v, under) for v in obj]
            return obj if all(a is b for a, b in zip(out, obj)) else out
        if not isinstance(obj, dict):
            return obj
        account = self._service_accounts and obj.get("type") == "service_account"
        result, changed = {}, False
        for key, value in obj.items():
            kind = None
            if isinstance(key, str):
                if account and key in ("private_key", "private_key_id"):
                    kind = "gcp_service_account"
                elif self._fields:
                    kind = det.secret_field_kind(key)
            value = self._walk(value, kind or under)
            new_key = self._scrub_key(key) if isinstance(key, str) else key
            changed = changed or new_key is not key or value is not obj[key]
            result[new_key] = value
        return result if changed else obj


    def _scrub_key(self, key: str) -> str:
        # Keys repeat (a stream is the same few keys over and over) and a secret-named key is
        # the walk's business, so only a key that holds a token or a value is scanned, once.
        if key in self._plain_keys:
            return key
        if det.key_gate().search(key) or any(v in key for v in self._literals) or self._always:
            return self.scrub_text(key)
        if len(self._plain_keys) < PLAIN_KEYS:
            self._plain_keys.add(key)
        return key


@dataclass
class LineScrubber:
    """Scrubs a stream of lines (stderr, raw lines of one side): a PEM private key block
    spans lines, and every line of it, up to its END line, becomes the marker."""

    redactor: Redactor
    in_key: bool = False

    def scrub_bytes(self, data: bytes) -> bytes:
        text = data.decode("utf-8", "surrogateescape")
        if self.in_key:
            end = det.PEM_END.search(text)
            if end is None:
                return marker("private_key").encode()
            self.in_key = False
            return (marker("private_key") + self.redactor.scrub_raw(text[end.end():])).encode("utf-8",
                                                                                              "surrogateescape")
        out = self.redactor.scrub_raw(text)
        if self.redactor.detects("private_key"):
            begins = list(det.PEM_BEGIN.finditer(text))
            self.in_key = bool(begins) and det.PEM_END.search(text, begins[-1].end()) is None
        return data if out == text else out.encode("utf-8", "surrogateescape")


def _secret_value(value: Any) -> bool:
    # `hasPassword: true` or `apiKey: null` carry no secret; keep their type.
    if isinstance(value, bool) or value is None:
        return False
    return isinstance(value, (int, float)) or (isinstance(value, str) and value != "")


def _apply(s: str, found: list[tuple[int, ...]], mark: Callable[[str, str], str]) -> str:
    """``s`` with each (start, end, kind[, value]) span replaced by its marker; the value is
    the span's text unless given."""
    if not found:
        return s
    parts, pos = [], 0
    for start, end, kind, *value in sorted(found):  # type: ignore[misc]
        if start < pos:
            continue  # overlaps one already replaced: it takes no number
        parts += [s[pos:start], mark(kind, value[0] if value else s[start:end])]
        pos = end
    parts.append(s[pos:])
    return "".join(parts)


@functools.lru_cache(maxsize=64)
def _trigger_finder(triggers: tuple[tuple[str, int], ...]) -> tuple[re.Pattern[str], dict[str, frozenset[int]]]:
    """One regex that finds every trigger at every position (a lookahead, so one trigger
    starting inside another is found too), and for each trigger it can report the
    alternatives of every trigger it holds (the longest is reported where several start)."""
    by_trigger: dict[str, set[int]] = {}
    for t, i in triggers:
        by_trigger.setdefault(t, set()).add(i)
    if not by_trigger:
        return re.compile(r"(?!)()"), {}
    words = sorted(by_trigger, key=len, reverse=True)
    held = {t: frozenset(i for u in words if u in t for i in by_trigger[u]) for t in words}
    return re.compile("(?=(" + "|".join(map(re.escape, words)) + "))"), held


def _combine(alts: list[_Alt], chosen: tuple[int, ...]) -> _Compiled:
    return _combined(tuple((i, alts[i].pattern) for i in chosen))


@functools.lru_cache(maxsize=256)
def _combined(chosen: tuple[tuple[int, str], ...]) -> _Compiled:
    """One regex for the chosen (index, pattern) alternatives (markers first, so they are
    kept), each alternative's group names suffixed with its index so they cannot clash.
    Shared by every redactor of the process: a regex of many detectors takes milliseconds to
    compile, and a fresh redactor (each report's, each recording's) chooses the same ones."""
    parts = [f"(?P<m>{det.MARKER})"]
    secret_groups: dict[int, tuple[str, ...]] = {}
    for i, alt in chosen:
        pattern = _GROUP.sub(lambda g: f"(?P<{g.group(1)}_{i}>", alt)
        pattern = _BACKREF.sub(lambda g: f"(?P={g.group(1)}_{i})", pattern)
        parts.append(f"(?P<g_{i}>{pattern})")
        secret_groups[i] = tuple(f"{g}_{i}" for g in _SECRET_GROUPS if f"(?P<{g}>" in alt)
    return re.compile("|".join(parts)), secret_groups


def _rules_from_meta(meta: Mapping[str, Any], env: Mapping[str, str],
                     where: str) -> tuple[list[str], list[Rule]] | None:
    spec = meta.get("redaction_rules")
    if spec is None:
        return None
    try:
        if not isinstance(spec, dict):
            raise ValueError("is not an object")
        names = [n for n in spec.get("detectors", []) if n in det.NAMES]  # a newer harness's: not known here
        rules: list[Rule] = [RegexRule(r["kind"], r["pattern"]) for r in spec.get("regex", [])]
        for r in rules:
            re.compile(r.pattern)  # type: ignore[union-attr]
        rules += [parse_path(r["kind"], r["path"]) for r in spec.get("paths", [])]
        rules += [env_rule(n, env[n], named=True) for n in spec.get("env", []) if env.get(n)]
    except (ValueError, TypeError, KeyError, AttributeError, re.error, UsageError) as exc:
        raise CassetteError(where, 1, f"meta.redaction_rules cannot be used ({exc}); it should look like "
                            '{"detectors": [...], "regex": [{"kind": K, "pattern": P}], '
                            '"paths": [{"kind": K, "path": "$.a.b"}], "env": [NAME, ...]}') from None
    return names, rules


__all__ = ["KIND_RE", "MARKER_RE", "LineScrubber", "LiteralRule", "MarkerTable", "PathRule", "RegexRule", "Redactor", "Rule",
           "marker", "parse_path", "parse_rule_arg", "secrets_from_environ"]
