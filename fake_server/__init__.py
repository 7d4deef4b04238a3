"""The scripted fake codex app-server: a drop-in for the `codex` binary.

It plays the server side of a cassette (or a compiled YAML scenario) with the
replay engine, over its own stdin/stdout when run as a process, or over an
in-memory pipe pair inside the caller's event loop (``InProcessCodex``).

As a process it starts warm, through a fork server that has the engine imported
already (fake_server.forkserver), once the launching process runs one; the
harness's FakeCodex starts it on first use.

Names are imported on first use: `python -m fake_server` must not pay for the
in-process handle's asyncio when it serves stdio.
"""

from typing import Any

__all__ = ["InProcessCodex", "FakeCodexCommand", "serve_stdio", "write_bin_dir"]
_HOMES = {"InProcessCodex": "fake_server.inprocess", "FakeCodexCommand": "fake_server.commands",
          "write_bin_dir": "fake_server.commands", "serve_stdio": "fake_server.serve"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'fake_server' has no attribute {name!r}")
