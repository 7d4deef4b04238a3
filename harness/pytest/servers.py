"""What the pytest fixtures hand a test: a fake codex replaying a cassette, and a
codex app-server that replays or records according to the record mode.

Plain classes, usable without pytest; harness.pytest.plugin only builds them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.format.cassette import Cassette
from harness.format.connections import Launch, LaunchCounter, connection_path
from harness.format.load import open_cassette
from harness.pytest.endings import end_process, end_remote, mark_failed, never_connected, settle_proxies
from harness.record.process import spawn_owned
from harness.replay.options import ReplayOptions
from harness.replay.report import ReplayReport

from fake_server.reports import read_reports, stop_running


@dataclass
class FakeCodex:
    """One test's fake codex: how to launch it, and what it reported."""

    cassette_path: Path
    options: ReplayOptions
    workdir: Path
    transport: str = "stdio"           # ws or unix: start() runs the fake listening there, at .url
    url: str | None = None             # where a socket client connects (ws://127.0.0.1:PORT, unix://PATH)
    _handles: list[Any] = field(default_factory=list)
    _expected_failure: bool = False
    _started: bool = False
    # Set by CodexAppServer: each launch of .argv serves its own connection's cassette.
    connections: Path | None = None
    _told: set[tuple[Any, ...]] = field(default_factory=set)  # failures already reported to the test
    _listener: Any = None              # harness.pytest.sockets.ListeningProcess

    @property
    def timeout(self) -> float:
        """The replay timeout in force (seconds one expected client message may take): a test
        keeps its client's own waits longer, so the fake's report, which names the line, wins."""
        return self.options.timeout

    def load_cassette(self) -> Cassette:
        return open_cassette(self.cassette_path)

    def start(self) -> "FakeCodex":
        """Make the launch paths ready: start this process's fork server (warm launches,
        unless CODEX_CASSETTE_FORKSERVER=0) and write the bin dir. The fixture does this."""
        from fake_server.forkserver import ensure_server

        ensure_server()
        self._started = True
        self._write_bin_dir()
        if self.transport != "stdio" and self._listener is None:
            from harness.pytest.sockets import ListeningProcess, listen_url

            url = listen_url(self.transport, self.workdir)
            self._listener = ListeningProcess.start(self.command.argv("app-server", "--listen", url),
                                                    self.command.env(), url, self.workdir / "listener.stderr")
            self.url = self._listener.url
        return self

    def bind(self, **values: str) -> "FakeCodex":
        """Bind placeholders up front (e.g. cwd) instead of on first sight."""
        self.options.bindings.update(values)
        if self._started:
            self._write_bin_dir()  # its `codex` has the bindings built in
        return self

    def _write_bin_dir(self) -> None:
        from fake_server.commands import write_bin_dir

        write_bin_dir(self.bin_dir, self.command)

    # -- as a subprocess ----------------------------------------------------

    @property
    def command(self) -> Any:
        """The fake's command line (fake_server.commands.FakeCodexCommand)."""
        from fake_server.commands import FakeCodexCommand

        return FakeCodexCommand.from_options(self.cassette_path, self.options, self.workdir / "report-{pid}.json",
                                             connections=self.connections)

    @property
    def argv(self) -> list[str]:
        """Launch this instead of `codex app-server`: warm through the fork server once it runs, else cold."""
        return self.command.argv("app-server")

    @property
    def bin_dir(self) -> Path:
        """A directory whose `codex` is the fake (written by start()); put it first on PATH."""
        return self.workdir / "bin"

    @property
    def env(self) -> dict[str, str]:
        """os.environ with the fake's bin dir first on PATH."""
        env = self.command.env()
        env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "")])
        return env

    # -- in-process ----------------------------------------------------------

    def handle(self, cassette_path: Path | None = None):
        """A subprocess-shaped handle running the fake in the current event loop
        (on another cassette of the same test when given, e.g. a resume's second session)."""
        from fake_server import InProcessCodex

        handle = InProcessCodex(cassette_path or self.cassette_path, self.options)
        self._handles.append(handle)
        return handle

    # -- results --------------------------------------------------------------

    @property
    def reports(self) -> list[ReplayReport]:
        return [h.report for h in self._handles] + read_reports(self.workdir)

    @property
    def report(self) -> ReplayReport | None:
        reports = self.reports
        return reports[-1] if reports else None

    def failures(self) -> list[ReplayReport]:
        return [r for r in self.reports if r.failed(self.options.strict)]

    def untold_failures(self, ended_only: bool = False) -> list[ReplayReport]:
        """Failures not reported to the test yet (each is told once); ``ended_only``: only
        sessions that reached their verdict (not one still running)."""
        return [r for r in self.failures() if _report_key(r) not in self._told
                and not (ended_only and r.status in ("running", "stopped"))]

    def untold_reports(self) -> list[ReplayReport]:
        """Every session's report not told yet, failed or not: a test that failed on its own
        (its client hung after everything was played) is told what the fake saw."""
        return [r for r in self.reports if _report_key(r) not in self._told]

    def mark_told(self, reports: list[ReplayReport]) -> None:
        self._told.update(_report_key(r) for r in reports)

    def check(self) -> None:
        """Raise AssertionError with the readable report if any run went wrong."""
        bad = self.failures()
        if bad:
            raise AssertionError("\n\n".join(r.summary() for r in bad))

    def assert_diverged(self) -> ReplayReport:
        """For tests of a broken client: assert a run diverged, and accept that at teardown."""
        diverged = [r for r in self.reports if r.status == "diverged"]
        if not diverged:
            states = ", ".join(r.status for r in self.reports) or "no run at all"
            raise AssertionError(f"expected the session to diverge from {self.cassette_path}, but got: {states}")
        self._expected_failure = True
        return diverged[-1]

    def close(self) -> None:
        for handle in self._handles:
            handle.kill_if_running()
        if self._listener is not None:
            self._listener.stop()  # its sessions' and its own final reports get written
        # A fake subprocess the test left running would linger: stopped, it writes its final report.
        stop_running(self.workdir, grace=5.0)



