"""Redaction rules besides the built-in detectors: user regexes and JSON paths, and the
literal values of environment variables (named by the user, or secret by their name)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from harness.errors import UsageError
from harness.format.secret_gate import LONG_LITERAL, secret_env_values

KIND_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MARKER = re.compile(r"^\{\{redacted:[^{}]*\}\}$")


@dataclass(frozen=True)
class RegexRule:
    kind: str
    pattern: str


@dataclass(frozen=True)
class LiteralRule:
    kind: str
    value: str
    named: bool = False  # the user named it (--redact-env): the header lists it even when not found

    def pattern(self) -> str:
        # A short value only as a word of its own: a PIN must not eat the digits of every number.
        if len(self.value) >= LONG_LITERAL:
            return re.escape(self.value)
        return rf"(?<![A-Za-z0-9]){re.escape(self.value)}(?![A-Za-z0-9])"


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


def parse_env_name(arg: str, flag: str = "--redact-env") -> str:
    if not ENV_NAME.match(arg):
        raise UsageError(f"{flag} {arg!r} must be an environment variable's NAME (letters, digits, _), "
                         "not its value: the value is read from the environment and never written")
    return arg


def env_rule(name: str, value: str, named: bool = False) -> LiteralRule:
    return LiteralRule(f"env:{name}", value, named)


def secrets_from_environ(env: Mapping[str, str]) -> list[LiteralRule]:
    """Literal rules for variables whose name looks secret (…_KEY, …TOKEN, DATABASE_URL, …)."""
    return [env_rule(name, value) for name, value in secret_env_values(env)]


def scrub_path(obj: Any, steps: tuple[Union[str, int, None], ...], kind: str,
               mark: Callable[[str, Any], str]) -> Any:
    """``obj`` with the value(s) at ``steps`` replaced by their markers (``mark(kind, value)``;
    a copy along the path)."""
    if not steps:
        if obj is None or (isinstance(obj, str) and _MARKER.match(obj)):
            return obj
        return mark(kind, obj)
    step, rest = steps[0], steps[1:]
    if isinstance(step, str) and isinstance(obj, dict) and step in obj:
        return {k: (scrub_path(v, rest, kind, mark) if k == step else v) for k, v in obj.items()}
    if isinstance(obj, list):
        if step is None:
            return [scrub_path(v, rest, kind, mark) for v in obj]
        if isinstance(step, int) and -len(obj) <= step < len(obj):
            out = list(obj)
            out[step] = scrub_path(out[step], rest, kind, mark)
            return out
    if step is None and isinstance(obj, dict):
        return {k: scrub_path(v, rest, kind, mark) for k, v in obj.items()}
    return obj
