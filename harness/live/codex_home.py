"""A throwaway HOME and CODEX_HOME that make the real codex talk only to the
loopback mock model.

The config's keys come from docs/live.md and reference/codex-app-server.md.
Codex falls back silently to the real OpenAI provider on a config it cannot
use, so `check_mock_provider` must be applied to every thread/start result.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessError

DEFAULT_MODEL = "gpt-5.5"  # in codex's bundled catalogue: no "unknown model" warning per turn
MOCK_PROVIDER = "mock"

# The live root: /var/tmp/ + LIVE_PREFIX + 8 random characters = 41 characters, the length
# of the root the shipped cassettes were recorded under (their token counts depend on it).
# Not under /tmp: codex refuses to create its helper binaries (PATH aliases) in the temp
# dir, and TMPDIR is left unset because codex lists it among the sandbox's writable roots
# in what it tells the model.
LIVE_PARENT = "/var/tmp"
LIVE_PREFIX = "codex-cassette-live-rec-"
# What the live codex inherits from the caller's environment; nothing else is passed on
# (API keys, endpoint overrides and proxies included).
_INHERITED_ENV = ("PATH", "SYSTEMROOT", "COMSPEC", "PATHEXT")
# What codex reads from the environment, fixed: the user, the locale, the clock's zone
# (the date codex tells the model), the terminal (in its user agent), no proxy.
FIXED_ENV = {
    "USER": "codex",
    "LOGNAME": "codex",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "TERM": "dumb",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


# What codex 0.163.0 accepts in config.toml. "untrusted" is in its schema but
# the binary refuses to start with it ("no longer supported"), and an unknown
# value makes it drop the whole config -- mock provider included.
APPROVAL_POLICIES = ("on-request", "on-failure", "never")
SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")


class CodexHomeError(HarnessError):
    """A CODEX_HOME that codex would not use as asked."""


class ProviderCheckError(HarnessError):
    """codex did not pick the mock model provider, so it would try the real OpenAI API."""


@dataclass
class CodexHome:
    """A prepared home: `env` is the environment to launch codex with."""

    root: Path
    home: Path
    codex_home: Path
    config_path: Path
    env: dict[str, str]
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "CodexHome":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes for what we write.
    return json.dumps(value)


def render_config(
    base_url: str,
    *,
    model: str = DEFAULT_MODEL,
    approval_policy: str = "on-request",
    sandbox_mode: str = "read-only",
    stream_idle_timeout_ms: int = 60_000,
    extra_toml: str = "",
) -> str:
    """The config.toml text for an offline codex using the mock at `base_url`."""
    if approval_policy not in APPROVAL_POLICIES:
        raise CodexHomeError(
            f"approval_policy {approval_policy!r} is not one codex 0.163.0 runs with; use one of "
            f"{', '.join(APPROVAL_POLICIES)} (\"untrusted\" makes codex exit at startup, and an unknown "
            "value makes it ignore the whole config.toml, mock provider included)."
        )
    if sandbox_mode not in SANDBOX_MODES:
        raise CodexHomeError(
            f"sandbox_mode {sandbox_mode!r} is not one of {', '.join(SANDBOX_MODES)}; codex would ignore "
            "the whole config.toml, mock provider included."
        )
    if not base_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise CodexHomeError(
            f"The mock model URL {base_url!r} is not on loopback; the live kit only points codex at 127.0.0.1."
        )
    return f"""\
# Written by codex-cassette: codex talks only to the loopback mock model.
model = {_toml_str(model)}
model_provider = "{MOCK_PROVIDER}"
# No date or time zone in what codex tells the model: the zone's name comes from the machine
# (/etc/localtime, not TZ), and codex counts those bytes in its token estimates.
include_environment_context_time = false
approval_policy = {_toml_str(approval_policy)}
sandbox_mode = {_toml_str(sandbox_mode)}

[model_providers.{MOCK_PROVIDER}]
name = "Local mock"
base_url = {_toml_str(base_url)}
wire_api = "responses"
requires_openai_auth = false
supports_websockets = false
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {int(stream_idle_timeout_ms)}

