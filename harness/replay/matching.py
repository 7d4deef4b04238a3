"""Comparing a live message with a recorded one.

Like VCR.py's matchers: a small registry of named checks, run in order; the
first that fails names the reason. Equality is checked on plain Python values
(fast path for the replay loop); deepdiff is only asked for the human diff
once something already failed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from harness.format.cassette import Event
from harness.errors import UsageError
from harness.format.placeholders import Placeholders
from harness.format.wire import Kind, classify, encode

Scrub = Callable[[Any], Any]

# Keys a live message may carry that say nothing about its meaning.
TRANSPORT_KEYS = ("jsonrpc",)


def body_key(msg: dict[str, Any]) -> str:
    if "method" in msg:
        return "params"
    return "error" if "error" in msg else "result"


@dataclass
class MatchContext:
    """What a comparison needs beyond the two messages."""

    placeholders: Placeholders = field(default_factory=Placeholders)
    scrub: Scrub | None = None
    ignore: list[str] = field(default_factory=list)  # dotted paths, '*' for any key
    learned: dict[str, Any] = field(default_factory=dict)  # recorded -> live (values the live peer chose)
    learn: list[str] = field(default_factory=list)   # paths whose live value is learned, not compared
    # The matchers that decide, in order (MatcherRegistry.resolve); the built-in four by default.
    matchers: tuple[tuple[str, "Matcher"], ...] = ()


@dataclass
class Mismatch:
    matcher: str
    reason: str


# -- paths -----------------------------------------------------------------

def split_path(path: str) -> list[str]:
    return [p for p in re.split(r"\.|\[(\d+|\*)\]", path) if p]


def path_walk(obj: Any, parts: list[str], trail: tuple = ()):
    """Yield (container, key, trail) for every place a dotted path reaches."""
    if not parts:
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        yield from path_walk(obj, rest, trail)
        children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        for k, v in children:
            yield from path_walk(v, parts, trail + (k,))
        return
    if isinstance(obj, dict):
        keys = list(obj) if head == "*" else [head] if head in obj else []
    elif isinstance(obj, list):
        keys = list(range(len(obj))) if head == "*" else [int(head)] if head.isdigit() and int(head) < len(obj) else []
    else:
        return
    for k in keys:
        if rest:
            yield from path_walk(obj[k], rest, trail + (k,))
        else:
            yield obj, k, trail + (k,)


def drop_paths(obj: Any, paths: list[str]) -> Any:
    if not paths:
        return obj
    obj = copy.deepcopy(obj)
    for path in paths:
        for container, key, _ in list(path_walk(obj, split_path(path))):
            if isinstance(container, dict):
                container.pop(key, None)
            else:
                container[key] = None
    return obj


def get_path(obj: Any, trail: tuple) -> Any:
    for k in trail:
        obj = obj[k]
    return obj


def prune_to(live: Any, pattern: Any) -> Any:
    """The part of ``live`` that ``pattern`` speaks about (subset matching)."""
    if isinstance(pattern, dict) and isinstance(live, dict):
        return {k: prune_to(live[k], v) for k, v in pattern.items() if k in live}
    if isinstance(pattern, list) and isinstance(live, list) and len(pattern) == len(live):
        return [prune_to(a, b) for a, b in zip(live, pattern)]
    return live


def substitute_learned(obj: Any, learned: dict[Any, Any]) -> Any:
    """Replace whole values the live peer chose differently (ids) by the live ones."""
    if not learned:
        return obj
    if isinstance(obj, dict):
        return {k: substitute_learned(v, learned) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute_learned(v, learned) for v in obj]
    if isinstance(obj, (str, int)) and not isinstance(obj, bool):
        return learned.get(obj, obj)
    return obj


# -- the matchers ----------------------------------------------------------

# A matcher takes (recorded message, live message, context, recorded event) and
# returns None for a match or a short reason. Register more on a MatcherRegistry
# and name them in ReplayOptions.match_on (the plugin's `match_on` option).

def match_kind(rec: dict, live: dict, ctx: MatchContext, event: Event | None = None) -> str | None:
    a, b = classify(rec), classify(live)
    if a != b:
        return f"expected a {a.value}, got a {b.value}"
    return None


def match_method(rec: dict, live: dict, ctx: MatchContext, event: Event | None = None) -> str | None:
    if rec.get("method") != live.get("method"):
        return f"expected method {rec.get('method')!r}, got {live.get('method')!r}"
    return None


def match_id(rec: dict, live: dict, ctx: MatchContext, event: Event | None = None) -> str | None:
    # A request's id is the sender's choice and gets mapped; a response must
    # carry the id of the request it answers, which the played side sent verbatim.
    if classify(rec) is Kind.RESPONSE:
        want = ctx.learned.get(rec["id"], rec["id"])
        if want != live.get("id"):
            return f"expected a response to id {want!r}, got one to id {live.get('id')!r}"
    return None


def normalised_pair(rec: dict, live: dict, ctx: MatchContext, event: Event | None) -> tuple[Any, Any]:
    key = body_key(rec)
    want = rec.get(key)
    got = live.get(key)
    if ctx.scrub is not None:
        got = ctx.scrub(got)
    opts = (event.match or {}) if event else {}
    # Paths are written from the message down ("params.cwd", as scenarios and their
    # docs spell them) but applied to the body alone, so drop the body's own key.
    ignore = [p[len(key) + 1:] if p.startswith(key + ".") else p
              for p in list(ctx.ignore) + list(opts.get("ignore", ()))]
    # What the live body would bind, tried on a copy: binding for real is commit's job,
    # once the engine accepted the message (a failed candidate must leave nothing behind).
    want = ctx.placeholders.with_bindings(want, got).substitute(want)
    want = substitute_learned(want, ctx.learned)
    if ctx.learn:
        for path in ctx.learn:
            ignore.append(path)
    if ignore:
        want, got = drop_paths(want, ignore), drop_paths(got, ignore)
    if opts.get("mode") == "subset" and want is not None:
        got = prune_to(got, want)
    return want, got


def match_body(rec: dict, live: dict, ctx: MatchContext, event: Event | None = None) -> str | None:
    if event is not None and event.match and event.match.get("mode") == "method":
        return None
    want, got = normalised_pair(rec, live, ctx, event)
    if want == got:
        return None
    return f"{body_key(rec)} differ"


Matcher = Callable[[dict, dict, "MatchContext", "Event | None"], "str | None"]
BUILTIN_MATCHERS: Mapping[str, Matcher] = MappingProxyType({
    "kind": match_kind,
    "method": match_method,
    "id": match_id,
    "body": match_body,
})
DEFAULT_ORDER = ("kind", "method", "id", "body")


@dataclass
class MatcherRegistry:
    """Named matchers, kept on an instance as VCR.py keeps them: the built-in four plus
    what a session registers (the plugin's ``pytest_codex_cassette_configure`` hook).

    ``match_on`` may also name ``module:function``: resolved by import, it works in a
    fake subprocess and the fork server too, not only in the registering process."""

    matchers: dict[str, Matcher] = field(default_factory=lambda: dict(BUILTIN_MATCHERS))

    def register(self, name: str, fn: Matcher) -> None:
        """Add (or replace) a matcher that ``match_on`` can name."""
        if not callable(fn):
            raise UsageError(f"matcher {name!r} must be callable (rec, live, ctx, event) -> reason or None")
        self.matchers[name] = fn

    def resolve(self, order: tuple[str, ...] | list[str]) -> tuple[tuple[str, Matcher], ...]:
        """The matchers ``order`` names, each found here or imported (``module:function``)."""
        found = []
        for name in order:
            fn = self.matchers.get(name) or (_import_matcher(name) if ":" in name else None)
            if fn is None:
                raise UsageError(f"unknown matcher {name!r} in match_on; known: {sorted(self.matchers)}, or "
                                 "'module:function' of an importable module (register one in the "
                                 "pytest_codex_cassette_configure(config, registry) hook)")
            found.append((name, fn))
        return tuple(found)

    def portable(self, name: str) -> str:
        """``name`` as another process can resolve it: built-in and ``module:function`` names
        as they are, a registered module-level function as its ``module:function``."""
        if name in BUILTIN_MATCHERS or ":" in name:
            return name
        fn = self.matchers.get(name)
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
        if fn is None or not module or module == "__main__" or "<" in qualname:
            raise UsageError(f"matcher {name!r} was registered in this process only, so a fake subprocess "
                             "cannot use it: name it in match_on as 'module:function' of an importable module, "
                             "or replay in-process (fake_codex.handle())")
        return f"{module}:{qualname}"


def _import_matcher(spec: str) -> Matcher:
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"matcher {spec!r} in match_on cannot be imported: {exc}") from None
    if not callable(obj):
        raise UsageError(f"matcher {spec!r} in match_on is not callable")
    return obj


_BUILTIN_ORDER = tuple(BUILTIN_MATCHERS.items())


def compare(event: Event, live: Any, ctx: MatchContext, order: tuple[str, ...] | None = None) -> Mismatch | None:
    """None when the live message matches the recorded event, else which matcher failed."""
    rec = event.msg
    if not isinstance(live, dict):
        return Mismatch("kind", "expected a JSON-RPC object")
    for name, matcher in (ctx.matchers or _BUILTIN_ORDER) if order is None else _builtin(order):
        reason = matcher(rec, live, ctx, event)
        if reason:
            return Mismatch(name, reason)
    return None


def _builtin(order: tuple[str, ...]) -> tuple[tuple[str, Matcher], ...]:
    return tuple((name, BUILTIN_MATCHERS[name]) for name in order)


def commit(event: Event, live: dict, ctx: MatchContext) -> None:
    """The engine accepted ``live`` as ``event``: keep what it reveals. The placeholders
    its body binds, and the values the live peer chose (``learn``). Matching itself
    binds nothing, so the order candidates are tried in cannot change the verdict."""
    key = body_key(event.msg)
    got = live.get(key)
    if ctx.scrub is not None:
        got = ctx.scrub(got)
    ctx.placeholders.bind_walk(event.msg.get(key), got)
    learn_values(event, live, ctx)


def learn_values(event: Event, live: dict, ctx: MatchContext) -> None:
    """After a match: remember what the live peer chose where the recording had other values."""
    if not ctx.learn:
        return
    key = body_key(event.msg)
    rec_body, live_body = event.msg.get(key), live.get(key)
    for path in ctx.learn:
        for _, _, trail in path_walk(rec_body, split_path(path)):
            try:
                value = get_path(live_body, trail)
            except (KeyError, IndexError, TypeError):
                continue
            old = get_path(rec_body, trail)
            if old != value and isinstance(old, (str, int)) and not isinstance(old, bool):
                ctx.learned[old] = value


def strip_transport(live: dict) -> dict:
    if any(k in live for k in TRANSPORT_KEYS):
        return {k: v for k, v in live.items() if k not in TRANSPORT_KEYS}
    return live


# Past this many bytes of JSON (recorded and live together) a report's diff and the
# nearest-candidate hint compare top-level keys only: deepdiff on two 100,000-item
# lists takes half a minute, and a live peer chooses what it sends.
DEEP_INPUT_MAX = 256 * 1024
MAX_DIFFS = 100
PREVIEW = 200


def _big(want: Any, got: Any) -> bool:
    return len(encode(want)) + len(encode(got)) > DEEP_INPUT_MAX


def _preview(value: Any) -> str:
    text = encode(value)[:-1]
    if len(text) <= PREVIEW:
        return text.decode("utf-8", "replace")
    return f"{text[:PREVIEW].decode('utf-8', 'ignore')}... ({len(text):,} bytes)"


def _shallow_diff(want: Any, got: Any, root: str) -> str:
    if not (isinstance(want, dict) and isinstance(got, dict)):
        return f"Value of {root} changed from {_preview(want)} to {_preview(got)}."
    lines = []
    for key in sorted(set(want) | set(got)):
        if key not in got:
            lines.append(f"Item {root}[{key!r}] removed from dictionary.")
        elif key not in want:
            lines.append(f"Item {root}[{key!r}] added to dictionary.")
        elif want[key] != got[key]:
            lines.append(f"Value of {root}[{key!r}] changed from {_preview(want[key])} to {_preview(got[key])}.")
        if len(lines) >= MAX_DIFFS:
            break
    return "\n".join(lines)


def _deepdiff() -> Any:
    # Imported on a mismatch only: it costs a fake codex 80 ms of start-up. Its warning on
    # reaching max_diffs would reach the fake's stderr through logging's last resort.
    import logging

    from deepdiff import DeepDiff

    logging.getLogger("deepdiff.diff").setLevel(logging.ERROR)
    return DeepDiff


def diff_text(event: Event, live: Any, ctx: MatchContext) -> str:
    """A readable structural diff of recorded vs live (deepdiff), for reports."""
    if not isinstance(live, dict) or not isinstance(event.msg, dict):
        return ""
    want, got = normalised_pair(event.msg, live, ctx, event)
    root = body_key(event.msg)
    if event.msg.get("method") != live.get("method"):
        # Different methods: show the whole message, so the method itself is in the diff.
        want, got = {"method": event.msg.get("method"), root: want}, {"method": live.get("method"), root: got}
        root = "message"
    if want == got:
        return ""
    if _big(want, got):
        return _shallow_diff(want, got, root)
    diff = _deepdiff()(want, got, verbose_level=2, max_diffs=MAX_DIFFS)
    return diff.pretty().replace("root", root) if diff else ""


def distance(event: Event, live: Any, ctx: MatchContext) -> float:
    """How far a live message is from a recorded one (0 equal .. 1 unrelated)."""
    if not isinstance(live, dict) or event.msg is None:
        return 1.0
    base = 0.0 if event.msg.get("method") == live.get("method") else 0.5
    want, got = normalised_pair(event.msg, live, ctx, event)
    if want == got:
        return base
    if _big(want, got):
        if isinstance(want, dict) and isinstance(got, dict) and (want or got):
            keys = set(want) | set(got)
            return base + 0.5 * sum(want.get(k, _ABSENT) != got.get(k, _ABSENT) for k in keys) / len(keys)
        return base + 0.5
    try:
        d = _deepdiff()(want, got, get_deep_distance=True).get("deep_distance", 0.0)
    except Exception:  # deepdiff refuses some exotic shapes; distance is only a hint
        d = 1.0
    return base + 0.5 * float(d)


_ABSENT = object()


def competes(live: Any, awaited: Iterable[Any]) -> bool:
    """Whether ``live`` is of the kind (and method) of one of the ``awaited`` recorded messages:
    then a mismatch is this set's divergence, not a pipelining peer's later message."""
    if not isinstance(live, dict):
        return False
    kind = classify(live)
    for rec in awaited:
        if rec is None or classify(rec) is not kind:
            continue
        if kind is Kind.RESPONSE or rec.get("method") == live.get("method"):
            return True
    return False
