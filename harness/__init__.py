"""codex-cassette: record/replay test harness for the Codex app-server protocol."""

__version__ = "0.1.0"
