"""Schema snapshots: the app-server's JSON Schema, normalised and kept per codex version.

``codex app-server generate-json-schema --out DIR`` writes ~320 files: one per
params/response/notification type, the four method unions (ClientRequest,
ClientNotification, ServerRequest, ServerNotification) and one bundle,
``codex_app_server_protocol.schemas.json``, that holds every definition
(v2 types nested under ``definitions.v2``). A snapshot is that output with
stable formatting, so ``git diff`` between two versions shows only real
changes, plus ``index.json``: which methods exist in each direction, the schema
of their params and, for requests, of their result.

The schema never says which response type belongs to which request; the
generator names them ``FooParams``/``FooResponse``, so the index pairs them by
name and falls back to word overlap between the method and the left-over
``*Response`` types (recorded as ``"response_match": "guess"``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.drift.shapes import ref_name
from harness.errors import HarnessError

BUNDLE = "codex_app_server_protocol.schemas.json"
INDEX = "index.json"
INDEX_FORMAT = 1
# Method unions in the bundle and the index key each one becomes.
UNIONS = {
    "ClientRequest": "client_requests",
    "ClientNotification": "client_notifications",
    "ServerRequest": "server_requests",
    "ServerNotification": "server_notifications",
}
MAX_REF_HOPS = 20  # a $ref naming a $ref...: the generator never nests them this deep
# Keywords whose list value is a set: sorting them makes snapshots stable.
UNORDERED_KEYWORDS = ("required", "enum", "type")
# Keywords whose value is instance data, not schema: never rewritten.
DATA_KEYWORDS = ("default", "const", "examples")
GENERATE_TIMEOUT_S = 60.0
VERSION_TIMEOUT_S = 20.0


class SchemaError(HarnessError):
    """A schema snapshot that cannot be produced or read."""


# ---------------------------------------------------------------- normalising

def normalise(node: Any) -> Any:
    """Sort set-like keyword lists; leave everything else (and data values) as is."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in DATA_KEYWORDS:
                out[key] = value
            elif key in UNORDERED_KEYWORDS and isinstance(value, list) and all(
                isinstance(v, str) for v in value
            ):
                out[key] = sorted(value)
            else:
                out[key] = normalise(value)
        return out
    if isinstance(node, list):
        return [normalise(v) for v in node]
    return node


def dumps(obj: Any) -> str:
    """The one on-disk format: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- running codex

def _throwaway_env(home: Path) -> dict[str, str]:
    # generate-json-schema needs no config; a throwaway HOME/CODEX_HOME keeps
    # the user's config (and anything it might contact) out of the picture.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "OPENAI_"))}
    env["HOME"] = str(home)
    env["CODEX_HOME"] = str(home / "codex_home")
    (home / "codex_home").mkdir(parents=True, exist_ok=True)
    return env


def codex_version(codex_bin: str, env: dict[str, str] | None = None) -> str:
    """'0.163.0' from `codex --version` ("codex-cli 0.163.0"), as harness.live asks it."""
    from harness.live.binary import CodexBinaryError, codex_version as asked  # the live kit, only when codex runs

    try:
        return asked(codex_bin, VERSION_TIMEOUT_S, env)
    except CodexBinaryError as exc:
        raise SchemaError(str(exc)) from None


def generate_raw(codex_bin: str, out_dir: Path, *, experimental: bool = False,
                 timeout: float = GENERATE_TIMEOUT_S, env: dict[str, str] | None = None) -> None:
    from harness.live.binary import CodexBinaryError, run_codex

    args = ["app-server", "generate-json-schema", "--out", str(out_dir)]
    if experimental:
        args.append("--experimental")
    try:
        run_codex(codex_bin, args, timeout=timeout, env=env)
    except CodexBinaryError as exc:
        raise SchemaError(str(exc)) from None


# ---------------------------------------------------------------- the index

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _ref_of(params: dict[str, Any] | None) -> tuple[str | None, bool]:
    """(ref, required) of a union variant's params: `$ref`, `anyOf [$ref, null]` or null."""
    if not params:
        return None, False
    if "$ref" in params:
        return params["$ref"], True
    for alt in params.get("anyOf", []):
        if "$ref" in alt:
            return alt["$ref"], False
    return None, False


def definition_names(bundle: dict[str, Any]) -> dict[str, str]:
    """Every type in the bundle: bare name -> JSON pointer (root names win over v2)."""
    defs = bundle.get("definitions", {})
    names = {k: f"#/definitions/v2/{k}" for k in defs.get("v2", {})}
    names.update({k: f"#/definitions/{k}" for k in defs if k != "v2"})
    return names