_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # what sh can set or unset


def _report_key(report: ReplayReport) -> tuple[Any, ...]:
    """One session's report, whichever copy of it was read."""
    return (report.pid, report.started, report.cassette)


@dataclass
class CodexAppServer:
    """A codex for one test that replays or records, so one test body records
    once and replays forever (pytest-recording's idea for this protocol).

    Replaying, it is the fake codex. Recording, it is the real binary behind the
    recorder — offline against the mock model when a live scenario is given
    (its ``codex`` and ``model`` parts; the test itself is the client).
    """

    cassette_path: Path
    recording: bool
    fake: FakeCodex | None = None
    codex_bin: str | None = None
    live_scenario: Any = None          # harness.live.session.LiveScenario
    workdir: Path | None = None        # this test's own files (the launch counter); start() makes one if None
    ssh: dict[str, Any] | None = None  # {"target": "user@host:port", ...}: record a codex on another host
    timeout: float = 10.0              # the replay timeout in force (as FakeCodex.timeout), in either mode
    transport: str = "stdio"           # ws or unix: clients connect to .url, each connection a cassette
    fresh: bool = False                # True: a recording does not keep the old cassette's unchanged lines
    volatile: tuple[str, ...] = ()     # more values a re-record does not compare (harness.format.minted)
    _recorder: Any = None              # harness.pytest.sockets.ListeningProcess (recording a socket)
    _live: Any = None                  # harness.live.session.LiveCodex, started by start()
    _recorders: list[tuple[Any, Any]] = field(default_factory=list)

    @property
    def launches(self) -> LaunchCounter:
        """Every connection of this test, in-process (pid 0) or launched by the client (its pid),
        numbered in the order they started (harness.format.connections)."""
        if self.workdir is None:
            raise HarnessError("CodexAppServer.start() was not called: it has no working directory yet")
        return LaunchCounter(self.workdir / "connections")

    @property
    def mode(self) -> str:
        return "record" if self.recording else "replay"

    def start(self) -> "CodexAppServer":
        """What launching needs, started up front (the fixture's setup): the fake's fork
        server and bin dir when replaying; the live codex's mock model and home when
        recording against a live scenario."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="codex-app-server-"))
        if not self.recording:
            assert self.fake is not None
            self.fake.connections = self.launches.path
            self.fake.start()
        elif self.live_scenario is not None and self._live is None:
            from harness.live.session import LiveCodex

            self._live = LiveCodex(self.live_scenario, self.codex_bin).start()
        if self.recording:
            self._write_recording_codex()
        if self.recording and self.transport != "stdio" and self._recorder is None:
            self._start_socket_recorder()
        return self

    @property
    def url(self) -> str | None:
        """Where a socket client connects (transport ws or unix), replaying or recording alike."""
        if not self.recording:
            return self.fake.url if self.fake is not None else None
        return self._recorder.url if self._recorder is not None else None

    def _start_socket_recorder(self) -> None:
        from harness.pytest.sockets import start_socket_recorder

        self._recorder = start_socket_recorder([*self._proxy_argv(), "app-server"], self.transport,
                                               self._proxy_env(), self.cwd)

    # -- recording setup ---------------------------------------------------------

    def _live_codex(self) -> Any:
        if self.live_scenario is not None and self._live is None:
            raise HarnessError("CodexAppServer.start() was not called: the live codex is not running")
        return self._live

    def _binary(self) -> str:
        live = self._live_codex()
        if live is not None:
            return str(live.binary)
        from harness.live.binary import find_codex_binary

        return str(find_codex_binary(self.codex_bin))

    def _recording_meta(self) -> dict[str, Any]:
        live = self._live_codex()
        return live.meta() if live is not None else {}

    @property
    def cwd(self) -> str:
        """The directory the client should work in (thread/start's cwd)."""
        if self.recording and self.ssh is not None and self._remote().cwd:
            return str(self._remote().cwd)
        live = self._live_codex() if self.recording else None
        return str(live.workdir) if live is not None else os.getcwd()

    def _remote(self) -> Any:
        """The ssh option as a harness.record.ssh.SSHRecording. With a live scenario the remote
        codex gets the live CODEX_HOME, HOME and workdir: only useful when the remote host
        is this one (the mock model listens on loopback), as in the tests."""
        from harness.record.ssh_recording import SSHRecording

        remote = SSHRecording.from_config(self.ssh or {})
        live = self._live_codex()
        if live is not None:
            changed = {k: v for k, v in live.env.items() if os.environ.get(k) != v}
            remote.env = {**changed, **remote.env}
            remote.cwd = remote.cwd or str(live.workdir)
            remote.codex_bin = remote.codex_bin or str(live.binary)
        remote.codex_bin = remote.codex_bin or "codex"
        return remote

    # -- what a client launches: the same doors replaying and recording ----------------

    @property
    def argv(self) -> list[str]:
        """The command to launch instead of `codex app-server`: the fake, or the recording
        `codex` of .bin_dir (the proxy in front of the real codex), with or without .env."""
        if not self.recording:
            assert self.fake is not None
            return self.fake.argv
        return [str(self.bin_dir / "codex"), "app-server"]

    @property
    def bin_dir(self) -> Path:
        """A directory whose `codex` is the fake, or (recording) runs `codex app-server` behind
        the recording proxy: put it first on PATH, or give its `codex` to a client that takes
        a codex path (`CODEX_BIN`) and adds `app-server` itself. Written by start()."""
        if not self.recording:
            assert self.fake is not None
            return self.fake.bin_dir
        if self.workdir is None:
            raise HarnessError("CodexAppServer.start() was not called: it has no bin dir yet")
        return self.workdir / "bin"

    @property
    def env(self) -> dict[str, str]:
        """An environment whose PATH finds .bin_dir's `codex` first (replaying or recording),
        with what the recorded codex needs (the live scenario's HOME and CODEX_HOME)."""
        if not self.recording:
            assert self.fake is not None
            return self.fake.env
        env = self._proxy_env()
        env["PATH"] = os.pathsep.join(p for p in (str(self.bin_dir), env.get("PATH")) if p)
        return env

    def _proxy_argv(self) -> list[str]:
        """The recording proxy up to codex's own arguments: `... record -o X --connections C -- codex`;
        each launch records the connection whose number it takes from the launch counter."""
        argv = [sys.executable, "-m", "harness", "record", "-o", str(self.cassette_path),
                "--connections", str(self.launches.path)]
        argv += ["--fresh"] * self.fresh + [f"--volatile={v}" for v in self.volatile]
        live = self._live_codex()
        if live is not None:
            argv += [f"--placeholder={name}={value}" for name, value in live.placeholders().values.items()]
            argv += ["--meta", json.dumps(self._recording_meta()), "--require-model-provider", "mock"]
        if self.ssh is not None:
            remote = self._remote()
            return argv + remote.flags() + ["--", remote.codex_bin]
        return argv + ["--", self._command_name()]

    def _command_name(self) -> str:
        """What the proxy runs: plain `codex`, found through the proxy's PATH (the real codex's
        folder first), so the cassette header names no path of the recording machine (as the
        in-process recorder's does)."""
        binary = Path(self._binary())
        return "codex" if binary.name == "codex" else str(binary)

    def _proxy_env(self) -> dict[str, str]:
        """The recording proxy's environment: the live scenario's (or ours), the real codex's
        folder first on PATH, and over SSH the values behind `--remote-env NAME`."""
        from fake_server.paths import SOURCE_ROOT

        live = self._live_codex()
        env = live.env if live is not None else dict(os.environ)
        if self.ssh is not None:
            # The values behind the argv's `--remote-env NAME`: never on a command line.
            env.update(self._remote().proxy_env())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        env["PATH"] = os.pathsep.join(p for p in (str(Path(self._binary()).parent), env.get("PATH")) if p)
        return env

    def _write_recording_codex(self) -> None:
        """.bin_dir's `codex`: `codex app-server ...` (any launch naming app-server) runs behind
        the recording proxy with the client's own arguments; codex's other subcommands
        (`--version`, `generate-json-schema`) run the real codex unrecorded. It carries the live
        scenario's environment itself, so a client that launches it with an environment of its
        own still records offline; SSH's `--remote-env` values it never holds (they come only
        through .env: a file is no place for them)."""
        from fake_server.paths import SOURCE_ROOT
        from harness.record.exec_script import ExecScript

        live = self._live_codex()
        wanted = live.env if live is not None else dict(os.environ)
        own = {"PATH", "PYTHONPATH"}
        script = ExecScript(
            command=self._proxy_argv(), when="app-server",
            otherwise=None if self.ssh is not None else [self._binary()],  # over SSH every launch records
            comment="the codex of a test recording its cassette: app-server runs behind the recording proxy",
            unset=tuple(sorted(k for k in os.environ if k not in wanted and k not in own and _SHELL_NAME.match(k))),
            setenv={k: v for k, v in wanted.items() if os.environ.get(k) != v and k not in own
                    and _SHELL_NAME.match(k)},
            prepend={"PYTHONPATH": SOURCE_ROOT, "PATH": str(Path(self._binary()).parent)})
        script.write(self.bin_dir / "codex")

    def connection_path(self, n: int) -> Path:
        """The cassette of this test's n-th connection (1-based): NAME.jsonl, then NAME.2.jsonl, ...

        A test that needs two codex processes (resuming a thread in a second one)
        records one cassette per connection, each replayed by its own fake."""
        return connection_path(self.cassette_path, n)

    async def handle(self) -> Any:
        """In-process: the fake's handle, or the real codex wrapped by the recorder.
        Each call is a new connection with its own cassette (see connection_path)."""
        path = self.connection_path(self.launches.take(pid=0))
        if not self.recording:
            assert self.fake is not None
            return self.fake.handle(path)
        from harness.record.handle import RecordingHandle

        live = self._live_codex()
        ssh_meta: dict[str, Any] = {}
        if self.ssh is not None:
            from harness.record.tee import default_placeholders
            from harness.record.process import DriverHandle

            remote = self._remote()
            proc = DriverHandle(await remote.open([remote.codex_bin, "app-server"]))
            placeholders = live.placeholders() if live is not None else default_placeholders(remote.placeholders())
            ssh_meta = remote.meta()
        elif live is not None:
            from harness.live.session import STREAM_LIMIT

            proc = await spawn_owned(live.argv, live.env, str(live.workdir), limit=STREAM_LIMIT,
                                     stderr=subprocess.DEVNULL)
            placeholders = live.placeholders()
        else:
            from harness.record.tee import default_placeholders

            proc = await spawn_owned([self._binary(), "app-server"])
            placeholders = default_placeholders()
        from harness.record.guard import ProviderGuard

        # Offline recording must never go on once codex falls back to a real provider.
        guard = ProviderGuard("mock") if live is not None else None
        recorder = RecordingHandle(proc, path, placeholders=placeholders,
                                   command=["codex", "app-server"], env=self.env, guard=guard,
                                   fresh=self.fresh, volatile=self.volatile)
        recorder.writer.meta.update({**self._recording_meta(), **ssh_meta})
        self._recorders.append((recorder, proc))
        return recorder

    # -- teardown ------------------------------------------------------------------

    def finish(self, grace: float = 5.0, failed: str | None = None) -> list[str]:
        """End recordings (close codex's stdin, let it exit) and write their cassettes.
        ``failed`` is why the test did not pass (harness.record.ending.failed_test_end):
        then every cassette it recorded says so and is ``complete: false``.
        Returns the problems found, for the fixture to fail the test with."""
        problems: list[str] = []
        if self._recorder is not None:
            problems += self._stop_socket_recorder()
        if self.recording and failed is None and not self._connected():
            problems.append(never_connected(self.cassette_path, self.transport))
        for recorder, proc in self._recorders:
            if hasattr(proc, "exit_value"):  # a harness.record.process.DriverHandle (codex over SSH)
                status, stopped, problem = end_remote(proc)
                problems += [problem] if problem else []
            else:
                status, stopped = end_process(recorder, proc, grace)
                problems += [f"{stopped}; {recorder.writer.path} is marked incomplete"] if stopped else []
            recorder.finish(exit=status, stopped=stopped)  # the recording's own end; a failed test's comes below
            if recorder.writer.failure is not None:
                problems.append(recorder.writer.failure_message())
        if self.recording:
            launches = self.launches.launches()
            problems += settle_proxies([launch for launch in launches if launch.pid])
            if failed:  # every door alike: the test's failure first, each cassette's own end kept
                problems += mark_failed(self._recorded(launches), failed)
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.fake is not None:
            self.fake.close()
            problems += [r.summary() for r in self.fake.untold_failures() if not self.fake._expected_failure]
        return problems

    def _recorded(self, launches: list[Launch]) -> list[Path]:
        """The cassettes this test recorded: one per launch or handle(), and on a socket one
        per session (NAME.jsonl, NAME.2.jsonl, ... as the recorder wrote them)."""
        paths = [self.connection_path(launch.number) for launch in launches]
        if self.transport != "stdio":
            n = 1
            while self.connection_path(n).is_file():
                paths.append(self.connection_path(n))
                n += 1
        return list(dict.fromkeys(paths))

    def _connected(self) -> bool:
        """Whether a client reached the recorder: a launch of the recording `codex` (or a
        handle()), or a session on the socket recorder."""
        return bool(self.launches.launches()) or connection_path(self.cassette_path, 1).is_file()

    def _stop_socket_recorder(self) -> list[str]:
        from harness.pytest.sockets import stop_socket_recorder

        recorder, self._recorder = self._recorder, None
        return stop_socket_recorder(recorder)
