"""The structural schema differ: one test per class of change, on small synthetic snapshots.

Each snapshot is a bundle with the four method unions the generator writes; the test
methods are `go` (a client request: GoParams -> GoResponse), `done` (a server
notification: DoneNotification) and `ask` (a server request: AskParams -> AskResponse),
so every type has a known sender.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from harness.drift import cli as drift_cli
from harness.drift.schema_diff import Change, diff_snapshots
from harness.drift.snapshot import BUNDLE, dumps, load_snapshot

STR = {"type": "string"}
INT = {"type": "integer"}
OPT_STR = {"type": ["string", "null"]}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="codex-cassette")
    drift_cli.cli_register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def obj(props: dict[str, Any], required: list[str] = (), **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), **extra}


def tagged(tag: str, props: dict[str, Any] | None = None, required: list[str] = (), **extra: Any) -> dict[str, Any]:
    """A variant of a union tagged by `type` (the generator's single-value enum)."""
    return obj({"type": {"enum": [tag], "type": "string"}, **(props or {})}, ["type", *required], **extra)


def _union(methods: dict[str, str | None], with_id: bool) -> dict[str, Any]:
    variants = []
    for m, ptype in methods.items():
        props: dict[str, Any] = {"method": {"enum": [m], "type": "string"}}
        req = ["method"]
        if with_id:
            props["id"] = INT
            req.append("id")
        if ptype:
            props["params"] = ref(ptype)
            req.append("params")
        variants.append(obj(props, req))
    return {"oneOf": variants}


METHODS = {"client_requests": {"go": "GoParams"}, "server_notifications": {"done": "DoneNotification"},
           "server_requests": {"ask": "AskParams"}}


def make_snapshot(path: Path, types: dict[str, Any], methods: dict[str, dict[str, str | None]] = METHODS) -> Path:
    defs = dict(types)
    defs["ClientRequest"] = _union(methods.get("client_requests", {}), True)
    defs["ClientNotification"] = _union({"initialized": None}, False)
    defs["ServerRequest"] = _union(methods.get("server_requests", {}), True)
    defs["ServerNotification"] = _union(methods.get("server_notifications", {}), False)
    path.mkdir(parents=True)
    (path / BUNDLE).write_text(dumps({"definitions": defs}))
    return path


def base() -> dict[str, Any]:
    return {
        "GoParams": obj({"name": STR, "mode": ref("Mode")}, ["name"]),
        "GoResponse": obj({"id": STR, "count": INT}, ["id", "count"]),
        "Mode": {"enum": ["fast", "slow"], "type": "string"},
        "DoneNotification": obj({"status": ref("Status"), "note": STR}, ["status", "note"]),
        "Status": {"enum": ["ok", "failed"], "type": "string"},
        "AskParams": obj({"question": STR}, ["question"]),
        "AskResponse": obj({"answer": STR}, ["answer"]),
    }


def diff(tmp_path: Path, old: dict[str, Any], new: dict[str, Any], methods_new=METHODS) -> list[Change]:
    o = make_snapshot(tmp_path / "old", old)
    n = make_snapshot(tmp_path / "new", new, methods_new)
    return diff_snapshots(load_snapshot(o), load_snapshot(n)).changes


def got(changes: list[Change]) -> dict[tuple[str, str], str]:
    return {(c.kind, c.path): c.severity for c in changes}


def with_types(**types: Any) -> dict[str, Any]:
    return {**base(), **types}


# ---------------------------------------------------------------- same values, other spelling


@pytest.mark.parametrize("spelling", [
    {"oneOf": [{"enum": ["ok"], "type": "string"}, {"enum": ["failed"], "type": "string"}]},
    {"anyOf": [{"enum": ["failed", "ok"], "type": "string"}]},
    {"enum": ["ok", "failed"]},
    {"allOf": [ref("Status2")]},
], ids=["oneOf-of-enums", "anyOf-one-enum", "enum-without-type", "allOf-ref"])
def test_an_enum_written_another_way_is_no_change(tmp_path, spelling):
    new = with_types(Status=spelling, Status2={"enum": ["failed", "ok"], "type": "string"})
    assert diff(tmp_path, base(), new) == []


@pytest.mark.parametrize("nullable", [
    {"type": ["string", "null"]},
    {"anyOf": [STR, {"type": "null"}]},
    {"oneOf": [{"type": "null"}, STR]},
], ids=["type-list", "anyOf-null", "oneOf-null"])
def test_null_unions_are_nullability(tmp_path, nullable):
    old = with_types(AskParams=obj({"question": OPT_STR}, ["question"]))
    assert diff(tmp_path, old, with_types(AskParams=obj({"question": nullable}, ["question"]))) == []
    # a server-sent string that may now be null breaks a client that reads it
    new = with_types(AskParams=obj({"question": nullable}, ["question"]))
    assert got(diff(tmp_path / "b", base(), new)) == {("became-nullable", "AskParams.question"): "breaking"}
    # the same in what the client sends: the server takes more, nothing breaks
    new = with_types(GoParams=obj({"name": nullable, "mode": ref("Mode")}, ["name"]))
    assert got(diff(tmp_path / "c", base(), new)) == {("became-nullable", "GoParams.name"): "additive"}


def test_a_ref_is_compared_by_what_it_points_to(tmp_path):
    # `mode` swaps Mode for Mode2, a superset: one value more, not a type change
    new = with_types(GoParams=obj({"name": STR, "mode": ref("Mode2")}, ["name"]),
                     Mode2={"enum": ["fast", "slow", "turbo"], "type": "string"})
    changes = diff(tmp_path, base(), new)
    assert got(changes) == {("enum-value-added", "GoParams.mode"): "additive"}  # the client sends it
    assert changes[0].detail == "value 'turbo' added"
    # an alias of the same scalar (string -> a named string type) is no change at all
    new = with_types(AskParams=obj({"question": ref("Text")}, ["question"]), Text={"type": "string"})
    assert diff(tmp_path / "b", base(), new) == []


def test_a_string_widened_to_a_union_is_judged_by_who_sends_it(tmp_path):
    anchor = obj({"at": INT}, ["at"])
    wide = {"anyOf": [STR, ref("Anchor")]}
    # the client sends GoParams.name: the server takes an object too now, nothing breaks
    new = with_types(GoParams=obj({"name": wide, "mode": ref("Mode")}, ["name"]), Anchor=anchor)
    changes = diff(tmp_path, base(), new)
    assert got(changes) == {("type-widened", "GoParams.name"): "additive"}
    assert changes[0].detail == "may now be an object (Anchor)"
    # the server sends AskParams.question: a client that expects a string gets an object
    new = with_types(AskParams=obj({"question": wide}, ["question"]), Anchor=anchor)
    assert got(diff(tmp_path / "b", base(), new)) == {("type-widened", "AskParams.question"): "breaking"}
    # narrowed back: the other way round
    old = with_types(GoParams=obj({"name": wide, "mode": ref("Mode")}, ["name"]), Anchor=anchor)
    assert got(diff(tmp_path / "c", old, base())) == {("type-narrowed", "GoParams.name"): "breaking"}


def test_a_real_type_change_is_breaking_both_ways(tmp_path):
    new = with_types(AskParams=obj({"question": INT}, ["question"]),
                     GoParams=obj({"name": {"type": "array", "items": STR}, "mode": ref("Mode")}, ["name"]))
    assert got(diff(tmp_path, base(), new)) == {("type-changed", "AskParams.question"): "breaking",
                                                ("type-changed", "GoParams.name"): "breaking"}


# ---------------------------------------------------------------- unions of objects


ITEM_OLD = {"oneOf": [tagged("text", {"text": STR}, ["text"]),
                      tagged("image", {"url": STR, "detail": STR}, ["url"])]}


def item_types(item: dict[str, Any]) -> dict[str, Any]:
    return with_types(Item=item, DoneNotification=obj({"status": ref("Status"), "note": STR,
                                                       "item": ref("Item")}, ["status", "note", "item"]))


def test_variants_are_paired_by_their_discriminator_not_their_order(tmp_path):
    const = {"oneOf": [obj({"type": {"const": "image"}, "url": STR, "detail": STR}, ["type", "url"]),
                       obj({"type": {"const": "text"}, "text": STR}, ["type", "text"])]}
    assert diff(tmp_path, item_types(ITEM_OLD), item_types(const)) == []
    # a variant more, a variant less; inside a kept variant, one field changed type
    new = {"oneOf": [tagged("image", {"url": INT, "detail": STR}, ["url"]),
                     tagged("audio", {"url": STR}, ["url"])]}
    assert got(diff(tmp_path / "b", item_types(ITEM_OLD), item_types(new))) == {
        ("variant-added", "Item[type=audio]"): "risky",           # the server sends a kind it never did
        ("variant-removed", "Item[type=text]"): "additive",
        ("type-changed", "Item[type=image].url"): "breaking",
    }


def test_variants_tagged_by_method_pair_by_method(tmp_path):
    def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return obj({"method": {"enum": [method], "type": "string"}, "params": params}, ["method", "params"])
    old = item_types({"oneOf": [call("a/run", STR), call("b/run", INT)]})
    new = item_types({"oneOf": [call("b/run", INT), call("a/run", OPT_STR)]})
    assert got(diff(tmp_path, old, new)) == {("became-nullable", "Item[method=a/run].params"): "breaking"}


def test_a_union_that_gains_own_properties_still_compares_its_variants(tmp_path):
    # The union becomes an object with shared fields beside its oneOf: the variants are still
    # paired and compared, the shared field is said once, and a field that stopped being
    # required inside one variant is named.
    new = {"type": "object", "properties": {"startedAtMs": {"type": ["integer", "null"]}},
           "oneOf": [tagged("text", {"text": STR}, ["text"]),
                     tagged("image", {"url": STR, "detail": STR}, [])]}
    changes = diff(tmp_path, item_types(ITEM_OLD), item_types(new))
    assert got(changes) == {("became-optional", "Item[type=image].url"): "breaking",
                            ("field-added-optional", "Item.startedAtMs"): "additive"}
    shared = next(c for c in changes if c.path == "Item.startedAtMs")
    assert shared.detail.endswith("(in all 2 variants)")


def test_changes_inside_the_alternatives_of_an_object_are_compared(tmp_path):
    # An object that constrains itself with alternatives: `{url} | {fileId}` beside shared fields.
    def image(file_id: dict[str, Any]) -> dict[str, Any]:
        return tagged("image", {"detail": STR}, [], anyOf=[obj({"url": STR}, ["url"]),
                                                          obj({"fileId": file_id}, ["fileId"])])
    old = {"oneOf": [tagged("text", {"text": STR}, ["text"]), image(STR)]}
    new = {"oneOf": [tagged("text", {"text": STR}, ["text"]), image(INT)]}
    changes = diff(tmp_path, item_types(old), item_types(new))
    assert got(changes) == {("type-changed", "Item[type=image].fileId"): "breaking"}
    o = make_snapshot(tmp_path / "cli-old", item_types(old))
    n = make_snapshot(tmp_path / "cli-new", item_types(new))
    assert run_cli(["drift", "schema", str(o), str(n)]) == 1


def test_a_required_field_moved_into_alternatives_is_optional_now(tmp_path):
    # image: `url` required -> one of {url} | {fileId}
    new = {"oneOf": [tagged("text", {"text": STR}, ["text"]),
                     tagged("image", {"detail": STR}, [], anyOf=[obj({"url": STR}, ["url"]),
                                                                 obj({"fileId": STR}, ["fileId"])])]}
    changes = diff(tmp_path, item_types(ITEM_OLD), item_types(new))
    assert got(changes) == {("became-optional", "Item[type=image].url"): "breaking",
                            ("field-added-optional", "Item[type=image].fileId"): "additive"}
    became = next(c for c in changes if c.kind == "became-optional")
    assert "now one of {fileId} | {url}" in became.detail


def test_alternatives_that_require_more_of_the_client(tmp_path):
    # GoParams (client-sent) gains `anyOf: [{required: [name]}, {required: [mode]}]` over fields it had
    old = with_types(GoParams=obj({"name": STR, "mode": ref("Mode")}, []))
    new = with_types(GoParams=obj({"name": STR, "mode": ref("Mode")}, [],
                                  anyOf=[{"required": ["name"]}, {"required": ["mode"]}]))
    assert got(diff(tmp_path, old, new)) == {("alternatives-narrowed", "GoParams"): "breaking"}


def test_externally_tagged_variants_pair_by_their_only_property(tmp_path):
    def err(extra: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [{"enum": ["other"], "type": "string"},
                          obj({"http": obj({"status": INT})}, ["http"], additionalProperties=False),
                          obj({"stream": obj({"code": STR, **extra})}, ["stream"], additionalProperties=False)]}
    old = with_types(AskResponse=obj({"answer": STR, "error": ref("Err")}, ["answer"]), Err=err({}))
    new = with_types(AskResponse=obj({"answer": STR, "error": ref("Err")}, ["answer"]),
                     Err=err({"retry": {"type": "boolean"}}))
    assert got(diff(tmp_path, old, new)) == {("field-added-optional", "Err[{stream}].stream.retry"): "additive"}


# ---------------------------------------------------------------- direction


def test_field_changes_depend_on_who_sends_the_type(tmp_path):
    new = with_types(
        GoParams=obj({"name": STR, "mode": ref("Mode"), "cwd": STR, "tag": OPT_STR}, ["name", "cwd", "mode"]),
        GoResponse=obj({"id": STR, "count": INT, "extra": STR}, ["id", "extra"]),
        DoneNotification=obj({"status": ref("Status"), "remark": STR}, ["status", "remark"]),
        AskResponse=obj({}, []))
    assert got(diff(tmp_path, base(), new)) == {
        ("field-added-required", "GoParams.cwd"): "breaking",      # the client must now send it
        ("field-added-optional", "GoParams.tag"): "additive",
        ("became-required", "GoParams.mode"): "breaking",
        ("field-added-required", "GoResponse.extra"): "additive",  # the server sends more
        ("became-optional", "GoResponse.count"): "breaking",       # the client may not get it
        ("field-renamed", "DoneNotification.note"): "breaking",
        ("required-field-removed", "AskResponse.answer"): "breaking",  # the client's answer: ignored now
    }


def test_enum_values_by_direction_and_exit_codes(tmp_path, capsys):
    new = with_types(Mode={"enum": ["fast"], "type": "string"},                 # client sends: breaks
                     Status={"enum": ["ok", "failed", "paused"], "type": "string"})  # server sends: risky
    assert got(diff(tmp_path, base(), new)) == {("enum-value-removed", "Mode"): "breaking",
                                                ("enum-value-added", "Status"): "risky"}
    risky_only = with_types(Status={"enum": ["ok", "failed", "paused"], "type": "string"})
    o = make_snapshot(tmp_path / "o", base())
    n = make_snapshot(tmp_path / "n", risky_only)
    assert run_cli(["drift", "schema", str(o), str(n)]) == 0
    assert run_cli(["drift", "schema", str(o), str(n), "--fail-on", "risky"]) == 1
    capsys.readouterr()
    assert run_cli(["drift", "schema", str(o), str(n), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["risky"] == 1 and data["summary"]["breaking"] == 0
    [change] = data["changes"]
    assert change["methods"] == ["done"] and change["example"] == "done: $.params.status"
    assert run_cli(["drift", "schema", str(o), str(n), "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("## Codex app-server schema:") and "| risky | 1 |" in md


def test_numeric_ranges_widen_and_narrow(tmp_path):
    new = with_types(GoParams=obj({"name": STR, "mode": ref("Mode"), "n": {"type": "integer", "format": "int64"}}, ["name"]),
                     GoResponse=obj({"id": STR, "count": {"type": "integer", "format": "int64"}}, ["id", "count"]))
    old = with_types(GoParams=obj({"name": STR, "mode": ref("Mode"), "n": {"type": "integer", "format": "int32"}}, ["name"]),
                     GoResponse=obj({"id": STR, "count": {"type": "integer", "format": "int32"}}, ["id", "count"]))
    assert got(diff(tmp_path, old, new)) == {("range-widened", "GoParams.n"): "additive",
                                             ("range-widened", "GoResponse.count"): "risky"}
    assert got(diff(tmp_path / "b", new, old)) == {("range-narrowed", "GoParams.n"): "breaking",
                                                   ("range-narrowed", "GoResponse.count"): "additive"}


def test_method_changes_by_direction(tmp_path):
    methods = {"client_requests": {"fly": None},                               # go removed, fly added
               "server_notifications": {"done": "DoneNotification", "ping": None},
               "server_requests": {"ask": "AskParams", "confirm": None}}
    assert got(diff(tmp_path, base(), base(), methods)) == {
        ("method-removed", "go"): "breaking",
        ("method-added", "fly"): "additive",
        ("method-added", "ping"): "additive",
        ("method-added", "confirm"): "risky",   # the client must answer it or the turn stalls
    }


# ---------------------------------------------------------------- once, with its methods; gates


def test_a_change_in_a_shared_type_is_reported_once_with_every_method(tmp_path):
    methods = {**METHODS, "server_notifications": {"done": "DoneNotification", "again": "DoneNotification"}}
    o = make_snapshot(tmp_path / "o", base(), methods)
    n = make_snapshot(tmp_path / "n", with_types(Status={"enum": ["ok"], "type": "string"}), methods)
    [change] = diff_snapshots(load_snapshot(o), load_snapshot(n)).changes
    assert (change.kind, change.path, change.severity) == ("enum-value-removed", "Status", "additive")
    assert change.methods == ["again", "done"]
    assert change.at == {"again": "$.params.status", "done": "$.params.status"}


def test_a_type_no_method_reaches_is_additive(tmp_path):
    new = with_types(Orphan=obj({"a": INT}, ["a"]))
    old = with_types(Orphan=obj({"a": STR}, ["a"]))
    [change] = diff(tmp_path, old, new)
    assert (change.kind, change.sender, change.severity, change.methods) == ("type-changed", "none", "additive", [])


def capabilities(**caps: str) -> dict[str, Any]:
    return obj({name: {"type": "boolean", "description": doc} for name, doc in caps.items()})


def test_additions_gated_by_an_initialize_capability_are_marked(tmp_path):
    caps = capabilities(fancyMode="Opt into `bonus/offer` requests.", experimentalApi="Opt into experimental API.")
    old = with_types(InitializeCapabilities=caps)
    new = with_types(
        InitializeCapabilities=caps,
        Status={"oneOf": [{"enum": ["ok", "failed"], "type": "string"},
                          {"enum": ["fancy"], "type": "string",
                           "description": "Only sent with the `fancyMode` initialize capability."}]},
        AskParams=obj({"question": STR, "hint": {"type": "string",
                                                 "description": "Requires `experimentalApi`."}}, ["question"]))
    methods = {**METHODS, "server_requests": {"ask": "AskParams", "bonus/offer": None}}
    changes = {c.path + ":" + c.kind: c for c in diff(tmp_path, old, new, methods)}
    assert {k: (c.severity, c.gated) for k, c in changes.items()} == {
        "Status:enum-value-added": ("additive", "fancyMode"),          # not risky: only opted-in clients get it
        "AskParams.hint:field-added-optional": ("additive", "experimentalApi"),
        "bonus/offer:method-added": ("additive", "fancyMode"),          # the capability names the request
    }


def _item_union(*variants: dict[str, Any]) -> dict[str, Any]:
    return with_types(DoneNotification=obj({"status": ref("Status"), "note": STR, "item": ref("Item")},
                                           ["status", "note", "item"]), Item={"oneOf": list(variants)})


def test_a_change_in_every_variant_is_counted_on_its_side(tmp_path):
    old = _item_union(tagged("a", {"x": STR}), tagged("b", {"x": STR}))
    new = _item_union(tagged("a", {"x": STR, "y": STR}), tagged("b", {"x": STR, "y": STR}), tagged("c"))
    by_path = {c.path: c.detail for c in diff(tmp_path, old, new)}
    # c is new and has no y: y was added to the two variants both versions have
    assert by_path["Item.y"] == "optional field added (string) (in all 2 variants both versions have, 1 new one aside)"


def test_a_union_that_became_one_object_is_said_so(tmp_path):
    old = _item_union(tagged("a", {"x": STR}), tagged("b", {"x": STR}))
    new = with_types(DoneNotification=obj({"status": ref("Status"), "note": STR, "item": ref("Item")},
                                          ["status", "note", "item"]),
                     Item=obj({"type": {"enum": ["a", "b"], "type": "string"}}, ["type"]))
    by_path = {c.path: c.detail for c in diff(tmp_path, old, new)}
    assert by_path["Item.x"] == "field removed (a union of 2 variants, type=a|b became one object)"


# ---------------------------------------------------------------- real versions


ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "cassettes" / "schema"
REPORTS = [("0.144.4", "0.163.0"), ("0.153.4", "0.163.0"), ("0.163.0", "0.169.0"), ("0.169.0", "0.171.0")]


def real(old: str, new: str):
    return diff_snapshots(load_snapshot(SCHEMAS / old), load_snapshot(SCHEMAS / new))


@pytest.mark.parametrize("old,new", REPORTS, ids=[f"{a}-{b}" for a, b in REPORTS])
def test_committed_reports_are_what_the_differ_says(old, new, capsys):
    doc = (ROOT / "docs" / f"drift-{old}-to-{new}.md").read_text()
    assert run_cli(["drift", "schema", str(SCHEMAS / old), str(SCHEMAS / new), "--format", "markdown"]) == 1
    report = capsys.readouterr().out
    assert report in doc, (f"docs/drift-{old}-to-{new}.md is stale: regenerate its report part with "
                           f"`codex-cassette drift schema cassettes/schema/{old} cassettes/schema/{new} "
                           "--format markdown` and check the hand-checked list above it")


def test_0_163_0_to_0_169_0_breaks_where_it_does_and_nowhere_else():
    d = real("0.163.0", "0.169.0")
    judged = {(c.kind, c.path): c.severity for c in d.changes if c.severity != "additive"}
    assert judged == {
        ("enum-value-removed", "ReviewDelivery"): "breaking",
        ("became-optional", "ThreadItem[type=imageGeneration].result"): "breaking",
        ("became-optional", "UserInput[type=audio].url"): "breaking",
        ("became-optional", "FunctionCallOutputContentItem[type=input_audio].audio_url"): "breaking",
        ("variant-added", "Account[type=gcp]"): "risky",
        ("enum-value-added", "HookEventName"): "risky",
        ("enum-value-added", "PlanType"): "risky",
    }
    by_path = {c.path: c for c in d.changes}
    human = next(c for c in d.changes if c.path == "CommandExecutionApprovalKind")
    assert (human.kind, human.severity, human.gated) == ("enum-value-added", "additive", "requiredHumanApproval")
    assert by_path["ThreadItem.startedAtMs"].detail.endswith("(in all 19 variants)")
    assert "item/completed" in by_path["ThreadItem[type=imageGeneration].result"].methods
    assert not [c for c in d.changes if "HookRunSummary" in c.path]  # an alias swap of two strings


def test_0_169_0_to_0_171_0_breaks_where_it_does_and_nowhere_else():
    d = real("0.169.0", "0.171.0")
    assert len(d.changes) == 30 and len({(c.kind, c.path) for c in d.changes}) == 30
    judged = {(c.kind, c.path): c.severity for c in d.changes if c.severity != "additive"}
    assert judged == {
        ("required-field-removed", "AgentMessageDisplay.action"): "breaking",
        ("optional-field-removed", "AgentMessageDisplay.blockType"): "risky",
        ("optional-field-removed", "AgentMessageDisplay.checkTrustedContacts"): "risky",
        ("optional-field-removed", "AgentMessageDisplay.cyberTrustedAccess"): "risky",
    }


def test_an_experimental_surface_is_opt_in():
    # ThreadRealtimeItem and every thread/realtime/* notification: "EXPERIMENTAL - ..."
    by_path = {c.path: c for c in real("0.169.0", "0.171.0").changes}
    for tag in ("frame", "turnInputAccepted", "sessionEndInputSaved"):
        c = by_path[f"ThreadRealtimeItem[type={tag}]"]
        assert (c.kind, c.severity, c.gated) == ("variant-added", "additive", "experimentalApi")


def test_a_type_that_became_a_union_is_said_so():
    by_path = {c.path: c for c in real("0.169.0", "0.171.0").changes}
    # 0.169.0: one object with `action`; 0.171.0: variants mode=show|hide|block, none with it
    assert by_path["AgentMessageDisplay.action"].detail == \
        "field removed (the object became a union of 3 variants, mode=block|hide|show; none has it)"
    assert by_path["AgentMessageDisplay.version"].detail == \
        "required field added (integer enum) (the object became a union of 3 variants, mode=block|hide|show; all have it)"


def test_variant_counts_are_those_of_the_side_the_change_is_on():
    by_path = {c.path: c for c in real("0.169.0", "0.171.0").changes}
    # 4 variants in 0.169.0, 7 in 0.171.0, each with observedAtMs
    assert by_path["ThreadRealtimeItem.observedAtMs"].detail == "optional field added (integer | null) (in all 7 variants)"


def test_a_method_new_in_new_does_not_reach_a_removed_field():
    d = real("0.169.0", "0.171.0")
    action = next(c for c in d.changes if c.path == "AgentMessageDisplay.action")
    assert "item/completed" in action.methods and "thread/search/partial" not in action.methods
    assert "thread/search/partial" not in action.at
    assert ("method-added", "thread/search/partial") in {(c.kind, c.path) for c in d.changes}


def test_0_144_4_to_0_163_0_names_known_changes():
    got_ = {(c.kind, c.path): c.severity for c in real("0.144.4", "0.163.0").changes}
    assert got_[("method-removed", "thread/rollback")] == "breaking"
    assert got_[("enum-value-removed", "ReviewDecision")] == "breaking"
    assert got_[("method-added", "thread/revert")] == "additive"
    assert got_[("method-added", "thread/reverted")] == "additive"
    assert got_[("became-optional", "UserInput[type=image].url")] == "breaking"
    assert not any(k == "type-changed" for k, _ in got_)


# ---------------------------------------------------------------- impact on cassettes


def test_schema_diff_with_cassettes_lists_what_they_use_first(tmp_path, capsys):
    new = with_types(Status={"enum": ["ok", "failed", "paused"], "type": "string"},     # risky, done.status
                     AskParams=obj({"question": OPT_STR}, ["question"]),               # breaking, ask
                     GoResponse=obj({"id": STR, "count": INT}, ["id"]))                # breaking, go result
    o = make_snapshot(tmp_path / "o", base())
    n = make_snapshot(tmp_path / "n", new)
    cas = tmp_path / "cassettes" / "one.jsonl"
    cas.parent.mkdir()
    lines = [{"codex_cassette": 1, "meta": {"complete": True}},
             {"i": 1, "from": "client", "t": 0.1, "msg": {"id": 1, "method": "go", "params": {"name": "x"}}},
             {"i": 2, "from": "server", "t": 0.2, "msg": {"id": 1, "result": {"id": "r", "count": 2}}},
             {"i": 3, "from": "server", "t": 0.3, "msg": {"method": "done", "params": {"status": "ok", "note": ""}}}]
    cas.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert run_cli(["drift", "schema", str(o), str(n), "--cassettes", str(cas.parent)]) == 1
    out = capsys.readouterr().out
    touching = out.split("TOUCHING THE CASSETTES (2 breaking or risky)\n", 1)[1].split("\n\n", 1)[0]
    assert touching.splitlines() == [
        "  breaking [became-optional] GoResponse.count: required -> optional",
        f"      used in {cas}:3",
        "  risky [enum-value-added] Status: value 'paused' added",
        f"      used in {cas}:4",
    ]  # AskParams.question is breaking too, but no cassette has an `ask` request
    assert run_cli(["drift", "schema", str(o), str(n), "--cassettes", str(cas.parent), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {i["path"]: i["touches"] for i in data["impact"]} == {"GoResponse.count": [f"{cas}:3"],
                                                                 "Status": [f"{cas}:4"]}