def build_index(bundle: dict[str, Any], version: str, experimental: bool) -> dict[str, Any]:
    names = definition_names(bundle)
    defs = bundle.get("definitions", {})
    index: dict[str, Any] = {"format": INDEX_FORMAT, "codex_version": version,
                             "experimental": experimental, "bundle": BUNDLE}
    claimed: set[str] = set()
    unresolved: list[tuple[str, dict[str, Any]]] = []
    for union, key in UNIONS.items():
        methods: dict[str, Any] = {}
        for variant in defs.get(union, {}).get("oneOf", []):
            props = variant.get("properties", {})
            enum = props.get("method", {}).get("enum") or []
            if len(enum) != 1:
                continue
            method = enum[0]
            params = props.get("params")
            ref, required = _ref_of(params)
            entry: dict[str, Any] = {
                "params": params,  # the subschema itself; refs resolve in the bundle
                "params_type": ref_name(ref) if ref else None,
                "params_required": "params" in variant.get("required", []),
            }
            if key.endswith("requests"):
                resp = None
                if ref and ref.endswith("Params"):
                    cand = ref_name(ref)[: -len("Params")] + "Response"
                    if cand in names:
                        resp = cand
                entry["response_type"] = resp
                entry["response_match"] = "name" if resp else None
                if resp:
                    claimed.add(resp)
                else:
                    unresolved.append((method, entry))
            methods[method] = entry
        index[key] = dict(sorted(methods.items()))
    # Requests whose response type is not FooParams->FooResponse: best word overlap
    # with a response type no other method claimed (ties shared: config writes).
    spare = [n for n in names if n.endswith("Response") and n not in claimed
             and not n.startswith("JSONRPC")]
    for method, entry in unresolved:
        mw = _words(method)
        scored = sorted(((len(mw & (_words(n) - {"response"})), n) for n in spare), reverse=True)
        if scored and scored[0][0] >= 2:
            entry["response_type"] = scored[0][1]
            entry["response_match"] = "guess"
    for key in UNIONS.values():
        for entry in index[key].values():
            if "response_type" in entry:
                rt = entry["response_type"]
                entry["response"] = {"$ref": names[rt]} if rt else None
    return index


# ---------------------------------------------------------------- writing

@dataclass
class SnapshotResult:
    out_dir: Path
    version: str
    files: int
    bytes: int
    methods: dict[str, int] = field(default_factory=dict)


def _normalise_tree(raw: Path, dest: Path) -> tuple[int, int]:
    files = size = 0
    for src in sorted(raw.rglob("*.json")):
        rel = src.relative_to(raw)
        try:
            data = json.loads(src.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SchemaError(f"the generator wrote invalid JSON in {rel}: {exc}") from None
        text = dumps(normalise(data))
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        files += 1
        size += len(text.encode("utf-8"))
    return files, size


def snapshot(codex_bin: str, out_dir: str | Path | None = None, *,
             experimental: bool = False, timeout: float = GENERATE_TIMEOUT_S) -> SnapshotResult:
    """Generate, normalise and write a snapshot; replaces out_dir atomically.

    With ``experimental`` the experimental surface goes to ``out_dir/experimental/``
    (its own bundle, same layout); the index always describes the stable surface.
    """
    with tempfile.TemporaryDirectory(prefix="codex-schema-") as tmp:
        tmp_path = Path(tmp)
        env = _throwaway_env(tmp_path / "home")
        version = codex_version(codex_bin, env)
        target = Path(out_dir) if out_dir else Path("cassettes") / "schema" / version
        staging = tmp_path / "out"
        generate_raw(codex_bin, tmp_path / "raw", timeout=timeout, env=env)
        files, size = _normalise_tree(tmp_path / "raw", staging)
        if experimental:
            generate_raw(codex_bin, tmp_path / "raw-exp", experimental=True, timeout=timeout, env=env)
            f2, s2 = _normalise_tree(tmp_path / "raw-exp", staging / "experimental")
            files, size = files + f2, size + s2
        bundle_path = staging / BUNDLE
        if not bundle_path.exists():
            raise SchemaError(f"the generator of codex {version} wrote no {BUNDLE}; "
                              "this layout is not supported.")
        index = build_index(json.loads(bundle_path.read_text(encoding="utf-8")), version, experimental)
        text = dumps(index)
        (staging / INDEX).write_text(text, encoding="utf-8")
        files, size = files + 1, size + len(text.encode("utf-8"))
        # Build next to the target, then swap, so a failure never leaves half a snapshot.
        target.parent.mkdir(parents=True, exist_ok=True)
        swap = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        shutil.rmtree(swap)
        shutil.copytree(staging, swap)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            swap.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            swap.rename(target)
    return SnapshotResult(target, version, files, size,
                          {k: len(index[k]) for k in UNIONS.values()})


# ---------------------------------------------------------------- reading

@dataclass
class Snapshot:
    """A snapshot directory loaded: its index and the bundle every $ref resolves in."""

    path: Path
    index: dict[str, Any]
    bundle: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.index.get("codex_version", self.path.name))

    def methods(self, kind: str) -> dict[str, Any]:
        return self.index.get(kind, {})

    def resolve(self, ref: str) -> Any:
        """The definition a '#/definitions/...' pointer names (KeyError if absent)."""
        node: Any = self.bundle
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node

    def follow(self, node: Any) -> Any:
        """``node``, or where the chain of ``$ref``s from it ends; None where one names nothing
        (a chain of more than MAX_REF_HOPS is taken for a loop and ends there too)."""
        for _ in range(MAX_REF_HOPS):
            if not (isinstance(node, dict) and "$ref" in node):
                return node
            try:
                node = self.resolve(node["$ref"])
            except KeyError:
                return None
        return node


def load_snapshot(path: str | Path) -> Snapshot:
    path = Path(path)
    if not path.is_dir():
        raise SchemaError(f"{path} is not a schema snapshot directory (make one with "
                          "`codex-cassette drift schema-snapshot`).")
    try:
        bundle = json.loads((path / BUNDLE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path / BUNDLE} cannot be read: {exc}") from None
    index_path = path / INDEX
    if index_path.exists():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SchemaError(f"{index_path} is not valid JSON: {exc}") from None
    else:  # a raw generator output dir works too: derive the index
        index = build_index(bundle, path.name, False)
    return Snapshot(path, index, bundle)
