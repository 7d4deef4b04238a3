"""A live scenario and the real codex set up to play it, offline.

A live scenario file has three parts: ``codex`` (the config codex runs with),
``model`` (the mock model's script, docs/live.md) and ``client`` (what the
built-in client does, harness.live.client). The whole scenario is copied into
every cassette recorded from it, so the cassette can be re-recorded later
against another codex without the original file.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from harness.errors import ScenarioError
from harness.format.yaml_reader import read_yaml, strip_lines
from harness.live.binary import codex_version, find_codex_binary
from harness.live.codex_home import CodexHome, make_codex_home
from harness.live.mock_model import MockModelThread
from harness.live.model_script import Step, load_model_script
from harness.format.placeholders import HOST, Placeholders, host_name

CODEX_KEYS = {"approval_policy", "sandbox_mode", "model"}
TOP_KEYS = {"name", "description", "codex", "model", "client"}
STREAM_LIMIT = 1 << 26  # codex lines can carry whole command outputs


@dataclass
class LiveScenario:
    name: str
    codex: dict[str, Any] = field(default_factory=dict)
    model: list[Any] = field(default_factory=list)
    client: list[Any] = field(default_factory=list)
    source: str = "<scenario>"

    @classmethod
    def from_data(cls, data: Any, source: str | Path) -> "LiveScenario":
        if not isinstance(data, dict):
            raise ScenarioError(source, 1, "a live scenario is a mapping with 'codex', 'model' and 'client'")
        unknown = set(data) - TOP_KEYS
        if unknown:
            raise ScenarioError(source, None, f"unknown top-level key(s) {sorted(unknown)} in a live scenario; "
                                f"known: {sorted(TOP_KEYS)}")
        codex = data.get("codex") or {}
        if not isinstance(codex, dict) or set(codex) - CODEX_KEYS:
            raise ScenarioError(source, None, f"'codex' takes only {sorted(CODEX_KEYS)}")
        model = data.get("model") or []
        load_model_script(model, source)  # refuse a bad script before anything starts
        client = data.get("client") or []
        if not isinstance(client, list):
            raise ScenarioError(source, None, "'client' must be a list of actions")
        return cls(name=str(data.get("name") or Path(str(source)).stem), codex=dict(codex),
                   model=list(model), client=list(client), source=str(source))

    @classmethod
    def load(cls, path: str | Path) -> "LiveScenario":
        path = Path(path)
        # The one YAML reader: caps, duplicate keys refused, JSON values only (the scenario
        # goes into the cassette's header), every problem named by file and line.
        return cls.from_data(strip_lines(read_yaml(path)), path)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], source: str) -> "LiveScenario":
        live = meta.get("live")
        if not isinstance(live, dict) or "scenario" not in live:
            raise ScenarioError(source, 1, "this cassette was not recorded live (its header has no "
                                "live.scenario), so it cannot be re-recorded")
        return cls.from_data(live["scenario"], source)

    def steps(self) -> list[Step]:
        return load_model_script(self.model, self.source)

    def to_meta(self) -> dict[str, Any]:
        return {"name": self.name, "codex": self.codex, "model": self.model, "client": self.client}


class LiveCodex:
    """The mock model, a throwaway CODEX_HOME and the binary; then ``spawn()``
    codex as often as needed (a resume needs a second process).

    The mock runs on its own thread, so one LiveCodex serves sync code, async
    code, and a pytest fixture whose teardown outlives the test's event loop.
    Use it with ``with`` or ``async with``.
    """

    def __init__(self, scenario: LiveScenario, codex_bin: str | os.PathLike[str] | None = None,
                 root: str | os.PathLike[str] | None = None) -> None:
        self.scenario = scenario
        self.binary = find_codex_binary(codex_bin)
        self.version = codex_version(self.binary)
        self._root = root
        self.mock: MockModelThread | None = None
        self.home: CodexHome | None = None

    def start(self) -> "LiveCodex":
        self.mock = MockModelThread(self.scenario.steps()).start()
        try:
            codex = self.scenario.codex
            kwargs = {k: codex[k] for k in ("approval_policy", "sandbox_mode", "model") if k in codex}
            self.home = make_codex_home(self.mock.base_url, self._root, **kwargs)
            self.workdir.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.home is not None:
            self.home.cleanup()
            self.home = None
        if self.mock is not None:
            self.mock.stop()
            self.mock = None

    def __enter__(self) -> "LiveCodex":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> "LiveCodex":
        return self.start()

    async def __aexit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def workdir(self) -> Path:
        assert self.home is not None, "use LiveCodex as an async context manager"
        return Path(self.home.root) / "work"

    @property
    def argv(self) -> list[str]:
        return [str(self.binary), "app-server"]

    @property
    def env(self) -> dict[str, str]:
        assert self.home is not None
        return dict(self.home.env)

    def placeholders(self) -> Placeholders:
        assert self.home is not None
        values = {"cwd": str(self.workdir), "home": str(self.home.home), "codex_home": str(self.home.codex_home)}
        host = host_name()
        if host:  # codex sends it (remoteControl/status/changed serverName); no env var sets it
            values[HOST] = host
        return Placeholders(values)

    def meta(self) -> dict[str, Any]:
        return {"codex_version": self.version, "live": {"scenario": self.scenario.to_meta()}}

    async def spawn(self) -> asyncio.subprocess.Process:
        """codex app-server as a subprocess whose handle drivers accept (stdin writer, stdout lines)."""
        return await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=self.env, cwd=str(self.workdir), limit=STREAM_LIMIT)