[analytics]
enabled = false

[features]
# Without these codex fetches plugins from GitHub, and sources the user's shell rc files.
plugins = false
remote_plugin = false
apps = false
shell_snapshot = false
{extra_toml}"""


def make_codex_home(
    base_url: str,
    root: str | os.PathLike[str] | None = None,
    *,
    model: str = DEFAULT_MODEL,
    approval_policy: str = "on-request",
    sandbox_mode: str = "read-only",
    stream_idle_timeout_ms: int = 60_000,
    extra_toml: str = "",
    base_env: Mapping[str, str] | None = None,
) -> CodexHome:
    """Create `root/home` and `root/codex_home` with the offline config.

    `root` defaults to a new private directory of a fixed shape (`live_root`,
    removed by `cleanup()`), so what codex sees is the same on every machine.
    The environment is `live_env`: only PATH comes from `base_env` (default:
    os.environ); everything else codex reads is fixed.
    """
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if root is None:
        tmp = live_root()
        root_path = Path(tmp.name)
    else:
        root_path = Path(root)
        root_path.mkdir(parents=True, exist_ok=True)
        root_path = root_path.resolve()
    home = root_path / "home"
    codex_home = root_path / "codex_home"
    home.mkdir(exist_ok=True)
    codex_home.mkdir(exist_ok=True)
    config_path = codex_home / "config.toml"
    config_path.write_text(
        render_config(
            base_url,
            model=model,
            approval_policy=approval_policy,
            sandbox_mode=sandbox_mode,
            stream_idle_timeout_ms=stream_idle_timeout_ms,
            extra_toml=extra_toml,
        ),
        encoding="utf-8",
    )
    env = live_env(root_path, os.environ if base_env is None else base_env)
    return CodexHome(root_path, home, codex_home, config_path, env, tmp)


def live_root() -> tempfile.TemporaryDirectory[str]:
    """A new private (0700) directory whose absolute path has one length on every machine.

    Codex puts its cwd, CODEX_HOME and skill paths into the model request and counts
    their bytes when it estimates tokens (after a compaction), so a root of another
    length changes `totalTokens`. The parent is fixed (`LIVE_PARENT`), not $TMPDIR,
    whose value differs between machines; where it is not a plain writable directory
    (a symlink on macOS) the system temp dir is used and the length is not fixed.
    """
    parent = LIVE_PARENT
    if os.path.realpath(parent) != parent or not os.access(parent, os.W_OK):
        parent = tempfile.gettempdir()
    return tempfile.TemporaryDirectory(prefix=LIVE_PREFIX, dir=parent)


def live_env(root: Path, base_env: Mapping[str, str]) -> dict[str, str]:
    """The whole environment codex runs with: PATH from `base_env`, the rest fixed.

    Nothing else is inherited: a variable codex reads (TERM_PROGRAM goes into its
    user agent, TZ into the date it tells the model, TMPDIR into the sandbox's writable
    roots, API keys and proxies into where it connects) would make one machine's
    recording differ from another's.
    """
    env = {name: base_env[name] for name in _INHERITED_ENV if name in base_env}
    home = root / "home"
    env.update(FIXED_ENV)
    env.update(
        {
            "HOME": str(home),
            "CODEX_HOME": str(root / "codex_home"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
        }
    )
    return env


def check_mock_provider(thread_start_result: Mapping[str, Any]) -> None:
    """Raise unless codex's thread/start result says it uses the mock provider."""
    provider = thread_start_result.get("modelProvider") if isinstance(thread_start_result, Mapping) else None
    if provider != MOCK_PROVIDER:
        raise ProviderCheckError(
            f"codex started the thread with model provider {provider!r}, not {MOCK_PROVIDER!r}: it did not "
            "accept the generated config.toml and fell back to a real provider, which would try to reach "
            "the internet. Stop this codex, check CODEX_HOME/config.toml against docs/live.md and the "
            "codex version (config keys drift between versions), and do not send it a turn."
        )
