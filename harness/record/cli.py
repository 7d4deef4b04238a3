"""`codex-cassette record`: the recording proxy's command line (harness.record.proxy does the work)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError
from harness.format.connections import LaunchCounter, connection_path
from harness.format.placeholders import NAME
from harness.record.guard import ProviderGuard
from harness.record.tee import default_placeholders
from harness.format.minted import add_rerecord_flags
from harness.record.proxy import record_command
from harness.format.redact import Redactor, Rule, parse_rule_arg
from harness.format.rules import parse_env_name
from harness.record.child import signal_number

def _placeholder_arg(arg: str) -> tuple[str, str]:
    name, sep, value = arg.partition("=")
    if not sep or not NAME.match(name) or not value:
        raise UsageError(f"--placeholder {arg!r} must look like NAME=VALUE with NAME an identifier "
                         "(letters, digits, _) and a non-empty VALUE")
    return name, value


def cli_register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "record", help="run a command (codex app-server) behind a recording proxy",
        description="Launch this where a client would launch `codex app-server`: it runs the "
                    "command after `--`, forwards stdio unchanged both ways and writes a cassette.")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="cassette to write")
    p.add_argument("--connections", metavar="FILE", default=None,
                   help="a launch counter shared by the launches of one test (the pytest fixture's): "
                        "this launch takes the next number k and records connection k to PATH, "
                        "PATH's NAME.2.jsonl, NAME.3.jsonl, ...")
    p.add_argument("--placeholder", action="append", default=[], metavar="NAME=VALUE",
                   help="also replace VALUE by {{NAME}} in the cassette (repeatable)")
    p.add_argument("--stderr-file", metavar="F", help="also copy the server's stderr here (redacted)")
    p.add_argument("--require-model-provider", metavar="NAME", default=None,
                   help="stop at once if codex reports another model provider (e.g. mock: an offline "
                        "recording must never fall back to the real one)")
    add_rerecord_flags(p)
    p.add_argument("--meta", metavar="JSON", default=None,
                   help="a JSON object merged into the cassette header (e.g. the live scenario to "
                        "re-record from)")
    p.add_argument("--redact-regex", action="append", default=[], metavar="KIND=REGEX",
                   help="redact text matching REGEX as {{redacted:KIND}} (repeatable)")
    p.add_argument("--redact-path", action="append", default=[], metavar="KIND=JSONPATH",
                   help="redact the value at a path such as $.params.items[*].token (repeatable)")
    p.add_argument("--redact-env", action="append", default=[], metavar="NAME",
                   help="redact the value of this environment variable wherever it appears, as "
                        "{{redacted:env:NAME}}, whatever its length or name (repeatable); variables "
                        "named like secrets (*KEY*, *TOKEN*, *PASS*, ...) are redacted anyway")
    ssh = p.add_argument_group(
        "remote codex over SSH", "run the command after `--` on another host (docs/ssh.md); "
        "the proxy and the cassette stay here")
    ssh.add_argument("--ssh", metavar="USER@HOST[:PORT]", help="run the command on this host over SSH")
    ssh.add_argument("--identity", action="append", default=[], metavar="KEY",
                     help="private key file to log in with (repeatable; only these are offered). "
                          "Default: ~/.ssh/id_* and the ssh agent")
    ssh.add_argument("--known-hosts", metavar="FILE", help="known_hosts file (default ~/.ssh/known_hosts)")
    ssh.add_argument("--insecure-skip-host-key-check", action="store_true",
                     help="accept any host key (throwaway test hosts only: anyone on the network "
                          "could impersonate the host)")
    ssh.add_argument("--remote-cwd", metavar="DIR", help="working directory of the remote command")
    ssh.add_argument("--remote-env", action="append", default=[], metavar="NAME",
                     help="pass this environment variable, with its value here, to the remote command "
                          "(repeatable). NAME=VALUE is accepted for a value that is no secret: a command "
                          "line is visible to every user (ps)")
    ssh.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="longest wait for the SSH connection and login (default 10)")
    p.add_argument("--listen", metavar="URL", default=None,
                   help="record a codex that listens on a socket: listen here for clients (ws://IP:PORT, "
                        "port 0 picks one and prints codex's banner for it; unix://PATH) and record each "
                        "connection as its own cassette (X.jsonl, X.2.jsonl, ...); the command after `--` "
                        "must listen too, e.g. `codex app-server --listen ws://127.0.0.1:0`")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=_cli_record)


SSH_ONLY_FLAGS = ("identity", "known_hosts", "insecure_skip_host_key_check", "remote_cwd", "remote_env")


def _cli_record(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command to record: put it after `--`, as in "
                         "`codex-cassette record -o x.jsonl -- codex app-server`")
    rules: list[Rule] = [parse_rule_arg(a, path=False) for a in args.redact_regex]
    rules += [parse_rule_arg(a, path=True) for a in args.redact_path]
    env = dict(os.environ)
    extra = dict(_placeholder_arg(a) for a in args.placeholder)
    remote: Any = None
    if args.ssh:
        from harness.record.ssh_recording import SSHRecording  # asyncssh only when SSH is asked for

        remote = SSHRecording.from_args(args, env)
        extra = {**remote.placeholders(), **extra}
        for name, value in remote.env.items():
            env.setdefault(name, value)  # so secret-looking remote variables are redacted too
    else:
        given = [f"--{f.replace('_', '-')}" for f in SSH_ONLY_FLAGS if getattr(args, f)]
        if given:
            raise UsageError(f"{', '.join(given)} only make(s) sense with --ssh USER@HOST[:PORT]")
    placeholders = default_placeholders(extra, env)
    redactor = Redactor.default(rules, env=env, named_env=[parse_env_name(a) for a in args.redact_env])
    meta: dict[str, Any] = {}
    if args.meta is not None:
        try:
            meta = json.loads(args.meta)
        except ValueError as exc:
            raise UsageError(f"--meta must be a JSON object: {exc}") from None
        if not isinstance(meta, dict):
            raise UsageError("--meta must be a JSON object, such as '{\"note\": \"...\"}'")
    kwargs: dict[str, Any] = {"meta": meta, "fresh": args.fresh, "volatile": args.volatile}
    if args.require_model_provider:
        kwargs["guard"] = ProviderGuard(args.require_model_provider)
    listen = _socket_listen(args, command)
    if listen is not None:
        return _record_socket(args, command, listen, placeholders, redactor, env, kwargs)
    if remote is not None:
        kwargs.update(open_process=remote.open, meta={**meta, **remote.meta()})
    output = args.output
    if args.connections:
        output = connection_path(output, LaunchCounter(Path(args.connections)).take())
    result = asyncio.run(record_command(command, output, placeholders=placeholders,
                                        redactor=redactor, stderr_file=args.stderr_file, env=env,
                                        **kwargs))
    if result.write_error:
        print(f"codex-cassette: {result.write_error}", file=sys.stderr)
    if result.error:
        print(f"codex-cassette: {result.error} The partial cassette is kept in {result.cassette} "
              "(complete: false).", file=sys.stderr)
        if kwargs.get("guard") is not None and kwargs["guard"].violation:
            return 2
    return exit_like(result.status)


def _socket_listen(args: argparse.Namespace, command: list[str]) -> Any:
    """The socket clients connect to (--listen), or None for a stdio recording. A command that
    listens on a socket is no stdio server: it needs --listen."""
    from harness.record.listen import ListenAddress, listen_arg

    listen = ListenAddress.parse(args.listen) if args.listen else None
    upstream = listen_arg(command)
    if listen is None or not listen.is_socket:
        if upstream.is_socket:
            raise UsageError(f"the command listens on {upstream.url}, so its clients connect to a socket: give "
                             "--listen URL too (where the recorder listens for them), e.g. --listen ws://127.0.0.1:0")
        return None
    if args.ssh:
        raise UsageError("--listen and --ssh together are not supported: record a socket on this host")
    return listen


def _record_socket(args: argparse.Namespace, command: list[str], listen: Any, placeholders: Any,
                   redactor: Redactor, env: dict[str, str], kwargs: dict[str, Any]) -> int:
    from harness.record.ws_proxy import record_socket

    recorder = asyncio.run(record_socket(command, args.output, listen, placeholders=placeholders, redactor=redactor,
                                         env=env, stderr_file=args.stderr_file, **kwargs))
    if not recorder.written:
        print(f"codex-cassette: no client opened a WebSocket session, so nothing was recorded to {args.output}",
              file=sys.stderr)
    guard = kwargs.get("guard")
    if guard is not None and guard.violation:
        print(f"codex-cassette: {guard.violation}", file=sys.stderr)
        return 2
    return exit_like(recorder.status if recorder.status is not None else 1)


def exit_like(status: int | str) -> int:
    """Our exit code; a server killed by a signal makes us die by the same signal."""
    if isinstance(status, int):
        return status
    try:
        signum = signal_number(status)
    except HarnessError:
        return 255  # "connection lost" (ssh): what ssh(1) itself exits with
    sys.stdout.flush()
    sys.stderr.flush()
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
    if signum != signal.SIGSTOP:
        os.kill(os.getpid(), signum)
    return 128 + signum
