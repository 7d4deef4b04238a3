"""What a launcher and the fork server say: the request's fields and the passed fds."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass


def pack_fds(fds: list[int]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)


def fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
    return fds


@dataclass
class LaunchRequest:
    pid: int
    cwd: str
    argv: list[str]
    env: dict[str, str]

    @classmethod
    def parse(cls, body: bytes) -> "LaunchRequest":
        """The launcher's NUL-separated fields: version, pid, cwd, argc, argv..., KEY=VALUE..."""
        fields = body.split(b"\0")
        if len(fields) < 4 or fields[0] != b"1":
            raise ValueError("not a launcher request")
        argc = int(fields[3])
        argv = [os.fsdecode(a) for a in fields[4:4 + argc]]
        env = {}
        for item in fields[4 + argc:]:
            key, sep, value = item.partition(b"=")
            if sep:
                env[os.fsdecode(key)] = os.fsdecode(value)
        return cls(int(fields[1]), os.fsdecode(fields[2]), argv, env)
