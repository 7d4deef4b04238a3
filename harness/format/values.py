"""What each key of a scenario or a cassette takes: type and range, checked at load.

DESIGN.md: values are checked, not coerced. A value that loaded and then tripped the
fake (a delay of 1e300 s overflowing a timestamp, `exit: 256` exiting 0, a list sent as
its Python repr, `expect_close: "no"` read as true) was a check missing at load. So every
key the scenario language and the cassette format accept has its rule in one table,
``RULES``; the scenario compiler and the cassette loader ask it, and an error says which
key, what it got and what it takes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.safe_text import quoted

MAX_SECONDS = 3600.0  # the longest delay or stall: an hour (docs/scenarios.md)
EXIT_CODES = range(256)
# Signals whose default action does not end a process: a fake "dying" of one would
# stop (and hang its client) or go on living.
_NOT_DEADLY = frozenset({"SIGCHLD", "SIGCLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU",
                         "SIGURG", "SIGWINCH"})
_NUMBERED = re.compile(r"SIG([1-9][0-9]?)")  # how a recording names a signal without a name (SIG35)
JSONRPC_ERROR_KEYS = ("code", "message", "data")
# An SSH recording whose connection died: the real outcome is unknown, and the recorder, as
# ssh(1), exited with LOST_EXIT (docs/ssh.md).
CONNECTION_LOST = "connection lost"
LOST_EXIT = 255
LINE_KEY = "__line__"  # the line the YAML reader notes in every mapping it reads


def deadly_signal(name: Any) -> int | None:
    """The number of a signal a process can die of, by its name (SIGKILL, or SIG35 as a
    recording names a real-time one); None for anything else."""
    if not isinstance(name, str) or not name.startswith("SIG") or name in _NOT_DEADLY:
        return None
    import signal  # only a cassette that ends by a signal needs it

    numbered = _NUMBERED.fullmatch(name)
    if numbered:
        number = int(numbered.group(1))
        if not 0 < number < signal.NSIG:
            return None
        try:
            return None if signal.Signals(number).name in _NOT_DEADLY else number
        except ValueError:  # a real-time signal between SIGRTMIN and SIGRTMAX: deadly by default
            return number
    member = getattr(signal.Signals, name, None) if not name.startswith("SIG_") else None
    return int(member) if isinstance(member, signal.Signals) else None


def returncode(status: int | str) -> int:
    """What a client sees of a valid ``exit``: the code, -N for a death by signal N (as
    subprocess says it), LOST_EXIT for a lost connection."""
    if isinstance(status, int):
        return status
    if status == CONNECTION_LOST:
        return LOST_EXIT
    return -(deadly_signal(status) or 9)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(value: Any) -> bool:
    """A finite, non-negative number of seconds (a timestamp: no upper bound)."""
    return _number(value) and math.isfinite(value) and value >= 0


def _duration(value: Any) -> bool:
    return seconds(value) and value <= MAX_SECONDS


def _exit(value: Any) -> bool:
    if type(value) is int:
        return value in EXIT_CODES
    return value == CONNECTION_LOST or deadly_signal(value) is not None


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _name(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _true(value: Any) -> bool:
    return value is True


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _label(value: Any) -> bool:
    return _name(value) or type(value) is int


def _request_id(value: Any) -> bool:
    return isinstance(value, str) or type(value) is int


def _params(value: Any) -> bool:
    return isinstance(value, (dict, list))


def _object(value: Any) -> bool:
    return isinstance(value, dict)


def _paths(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(p, str) for p in value)


def _jsonrpc_error(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) <= {*JSONRPC_ERROR_KEYS, LINE_KEY}
            and type(value.get("code")) is int and isinstance(value.get("message"), str))


def _expected_error(value: Any) -> bool:
    # An expectation may leave out what it does not care about (matched as a subset).
    return (isinstance(value, dict) and set(value) <= {*JSONRPC_ERROR_KEYS, LINE_KEY}
            and type(value.get("code", 0)) is int and isinstance(value.get("message", ""), str))


@dataclass(frozen=True)
class Rule:
    takes: str                  # what the key takes, said in the error
    ok: Callable[[Any], bool]


SECONDS = Rule(f"a number of seconds from 0 to {MAX_SECONDS:g}", _duration)
TEXT = Rule("a string (quote it)", _text)
TRUE = Rule("true (or leave the key out)", _true)
BOOLEAN = Rule("true or false (a YAML boolean, not a string)", _boolean)
LABEL = Rule("a label (a non-empty name or an integer)", _label)
REQUEST_ID = Rule("a JSON-RPC id (an integer or a string)", _request_id)

# Every key the scenario language (docs/scenarios.md) and the cassette format (DESIGN.md,
# docs/architecture.md) accept whose value is not free JSON. Fault arguments are under
# "fault KIND"; an event's fields and a step's keys share a rule where they mean the same.
RULES: dict[str, Rule] = {
    # timing and endings
    "fault delay": SECONDS,
    "fault stall": SECONDS,
    "fault exit": Rule("an exit code 0-255 or the name of a signal the process dies of, such as SIGKILL",
                       lambda value: value != CONNECTION_LOST and _exit(value)),
    "fault garbage": Rule("the text of the line to send (a string)", _text),
    "fault partial": Rule("the text to send without a newline (a string)", _text),
    "fault close_stdout": TRUE,
    "exit": Rule("an exit code 0-255, the name of a signal the process dies of (such as SIGKILL), or "
                 f"{CONNECTION_LOST!r} (an SSH recording's)", _exit),
    "raw": Rule("the text of the line to send (a string)", _text),
    "close": TRUE,
    "expect_close": TRUE,
    "eof": Rule("true", _true),
    # messages
    "method": Rule("a method name (a non-empty string)", _name),
    "params": Rule("JSON-RPC params (a mapping or a list)", _params),
    "error": Rule("a JSON-RPC error: a mapping with an integer 'code', a string 'message' and "
                  "optionally 'data'", _jsonrpc_error),
    "expect_error": Rule("a JSON-RPC error to expect: a mapping of 'code' (an integer), 'message' "
                         "(a string) and 'data', any of them", _expected_error),
    "no_reply": BOOLEAN,
    "request": BOOLEAN,
    "id": REQUEST_ID,
    "as": LABEL,
    "reply_to": LABEL,
    "ignore": Rule("a list of dotted paths such as params.cwd", _paths),
    # the scenario's own
    "name": TEXT,
    "description": TEXT,
    "meta": Rule("a mapping", _object),
    # the header's meta, what is read of it
    "meta.complete": BOOLEAN,
    "meta.codex_version": Rule("a codex version such as 0.163.0 (a string)", _text),
    # an event's fields
    "i": Rule("the event's number (an integer, 0 or more)", _count),
    "t": Rule("a number of seconds (0 or more)", seconds),
    "nonl": Rule("true or false", _boolean),
    "binary": TRUE,
    "note": TEXT,
    "msg": Rule("a JSON-RPC message object", _object),
    "raw_b64": Rule("base64 text", _text),
}


def problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` under ``key``, as an error says it; None if it is fine."""
    rule = RULES[key]
    if rule.ok(value):
        return None
    said = f"fault {key[6:]}" if key.startswith("fault ") else f"'{key}'"
    hint = ""
    if key.endswith("exit") and type(value) is int and value < 0:
        hint = f" (death by signal {-value} is written as its name, such as SIGKILL for 9)"
    elif key.endswith("exit") and isinstance(value, str) and value.startswith("SIG"):
        hint = " (a signal that stops or spares a process cannot end a session)"
    elif rule is SECONDS and seconds(value):
        hint = f" (at most {MAX_SECONDS:g} s: longer than any test should wait)"
    elif isinstance(value, str) and rule in (BOOLEAN, TRUE):
        hint = " (a quoted word is a string, not a boolean)"
    return f"{said} takes {rule.takes}, not {quoted(_plain(value), 80)}{hint}"


def _plain(value: Any) -> Any:
    """``value`` as the file wrote it: without the line notes the YAML reader adds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != LINE_KEY}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
