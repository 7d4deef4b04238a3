"""Hand-written YAML scenarios, compiled into the same events a recording has.

A scenario is what a test author would say about a session: expect this from
the client, reply that, stream these notifications, ask the client for an
approval and expect its decision, then crash. docs/scenarios.md has the schema
with examples. Every compiled event remembers its YAML line, so a divergence
points into the scenario file, not into a generated cassette.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from harness.errors import ScenarioError
from harness.format.cassette import FAULT_KINDS, HEADER_FIELDS, MATCH_MODES, Cassette, Event
from harness.format.values import problem
from harness.format.yaml_reader import LINE_KEY, read_yaml, strip_lines

STEP_KINDS = ("expect", "notify", "request", "reply_to", "fault", "raw", "exit", "close", "expect_close")
# What a step may carry besides its kind's own key. Anything else is refused: a
# misspelt 'params' would silently match any params, a 'result' on an expect
# would silently turn the expected request into a notification.
STEP_KEYS = {
    "expect": ("params", "reply", "error", "as", "match", "ignore"),
    "request": ("params", "expect_reply", "expect_error", "no_reply", "match", "ignore"),
    "reply_to": ("result", "error"),
    "notify": ("params",),
}
# What the mapping form of a step's kind takes (`expect: {method: ..., params: ...}`); None:
# anything more is a field of the message (a notification's `emittedAtMs`).
SPEC_KEYS: dict[str, tuple[str, ...] | None] = {
    "expect": ("method", "params", "match", "ignore", "id", "request"),
    "request": ("method", "params", "id"),
    "notify": None,
}
# The keys of a step (and of a mapping form) whose values harness.format.values checks.
CHECKED = ("method", "params", "id", "request", "ignore", "error", "expect_error", "no_reply", "as",
           "reply_to", "raw", "exit", "close", "expect_close")


class _Compiler:
    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        self.events: list[Event] = []
        self.client_id = 0
        self.server_id = -1
        self.labels: dict[str, tuple[Any, int]] = {}   # label -> (recorded id, line)
        self.answered: set[str] = set()
        self.t = 0.0
        self.default_mode = doc.get("match", "exact")
        if self.default_mode not in MATCH_MODES:
            self.fail(doc.get(LINE_KEY, 1), f"'match' must be one of {', '.join(MATCH_MODES)}")

    def fail(self, line: int | None, message: str) -> NoReturn:
        raise ScenarioError(self.path, line, message)

    def check(self, line: int, values: dict[str, Any], kind: str = "") -> None:
        """Every value of ``values`` whose key has a rule, checked by it (a step's own key
        naming a method is method_spec's to check: `request` is also a flag of `expect`)."""
        for key in CHECKED:
            if key in values and not (key == kind and kind in SPEC_KEYS):
                said = problem(key, values[key])
                if said is not None:
                    self.fail(values[key].get(LINE_KEY, line) if isinstance(values[key], dict) else line, said)

    def add(self, side: str, line: int, **payload: Any) -> Event:
        ev = Event(side=side, t=self.t, index=len(self.events) + 1, line=line, **payload)
        self.events.append(ev)
        return ev

    def match_opts(self, spec: dict[str, Any], line: int, has_body: bool) -> dict[str, Any] | None:
        mode = spec.get("match", self.default_mode if has_body else "method")
        if mode not in MATCH_MODES:
            self.fail(line, f"'match' must be one of {', '.join(MATCH_MODES)}, not {mode!r}")
        opts: dict[str, Any] = {}
        if mode != "exact":
            opts["mode"] = mode
        ignore = spec.get("ignore")
        if ignore is not None:
            if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
                self.fail(line, "'ignore' must be a list of dotted paths such as params.cwd")
            opts["ignore"] = ignore
        return opts or None

    def method_spec(self, step: dict[str, Any], key: str, line: int) -> dict[str, Any]:
        value = step[key]
        if isinstance(value, str):
            spec: dict[str, Any] = {"method": value}
            if "params" in step:
                spec["params"] = step["params"]
        elif isinstance(value, dict) and "method" in value:
            spec = value
            allowed = SPEC_KEYS[key]
            unknown = sorted(set(spec) - {LINE_KEY, *allowed}) if allowed is not None else []
            if unknown:
                self.fail(line, f"unknown key(s) {unknown} in this '{key}' mapping, which takes {', '.join(allowed)}")
        else:
            self.fail(line, f"'{key}' needs a method name, or a mapping with 'method' (and 'params')")
        self.check(line, spec)
        return spec

    def compile(self) -> list[Event]:
        steps = self.doc.get("steps")
        if not isinstance(steps, list) or not steps:
            self.fail(self.doc.get(LINE_KEY, 1), "a scenario needs a non-empty 'steps' list")
        for n, step in enumerate(steps):
            if not isinstance(step, dict):
                lines = getattr(steps, "item_lines", None)
                self.fail(lines[n] if lines else None, f"each step must be a mapping, not {step!r}")
            line = step.get(LINE_KEY, 0)
            kinds = [k for k in STEP_KINDS if k in step]
            if len(kinds) != 1:
                found = " and ".join(kinds) if kinds else "none"
                self.fail(line, f"a step has exactly one of {', '.join(STEP_KINDS)}; this one has {found}")
            allowed = STEP_KEYS.get(kinds[0], ())
            unknown = sorted(set(step) - {kinds[0], LINE_KEY, *allowed})
            if unknown:
                self.fail(line, f"unknown key(s) {unknown} in this '{kinds[0]}' step, which takes "
                          f"{', '.join(allowed) if allowed else 'no other key'}")
            self.check(line, step, kinds[0])
            getattr(self, "step_" + kinds[0])(step, line)
        for label, (_, line) in self.labels.items():
            if label not in self.answered:
                self.fail(line, f"the request labelled {label!r} is never answered by a 'reply_to' step")
        return self.events

    # -- steps -----------------------------------------------------------------

    def step_expect(self, step: dict[str, Any], line: int) -> None:
        spec = self.method_spec(step, "expect", line)
        label = step.get("as")
        replies = [k for k in ("reply", "error") if k in step]
        is_request = spec.get("request", bool(replies) or label is not None)
        if not is_request and (replies or label is not None):
            self.fail(line, "'request: false' expects a notification, which has no answer: drop "
                      f"{' and '.join(repr(k) for k in [*replies, *(['as'] if label is not None else [])])} or the flag")
        msg: dict[str, Any] = {}
        if is_request:
            self.client_id += 1
            msg["id"] = spec.get("id", self.client_id)
        msg["method"] = spec["method"]
        if "params" in spec:
            msg["params"] = strip_lines(spec["params"])
        self.add("client", line, msg=msg, match=self.match_opts(spec if "match" in spec else step, line,
                                                                "params" in spec))
        if label is not None:
            if replies:
                self.fail(line, "a step with 'as' is answered later by 'reply_to'; drop 'reply'/'error' here")
            if label in self.labels:
                self.fail(line, f"label {label!r} is used twice")
            self.labels[label] = (msg["id"], line)
        elif replies:
            self.add("server", line, msg=self.response(msg["id"], step, line))

    def response(self, rid: Any, step: dict[str, Any], line: int) -> dict[str, Any]:
        if "error" in step:
            return {"id": rid, "error": strip_lines(step["error"])}
        return {"id": rid, "result": strip_lines(step.get("reply", step.get("result")))}

    def step_reply_to(self, step: dict[str, Any], line: int) -> None:
        label = step["reply_to"]
        if label not in self.labels:
            self.fail(line, f"'reply_to: {label}' names no earlier 'expect' with 'as: {label}'")
        if label in self.answered:
            self.fail(line, f"the request labelled {label!r} is answered twice")
        self.answered.add(label)
        if "result" not in step and "error" not in step:
            self.fail(line, "'reply_to' needs a 'result' or an 'error'")
        self.add("server", line, msg=self.response(self.labels[label][0], step, line))

    def step_notify(self, step: dict[str, Any], line: int) -> None:
        spec = self.method_spec(step, "notify", line)
        msg = {"method": spec["method"]}
        if "params" in spec:
            msg["params"] = strip_lines(spec["params"])
        for key, value in spec.items():
            if key not in ("method", "params", LINE_KEY):
                msg[key] = strip_lines(value)  # e.g. emittedAtMs
        self.add("server", line, msg=msg)

    def step_request(self, step: dict[str, Any], line: int) -> None:
        spec = self.method_spec(step, "request", line)
        if "id" in spec:
            rid = spec["id"]
        else:
            self.server_id += 1
            rid = self.server_id
        msg = {"id": rid, "method": spec["method"]}
        if "params" in spec:
            msg["params"] = strip_lines(spec["params"])
        self.add("server", line, msg=msg)
        if "expect_reply" in step:
            self.add("client", line, msg={"id": rid, "result": strip_lines(step["expect_reply"])},
                     match=self.match_opts(step, line, True))
        elif "expect_error" in step:
            err = strip_lines(step["expect_error"])
            self.add("client", line, msg={"id": rid, "error": err},
                     match=self.match_opts({"match": step.get("match", "subset"), **step}, line, True))
        elif not step.get("no_reply", False):
            self.fail(line, "a 'request' step needs 'expect_reply' (a result) or 'expect_error', "
                      "or 'no_reply: true' when the client must not answer")

    def step_fault(self, step: dict[str, Any], line: int) -> None:
        fault = strip_lines(step["fault"])
        if not isinstance(fault, dict) or len(fault) != 1 or next(iter(fault)) not in FAULT_KINDS:
            self.fail(line, f"'fault' must be a mapping with one of {', '.join(FAULT_KINDS)}")
        (kind, arg), = fault.items()
        said = problem("fault " + kind, arg)
        if said is not None:
            self.fail(line, said)
        if kind == "close_stdout":
            self.add("server", line, eof=True)
            return
        if kind == "exit":
            self.add("server", line, exit=arg)
            return
        if kind in ("garbage", "partial"):
            self.add("server", line, raw=arg.encode("utf-8", "surrogatepass"), newline=kind == "garbage")
            return
        self.add("server", line, fault={kind: arg})
        if kind == "delay":
            self.t += float(arg)

    def step_raw(self, step: dict[str, Any], line: int) -> None:
        self.step_fault({"fault": {"garbage": step["raw"]}}, line)

    def step_exit(self, step: dict[str, Any], line: int) -> None:
        self.step_fault({"fault": {"exit": step["exit"]}}, line)

    def step_close(self, step: dict[str, Any], line: int) -> None:
        self.step_fault({"fault": {"close_stdout": step["close"]}}, line)

    def step_expect_close(self, step: dict[str, Any], line: int) -> None:
        self.add("client", line, eof=True)


def load_scenario(path: str | Path) -> Cassette:
    """Compile a YAML scenario into a cassette (events keep their YAML lines)."""
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ScenarioError(path, 1, "a scenario is a mapping with a 'steps' list")
    line = doc.get(LINE_KEY, 1)
    unknown = set(doc) - {"name", "description", "meta", "match", "steps", "model", "client", LINE_KEY}
    if unknown:
        raise ScenarioError(path, line, f"unknown top-level key(s) {sorted(unknown)}")
    meta = doc.get("meta", {})
    fields = [(key, doc[key]) for key in ("name", "description", "meta") if key in doc]
    fields += [("meta." + key, meta[key]) for key in HEADER_FIELDS if isinstance(meta, dict) and key in meta]
    for key, value in fields:
        said = problem(key, value)
        if said is not None:
            raise ScenarioError(path, line, said)
    events = _Compiler(path, doc).compile()
    meta = dict(strip_lines(doc.get("meta") or {}))
    meta.setdefault("scenario", doc.get("name", path.stem))
    meta["complete"] = True
    meta["source"] = "scenario"
    return Cassette(path=path, meta=meta, events=events)
