"""A test's default cassette name: what its codex fixture looks for, and what the fault sweep reads
while collecting, made by one function so that both find the same file; and the file a name leads
to, kept inside pytest's rootdir."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SUFFIXES = ("", ".jsonl", ".yaml", ".yml")

# What a file name should not hold becomes '-' (pytest-recording's rule).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]=,+-]")
# What `pytest -k` cannot take in an identifier (its grammar: word characters, ':', '+', '-', '.',
# '[', ']', '\\', '/'), less the brackets and slashes a node id gives meaning to, becomes '-'.
_NOT_FOR_K = re.compile(r"[^A-Za-z0-9_.:+-]")


def default_cassette_name(test_name: str, cls: type | None) -> str:
    """``Class.test_name[params]`` as pytest-recording names it; ``test_name`` is the test item's
    name as it would be without the sweep (``test_name[params]``, or ``test_name``)."""
    name = f"{cls.__name__}.{test_name}" if cls is not None else test_name
    return _UNSAFE.sub("-", name)


def case_name(name: str, callspec: Any) -> str:
    """The name pytest gives the item of one parametrized case (``name[id]``), as
    ``Class._genfunctions`` does; ``name`` alone when there is no case or it shows no id."""
    if callspec is None or not callspec.id:
        return name
    return f"{name}[{callspec.id}]"


def variant_param_id(fault: Any) -> str:
    """The pytest id of one run of a sweep (a harness.faults.catalogue.Fault, None for the clean
    run): ``fault:crash-23``, ``fault:crash-23:closed``, as the variant's cassette is named
    (``NAME.crash-23.jsonl``), so ``-k "fault:crash-23"`` selects it."""
    if fault is None:
        return "fault:none"
    name = f"{fault.kind}-{fault.point}{fault.suffix}" + (f":{fault.variant}" if fault.variant else "")
    return "fault:" + _NOT_FOR_K.sub("-", name)


def fault_param_id(node: Any) -> str | None:
    """The `fault:...` id this test carries in its name, if it is part of a sweep."""
    callspec = getattr(node, "callspec", None)
    if callspec is None or "codex_fault" not in callspec.params:
        return None
    active = callspec.params["codex_fault"]
    return variant_param_id(None if active is None else active.fault)


def without_fault_id(name: str, node: Any) -> str:
    """A test's name as it would be without the sweep (its default cassette name must not change)."""
    fid = fault_param_id(node)
    if fid is None:
        return name
    for old, new in ((f"[{fid}]", ""), (f"-{fid}]", "]"), (f"[{fid}-", "["), (f"-{fid}-", "-")):
        if old in name:
            return name.replace(old, new, 1)
    return name


def _check_inside(path: Path, directory: Path, root: Path, name: str) -> None:
    real = path.resolve()  # a symlink counts where it points
    if not any(real.is_relative_to(base.resolve()) for base in (directory, root)):
        raise HarnessError(f"cassette name {name!r} leads to {real}, outside pytest's rootdir {root} (and the "
                           f"cassette directory {directory}): a name may reach any cassette inside the rootdir "
                           "('../other_module/session'), none beyond it, also not through a symlink")


def cassette_base(directory: Path, name: str, root: Path) -> Path:
    """``directory/name`` (no suffix), refused when it leaves both the rootdir and the cassette directory."""
    if not Path(name).parts or Path(name).is_absolute():
        raise HarnessError(f"cassette name {name!r} must be a relative path, from the cassette directory {directory}")
    base = directory / name
    _check_inside(base, directory, root, name)
    return base


def resolve_cassette(directory: Path, name: str | os.PathLike[str], root: Path) -> Path | None:
    """The file a cassette name refers to, trying the known suffixes; where it leads is checked
    (``cassette_base``), the file found too, followed through symlinks."""
    name = os.fspath(name)
    base = cassette_base(directory, name, root)
    for suffix in SUFFIXES:
        candidate = base.with_name(base.name + suffix) if suffix else base
        if candidate.is_file():
            _check_inside(candidate, directory, root, name)
            return candidate
    return None
