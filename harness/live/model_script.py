"""The mock model's script: what it answers to each model request, in order.

One step is consumed per `POST /v1/responses`. A tool call (shell, patch) is a
step of its own: codex runs the tool and asks the model again, and that
follow-up request consumes the next step. The YAML form is the `model:`
section of a scenario file (see docs/live.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from harness.errors import ScenarioError
from harness.format.yaml_reader import read_yaml, strip_lines

DEFAULT_GATE_TIMEOUT = 15.0
FAIL_KINDS = ("http_500", "response_failed", "stream_cut")


@dataclass(frozen=True)
class TextStep:
    """An assistant message streamed as deltas."""

    text: str
    deltas: tuple[str, ...] = ()  # explicit chunking; empty -> derived from `chunks`
    chunks: int | None = None  # None -> one delta per word
    delay: float = 0.0  # seconds between deltas

    def pieces(self) -> list[str]:
        if self.deltas:
            return list(self.deltas)
        return split_text(self.text, self.chunks)


@dataclass(frozen=True)
class ShellStep:
    """An `exec_command` function call. `require_escalated` makes codex ask for
    approval under approval policy on-request."""

    cmd: str
    yield_time_ms: int = 1000
    justification: str = "The scenario asks to run this command."
    sandbox_permissions: str = "require_escalated"
    workdir: str | None = None


@dataclass(frozen=True)
class PatchStep:
    """An `apply_patch` custom tool call carrying a patch in codex's envelope
    format (`*** Begin Patch` ... `*** End Patch`)."""

    patch: str


@dataclass(frozen=True)
class GateStep:
    """A message whose stream stops after `before` until the named gate opens,
    so that an interrupt can land mid-stream."""

    name: str
    before: str = "Working on it"
    after: str = " ... done."
    timeout: float = DEFAULT_GATE_TIMEOUT


@dataclass(frozen=True)
class FailStep:
    """A model failure: `http_500`, `response_failed`, or `stream_cut` (the
    stream ends before `response.completed`)."""

    kind: str
    message: str = "mock model failure"
    status: int = 500


Step = Union[TextStep, ShellStep, PatchStep, GateStep, FailStep]


def split_text(text: str, chunks: int | None) -> list[str]:
    """Split text into deltas whose concatenation is the text."""
    if not text:
        return [""]
    if chunks is None:
        # Words with their trailing whitespace: looks like real token streaming.
        return re.findall(r"\S+\s*|\s+", text)
    n = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        end = pos + size + (1 if i < extra else 0)
        out.append(text[pos:end])
        pos = end
    return out


def add_file_patch(files: dict[str, str]) -> str:
    """A patch that creates each file with the given content."""
    lines = ["*** Begin Patch"]
    for path, content in files.items():
        lines.append(f"*** Add File: {path}")
        body = content[:-1] if content.endswith("\n") else content
        lines.extend("+" + line for line in body.split("\n"))
    lines.append("*** End Patch")
    return "\n".join(lines)


# ---------------------------------------------------------------- YAML loading


def load_model_script(data: Any, source: str | Path = "<model script>") -> list[Step]:
    """Compile the `model:` section (a list of steps) into Step objects.

    `source` names the file in error messages; the line is the step's line when
    `data` came from `yaml.compose`-aware loaders, else the step's index.
    """
    if data is None:
        return []
    if not isinstance(data, list):
        raise ScenarioError(source, None, f"`model:` must be a list of steps, got {type(data).__name__}")
    return [_parse_step(item, source, index) for index, item in enumerate(data)]


def load_model_script_file(path: str | Path) -> list[Step]:
    """Read a scenario YAML file and compile its `model:` section."""
    path = Path(path)
    doc = strip_lines(read_yaml(path))
    if isinstance(doc, dict):
        doc = doc.get("model")
    return load_model_script(doc, path)


def _parse_step(item: Any, source: str | Path, index: int) -> Step:
    where = f"model step {index + 1}"

    def bad(msg: str) -> ScenarioError:
        return ScenarioError(source, None, f"{where}: {msg}")

    if not isinstance(item, dict) or len(item) != 1:
        raise bad(
            "each step is a one-key mapping such as `- text: Hello`, `- shell: {cmd: ls}`, "
            "`- patch: {add: {a.txt: hi}}`, `- gate: name` or `- fail: http_500`"
        )
    (kind, value), = item.items()
    try:
        if kind == "text":
            if isinstance(value, str):
                return TextStep(text=value)
            opts = _mapping(value, {"text", "deltas", "chunks", "delay"})
            deltas = tuple(str(d) for d in opts.get("deltas") or ())
            text = str(opts.get("text", "".join(deltas)))
            if deltas and "".join(deltas) != text:
                raise ValueError("`deltas` must join up to `text`")
            return TextStep(
                text=text,
                deltas=deltas,
                chunks=_opt_int(opts.get("chunks")),
                delay=float(opts.get("delay", 0.0)),
            )
        if kind == "shell":
            if isinstance(value, str):
                return ShellStep(cmd=value)
            opts = _mapping(value, {"cmd", "yield_time_ms", "justification", "sandbox_permissions", "workdir"})
            if "cmd" not in opts:
                raise ValueError("`cmd` is required")
            defaults = ShellStep(cmd="")
            return ShellStep(
                cmd=str(opts["cmd"]),
                yield_time_ms=int(opts.get("yield_time_ms", defaults.yield_time_ms)),
                justification=str(opts.get("justification", defaults.justification)),
                sandbox_permissions=str(opts.get("sandbox_permissions", defaults.sandbox_permissions)),
                workdir=None if opts.get("workdir") is None else str(opts["workdir"]),
            )
        if kind == "patch":
            if isinstance(value, str):
                return PatchStep(patch=value)
            opts = _mapping(value, {"add", "raw"})
            if ("add" in opts) == ("raw" in opts):
                raise ValueError("give exactly one of `add: {path: content}` or `raw: <patch text>`")
            if "raw" in opts:
                return PatchStep(patch=str(opts["raw"]))
            files = opts["add"]
            if not isinstance(files, dict) or not files:
                raise ValueError("`add` maps file paths to their content")
            return PatchStep(patch=add_file_patch({str(k): str(v) for k, v in files.items()}))
        if kind == "gate":
            if isinstance(value, str):
                return GateStep(name=value)
            opts = _mapping(value, {"name", "before", "after", "timeout"})
            if "name" not in opts:
                raise ValueError("`name` is required")
            defaults = GateStep(name="")
            return GateStep(
                name=str(opts["name"]),
                before=str(opts.get("before", defaults.before)),
                after=str(opts.get("after", defaults.after)),
                timeout=float(opts.get("timeout", defaults.timeout)),
            )
        if kind == "fail":
            opts = {"kind": value} if isinstance(value, str) else _mapping(value, {"kind", "message", "status"})
            fail_kind = str(opts.get("kind"))
            if fail_kind not in FAIL_KINDS:
                raise ValueError(f"unknown failure {fail_kind!r}; use one of {', '.join(FAIL_KINDS)}")
            return FailStep(
                kind=fail_kind,
                message=str(opts.get("message", FailStep.message)),
                status=int(opts.get("status", 500)),
            )
    except (TypeError, ValueError) as exc:
        raise bad(f"`{kind}`: {exc}") from None
    raise bad(f"unknown step kind {kind!r}; use text, shell, patch, gate or fail")


def _mapping(value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a string or a mapping, got {type(value).__name__}")
    unknown = set(map(str, value)) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    return {str(k): v for k, v in value.items()}


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


__all__ = [
    "Step", "TextStep", "ShellStep", "PatchStep", "GateStep", "FailStep", "FAIL_KINDS",
    "load_model_script", "load_model_script_file", "split_text", "add_file_patch",
]
