"""What `record --ssh` and the plugin's ``ssh`` option say: an ``SSHRecording`` built from flags or configuration."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.errors import UsageError
from harness.format.redact import Redactor
from harness.format.rules import secrets_from_environ
from harness.record.process import PeerProcess
from harness.record.ssh_target import SSHTarget


# Variables the proxy's own process lives by: passed as NAME=VALUE (never secrets), since the
# proxy's environment must keep its own values of them.
PROXY_OWN_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH")


def remote_env_arg(arg: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """``--remote-env NAME`` (the value is this process's ``$NAME``) or ``NAME=VALUE`` for a
    value that is no secret: a command line is visible to every user of the machine (ps)."""
    name, sep, value = arg.partition("=")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"--remote-env {name!r} must be a shell variable name (letters, digits, _), "
                         "as in --remote-env OPENAI_API_KEY (the value is taken from this environment)")
    if not sep:
        if name not in environ:
            raise UsageError(f"--remote-env {name}: {name} is not set in the recorder's environment; "
                             f"export it (or pass --remote-env {name}=VALUE for a value that is no secret)")
        return name, environ[name]
    check_not_secret(name, value)
    return name, value


def check_not_secret(name: str, value: str) -> None:
    """Refuses a NAME=VALUE that looks secret (by name or by value), without saying the value."""
    if secrets_from_environ({name: value}) or Redactor().scrub_text(value) != value:
        raise UsageError(f"--remote-env {name}=... looks like a secret, and a command line is visible to "
                         f"every user of this machine (ps): export {name} and pass --remote-env {name}, "
                         "which takes the value from the recorder's environment")


SSH_CONFIG_KEYS = {"target", "identity", "known_hosts", "insecure_skip_host_key_check", "remote_cwd",
                   "remote_env", "codex_bin", "connect_timeout"}


@dataclass
class SSHRecording:
    """What `record --ssh` adds: where the command runs and how to reach it. Built from
    the flags, or from the pytest plugin's ``{"ssh": {...}}`` configuration."""

    spec: str                        # USER@HOST[:PORT]
    identity: list[str] = field(default_factory=list)
    known_hosts: str | None = None
    insecure: bool = False
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    connect_timeout: float = 10.0
    codex_bin: str | None = None     # the plugin's remote command; the CLI takes it after `--`

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str]) -> "SSHRecording":
        remote = cls(args.ssh, list(args.identity), args.known_hosts, args.insecure_skip_host_key_check,
                     dict(remote_env_arg(a, environ) for a in args.remote_env), args.remote_cwd,
                     args.connect_timeout)
        _ = remote.target  # a malformed USER@HOST fails here, before anything starts
        return remote

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SSHRecording":
        """``{"target": "user@host:port", "identity": [...], "known_hosts": ..., ...}``."""
        if not isinstance(config, Mapping) or not isinstance(config.get("target"), str):
            raise UsageError("the 'ssh' option must be a mapping with at least 'target': "
                             "\"USER@HOST[:PORT]\" (see docs/ssh.md)")
        unknown = set(config) - SSH_CONFIG_KEYS
        if unknown:
            raise UsageError(f"unknown key(s) {sorted(unknown)} in the 'ssh' option; known: {sorted(SSH_CONFIG_KEYS)}")
        identity = config.get("identity") or []
        env = config.get("remote_env") or {}
        if isinstance(env, (list, tuple)):  # names: the values are this process's
            env = dict(remote_env_arg(str(name), os.environ) for name in env)
        if not isinstance(env, Mapping):
            raise UsageError("the 'ssh' option's 'remote_env' must be a mapping of NAME: VALUE, or a list of "
                             "NAMEs whose values are taken from the environment")
        remote = cls(config["target"], [identity] if isinstance(identity, str) else [str(i) for i in identity],
                     config.get("known_hosts"), bool(config.get("insecure_skip_host_key_check")),
                     {str(k): str(v) for k, v in env.items()}, config.get("remote_cwd"),
                     float(config.get("connect_timeout", 10.0)), config.get("codex_bin"))
        for name in remote.env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise UsageError(f"the 'ssh' option's remote_env name {name!r} must be a shell variable "
                                 "name (letters, digits, _)")
        _ = remote.target  # a malformed USER@HOST fails here
        return remote

    @property
    def target(self) -> "SSHTarget":
        return SSHTarget.parse(self.spec, identity=list(self.identity), known_hosts=self.known_hosts,
                               insecure_no_host_key_check=self.insecure, connect_timeout=self.connect_timeout)

    def flags(self) -> list[str]:
        """The `record` flags that say the same. Environment variables go by name only: their
        values must be in the proxy's environment (``proxy_env``), never on its command line."""
        out = ["--ssh", self.spec]
        for key in self.identity:
            out += ["--identity", str(key)]
        if self.known_hosts:
            out += ["--known-hosts", str(self.known_hosts)]
        if self.insecure:
            out.append("--insecure-skip-host-key-check")
        if self.cwd:
            out += ["--remote-cwd", self.cwd]
        for name, value in self.env.items():
            out += ["--remote-env", f"{name}={value}" if name in PROXY_OWN_ENV else name]
        return out + ["--connect-timeout", f"{self.connect_timeout:g}"]

    def proxy_env(self) -> dict[str, str]:
        """What the proxy's environment must hold for ``flags()``' ``--remote-env NAME``."""
        return {k: v for k, v in self.env.items() if k not in PROXY_OWN_ENV}

    def placeholders(self) -> dict[str, str]:
        """The remote side's cwd, home and codex_home, which are what the server's messages
        carry; the local ones are kept for what the client sends."""
        values = {"cwd": self.cwd, "home": self.env.get("HOME"), "codex_home": self.env.get("CODEX_HOME")}
        return {k: v.rstrip("/") for k, v in values.items() if v and len(v.rstrip("/")) > 1}

    def meta(self) -> dict[str, Any]:
        # The target and the names of the variables sent: never key paths or values.
        return {"ssh": {"target": self.target.display, "host_key_checked": not self.insecure,
                        "remote_env": sorted(self.env)}}

    async def open(self, argv: list[str], env: Mapping[str, str] | None = None,
                   cwd: str | None = None) -> PeerProcess:
        """``open_process`` for record_command. The local environment and cwd stay
        here: the remote command gets only ``self.env`` and ``self.cwd``."""
        from harness.record.ssh import open_ssh_process  # asyncssh only once a connection is made

        return await open_ssh_process(self.target, list(argv), env=self.env, cwd=self.cwd)
