"""The scripted fake codex app-server: a drop-in for the `codex` binary.

It plays the server side of a cassette (or a compiled YAML scenario) with the
replay engine, over its own stdin/stdout when run as a process, or over an
in-memory pipe pair inside the caller's event loop (``InProcessCodex``).
"""

from fake_server.inprocess import InProcessCodex
from fake_server.launcher import FakeCodexCommand, write_bin_dir
from fake_server.serve import serve_stdio

__all__ = ["InProcessCodex", "FakeCodexCommand", "serve_stdio", "write_bin_dir"]
