"""Reading a YAML scenario: lines kept for errors, JSON values only, bounded.

A scenario becomes JSON-RPC messages, so what it may hold is what JSON holds:
strings (dates stay strings), numbers (finite), booleans, null, lists and
mappings with string keys. Everything else, and everything that would make a
fake spend without bound, is refused with the file and line:

- nesting deeper than MAX_DEPTH (counted through aliases too);
- aliases that expand past MAX_EXPANSION (a few hundred bytes can otherwise
  stand for gigabytes); a shared node stays one shared object once read;
- recursive aliases, duplicate keys, non-UTF-8 text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.safe_text import quoted
from harness.errors import ScenarioError
from harness.format.values import LINE_KEY  # every mapping read notes its line (strip_lines removes it)
from harness.format.wire import MAX_DEPTH

MAX_EXPANSION = 64 << 20  # characters aliases may add beyond the file's own
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NOT_JSON_TAGS = ("binary", "set", "omap", "pairs", "timestamp")


class Refused(yaml.MarkedYAMLError):
    """Valid YAML that a scenario may not hold."""


class LineList(list):
    """A YAML sequence that remembers its items' lines (a bare scalar step has no mapping to carry one)."""

    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that notes lines, refuses what JSON cannot say, and bounds nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # The composer recurses once per level: bound it before Python's own limit does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Refused(problem=f"nested deeper than {MAX_DEPTH} levels",
                              problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Dates stay the strings they look like: JSON has no date.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if not tag.endswith(":timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _mapping(loader: _Loader, node: MappingNode) -> dict[str, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            hint = " (YAML reads yes/no/on/off as booleans: quote the key)" if isinstance(key, bool) else ""
            raise Refused(problem=f"a key must be a string, not {quoted(key)}{hint}",
                          problem_mark=key_node.start_mark)
        if key in seen:
            raise Refused(problem=f"duplicate key {quoted(key)} (first at line {seen[key]})",
                          problem_mark=key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE_KEY] = node.start_mark.line + 1
    return mapping


def _sequence(loader: _Loader, node: SequenceNode) -> list[Any]:
    seq = LineList(loader.construct_sequence(node, deep=True))
    seq.item_lines = [item.start_mark.line + 1 for item in node.value]
    return seq


def _finite(loader: _Loader, node: ScalarNode) -> float:
    value = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        raise Refused(problem=f"{node.value!r} is not a number JSON can carry", problem_mark=node.start_mark)
    return value


def _not_json(loader: _Loader, node: Node) -> None:
    raise Refused(problem=f"{node.tag.rpartition(':')[2]!r} values have no JSON form; write a string",
                  problem_mark=node.start_mark)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)
_Loader.add_constructor("tag:yaml.org,2002:float", _finite)
for _tag in _NOT_JSON_TAGS:
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _not_json)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def check_graph(root: Node, own_size: int) -> None:
    """Refuse a node graph that recurses, nests too deep or expands too far through its
    aliases. Iterative and memoised per node, so a bomb costs what its text costs."""
    limit = own_size + MAX_EXPANSION
    weight: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            on_path.discard(key)
            weight[key] = (len(node.value) if isinstance(node, ScalarNode) else 0) + 1 + sum(
                weight[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_DEPTH:
                raise Refused(problem=f"nested deeper than {MAX_DEPTH} levels (through aliases)",
                              problem_mark=node.start_mark)
            if weight[key] > limit:
                raise Refused(problem=f"its aliases expand it past {limit:,} characters (an alias bomb?)",
                              problem_mark=node.start_mark)
            continue
        if key in weight:
            continue
        on_path.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in on_path:
                raise Refused(problem="an alias refers to a node that contains it (a recursive alias)",
                              problem_mark=kid.start_mark)
            if id(kid) not in weight:
                stack.append((kid, False))


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; every problem a ScenarioError naming file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(path, None, f"cannot read the scenario: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(path, data[:exc.start].count(b"\n") + 1,
                            f"not UTF-8 (byte 0x{data[exc.start]:02x}); a scenario is UTF-8 text") from None
    loader = None
    try:
        loader = _Loader(text)  # its reader refuses unprintable characters right here
        node = loader.get_single_node()
        if node is None:
            return None
        check_graph(node, len(text))
        return loader.construct_document(node)
    except Refused as exc:
        raise ScenarioError(path, _line(exc), exc.problem or "refused") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; its mark has no line
        raise ScenarioError(path, text[:exc.position].count("\n") + 1,
                            f"not valid YAML: {exc.reason} (character #x{exc.character:04x})") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
        raise ScenarioError(path, _line(exc), "not valid YAML: " + " ".join(str(problem).split())) from None
    finally:
        if loader is not None:
            loader.dispose()


def _line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None


def strip_lines(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``value`` without the LINE_KEY notes, as plain dicts and lists. A node the YAML
    shares (an alias) stays one shared object: copying it per use is what an alias bomb
    is made of."""
    if not isinstance(value, (dict, list)):
        return value
    memo = {} if memo is None else memo
    done = memo.get(id(value))
    if done is not None:
        return done
    if isinstance(value, dict):
        out: Any = {}
        memo[id(value)] = out
        for k, v in value.items():
            if k != LINE_KEY:
                out[k] = strip_lines(v, memo)
    else:
        out = []
        memo[id(value)] = out
        out.extend(strip_lines(v, memo) for v in value)
    return out
