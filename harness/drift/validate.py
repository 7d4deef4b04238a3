"""Validating every message of a cassette or YAML scenario against a schema snapshot.

Each message is checked against the schema of its kind: a request's or a
notification's ``params`` against its method's params schema, a response's
``result`` against the result schema of the request it answers. A response has
no method of its own: it is paired with the request of the same id that the
OTHER side sent earlier (ids of the two directions are separate spaces).

A YAML scenario's messages may be partial on purpose: an ``expect`` matched by
method says nothing about its params (only the method is checked), one matched
as a subset may leave out required fields (the fields it has are checked).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match

from harness.errors import HarnessError
from harness.format.cassette import Cassette, Event
from harness.format.load import open_cassette
from harness.drift.snapshot import UNIONS, Snapshot
from harness.format.wire import request_key

# (side that sends it, has an id) -> index key
_KIND = {
    ("client", True): "client_requests",
    ("client", False): "client_notifications",
    ("server", True): "server_requests",
    ("server", False): "server_notifications",
}
# Top-level keys of a message that are not envelope data to validate.
_ENVELOPE = {"id", "method", "params", "result", "error", "jsonrpc"}
_MAX_MESSAGE = 240


@dataclass
class Problem:
    cassette: str
    line: int
    path: str       # JSON path inside the message: $.params.input[0].type
    message: str

    deliberate: str = ""  # the fault of a fault variant that made this problem on purpose

    def __str__(self) -> str:
        text = f"{self.cassette}:{self.line}: {self.path}: {self.message}"
        return f"{text} (deliberate: {self.deliberate})" if self.deliberate else text


# Fault kinds whose variant breaks the schema on purpose, and the variant lines each one makes,
# relative to the fault's point (its cassette line): a novel value changes the message at the
# point, a duplicate repeats it on the next line, an unknown request is asked and answered
# after it. Only problems on those lines are the fault's; the rest of a variant is checked as usual.
FAULT_LINES = {"novel-value": (0,), "duplicate": (0, 1), "unknown-notification": (1,),
               "unknown-request": (1, 2), "error": (0,), "drop": ()}


def deliberate_fault(cassette: Cassette) -> tuple[str, set[int]] | None:
    """A fault variant's header (``meta.fault``) names its fault: what it is, and the lines it
    broke on purpose (a dropped request leaves its answer orphaned: any orphaned answer after
    the point is the drop's)."""
    fault = cassette.meta.get("fault")
    if not isinstance(fault, dict) or not isinstance(fault.get("point"), int):
        return None
    offsets = FAULT_LINES.get(str(fault.get("kind")), ())
    return str(fault.get("what") or fault.get("id") or "a fault variant"), {fault["point"] + o for o in offsets}


def _mark_deliberate(cassette: Cassette, problems: list[Problem]) -> None:
    found = deliberate_fault(cassette)
    if found is None:
        return
    what, lines = found
    drop = cassette.meta["fault"].get("kind") == "drop"
    for p in problems:
        orphan = drop and p.path == "$.id" and p.line >= cassette.meta["fault"]["point"]
        if p.line in lines or orphan:
            p.deliberate = what


def _json_path(prefix: str, parts: Iterable[Any]) -> str:
    out = prefix
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


class SchemaValidator:
    """Validators per subschema, all resolving $refs inside the snapshot's bundle."""

    def __init__(self, snap: Snapshot):
        self.snap = snap
        self._defs = snap.bundle.get("definitions", {})
        self._cache: dict[str, Draft7Validator] = {}

    def validator(self, subschema: dict[str, Any]) -> Draft7Validator:
        key = repr(sorted(subschema.items())) if isinstance(subschema, dict) else repr(subschema)
        v = self._cache.get(key)
        if v is None:
            # The subschema becomes a root that carries the bundle's definitions,
            # so its '#/definitions/...' pointers resolve as they do in the bundle.
            root = {**copy.copy(subschema), "definitions": self._defs}
            v = self._cache[key] = Draft7Validator(root)
        return v

    def errors(self, subschema: dict[str, Any] | None, instance: Any,
               prefix: str, partial: bool = False) -> list[tuple[str, str]]:
        if subschema is None:
            return []
        out = []
        for err in sorted(self.validator(subschema).iter_errors(instance),
                          key=lambda e: list(map(str, e.absolute_path))):
            deepest, msg = _explain(err)
            if partial and deepest.validator == "required":
                continue  # a scenario's subset match leaves fields out on purpose
            if len(msg) > _MAX_MESSAGE:
                msg = msg[:_MAX_MESSAGE] + "..."
            out.append((_json_path(prefix, deepest.absolute_path), msg))
        return out


def _explain(err: ValidationError) -> tuple[ValidationError, str]:
    """The error a person wants from a failed oneOf/anyOf: that of the alternative
    the instance meant (its type and tag matched), or the values allowed there."""
    if err.validator not in ("oneOf", "anyOf") or not err.context:
        return err, err.message
    by_alt: dict[Any, list[ValidationError]] = {}
    for sub in err.context:
        by_alt.setdefault(sub.relative_schema_path[0], []).append(sub)
    here = tuple(err.absolute_path)

    def wrong_type(errs: list[ValidationError]) -> bool:
        return any(e.validator == "type" and tuple(e.absolute_path) == here for e in errs)

    def tag_mismatch(e: ValidationError) -> bool:
        return (e.validator == "enum" and len(e.validator_value) == 1) or e.validator == "const"

    alts = [errs for errs in by_alt.values() if not wrong_type(errs)]
    if not alts:
        return err, f"{err.instance!r} is not of a type allowed here"[:_MAX_MESSAGE]
    # Every alternative rejects the same value (a plain enum, or the tag of a
    # tagged union): say which values would do.
    firsts = [next((e for e in errs if e.validator in ("enum", "const")), None) for errs in alts]
    if all(f is not None for f in firsts) and len({tuple(f.absolute_path) for f in firsts}) == 1 \
            and (all(len(errs) == 1 for errs in alts) or all(tag_mismatch(f) for f in firsts)):
        allowed: list[Any] = []
        for f in firsts:
            vals = f.validator_value if f.validator == "enum" else [f.validator_value]
            allowed += [v for v in vals if v not in allowed]
        return firsts[0], f"{firsts[0].instance!r} is not one of {allowed!r}"

    def score(errs: list[ValidationError]) -> tuple[bool, int, int]:
        return (any(tag_mismatch(e) for e in errs),
                -min(len(e.absolute_path) for e in errs), len(errs))

    chosen = best_match(min(alts, key=score))
    return _explain(chosen) if chosen.validator in ("oneOf", "anyOf") else (chosen, chosen.message)


def _extra_envelope(snap: Snapshot, kind: str) -> dict[str, Any]:
    """Top-level properties a method union declares besides method/params (emittedAtMs)."""
    union = next(name for name, key in UNIONS.items() if key == kind)
    props = snap.bundle.get("definitions", {}).get(union, {}).get("properties", {})
    return {k: v for k, v in props.items() if k not in _ENVELOPE}


def validate_cassette(cassette: Cassette, snap: Snapshot,
                      checker: SchemaValidator | None = None) -> list[Problem]:
    checker = checker or SchemaValidator(snap)
    name = str(cassette.path)
    problems: list[Problem] = []
    # ids each side is waiting on: pending[side][id] = (method, request line)
    pending: dict[str, dict[Any, str]] = {"client": {}, "server": {}}
    methods = {k: snap.methods(k) for k in _KIND.values()}

    def report(event: Event, path: str, message: str) -> None:
        problems.append(Problem(name, event.line, path, message))

    for event in cassette.messages():
        msg = event.msg
        if not isinstance(msg, dict):
            report(event, "$", "a JSON-RPC message must be an object")
            continue
        side = event.side
        if "method" in msg:
            kind = _KIND[(side, "id" in msg)]
            method = msg["method"]
            entry = methods[kind].get(method)
            if entry is None:
                report(event, "$.method", f"{method!r} is not a {kind[:-1].replace('_', ' ')} "
                       f"of schema {snap.version}")
                continue
            if "id" in msg:
                pending[side][request_key(msg["id"])] = method
            mode = (event.match or {}).get("mode", "exact")
            if mode == "method":
                continue  # a scenario that names only the method
            if "params" in msg or (entry.get("params_required") and mode != "subset"):
                for path, text in checker.errors(entry.get("params"), msg.get("params"), "$.params",
                                                 partial=mode == "subset"):
                    report(event, path, text)
            for key, schema in _extra_envelope(snap, kind).items():
                if key in msg:
                    for path, text in checker.errors(schema, msg[key], f"$.{key}"):
                        report(event, path, text)
        elif "id" in msg and ("result" in msg or "error" in msg):
            peer = "server" if side == "client" else "client"
            method = pending[peer].pop(request_key(msg["id"]), None)
            if method is None:
                report(event, "$.id", f"a response to id {msg['id']!r}, which the {peer} "
                       "never sent as a request (or was answered already)")
                continue
            partial = (event.match or {}).get("mode", "exact") != "exact"
            if "error" in msg:
                schema = {"$ref": "#/definitions/JSONRPCErrorError"} \
                    if "JSONRPCErrorError" in snap.bundle.get("definitions", {}) else None
                for path, text in checker.errors(schema, msg["error"], "$.error", partial=partial):
                    report(event, path, text)
                continue
            kind = "client_requests" if peer == "client" else "server_requests"
            entry = methods[kind].get(method, {})
            for path, text in checker.errors(entry.get("response"), msg["result"], "$.result", partial=partial):
                report(event, path, f"{text} (result of {method})")
        else:
            report(event, "$", "neither a request, a notification nor a response")
    _mark_deliberate(cassette, problems)
    return problems


@dataclass
class ValidationResult:
    version: str
    inputs: int
    messages: int
    problems: list[Problem]        # what fails validation
    deliberate: list[Problem] = field(default_factory=list)  # the faults of fault variants, shown, not failing

    def summary(self) -> str:
        """The closing line: what was checked and how it went."""
        head = f"validated {self.messages} message(s) in {self.inputs} file(s) against schema {self.version}"
        faults = (f"; {len(self.deliberate)} deliberate fault(s) of fault variants, not counted"
                  if self.deliberate else "")
        if not self.problems:
            return f"{head}: no problem{faults}"
        files = len({p.cassette for p in self.problems})
        return f"{head}: {len(self.problems)} problem(s) in {files} file(s){faults}"

    def markdown(self) -> str:
        """For a CI job summary: the closing line, then each problem (deliberate ones marked)."""
        status = "no problem" if not self.problems else f"**{len(self.problems)} problem(s)**"
        lines = [f"## Cassettes validated against schema {self.version}: {status}", "", self.summary(), ""]
        for p in self.problems + self.deliberate:
            lines.append(f"- `{p.cassette}:{p.line}` `{p.path}`: {p.message}"
                         + (f" (deliberate: {p.deliberate})" if p.deliberate else ""))
        return "\n".join(lines).rstrip() + "\n"


def validate_inputs(paths: Iterable[str | Path], snap: Snapshot) -> ValidationResult:
    """Every cassette and scenario the paths name; no input at all is an error."""
    files = expand_paths(paths)
    if not files:
        raise HarnessError(f"nothing to validate under {', '.join(map(str, paths))}: no *.jsonl cassette "
                           "and no YAML scenario (a .yaml with `steps:`)")
    checker = SchemaValidator(snap)
    problems: list[Problem] = []
    messages = 0
    for p in files:
        cassette = open_cassette(p)
        messages += sum(1 for _ in cassette.messages())
        problems.extend(validate_cassette(cassette, snap, checker))
    return ValidationResult(snap.version, len(files), messages, [p for p in problems if not p.deliberate],
                            [p for p in problems if p.deliberate])


def validate_paths(paths: Iterable[str | Path], snap: Snapshot) -> list[Problem]:
    return validate_inputs(paths, snap).problems


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; directories searched for *.jsonl cassettes and YAML scenarios.
    A path that does not exist is an error, not nothing."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = list(p.rglob("*.jsonl")) + [y for y in p.rglob("*.y*ml") if _is_scenario(y)]
            out.extend(sorted(found))
        elif p.exists():
            out.append(p)
        else:
            raise HarnessError(f"{p}: no such file or directory")
    return out


def _is_scenario(path: Path) -> bool:
    """A replay scenario has `steps:` at the top (a live scenario for record-live has not)."""
    if path.suffix not in (".yaml", ".yml"):
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.startswith("steps:") for line in text.splitlines())
