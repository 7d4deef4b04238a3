"""What a replay is asked to do: ``ReplayOptions`` and this machine's marker fallbacks."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from harness.format.placeholders import HOST
from harness.replay.matching import DEFAULT_ORDER, MatcherRegistry


# What the live server chooses afresh each run; learned, not compared, when
# the engine plays the client against a real codex.
SERVER_CHOSEN = ["**.threadId", "**.thread.id", "**.turnId", "**.turn.id", "**.conversationId"]


@dataclass
class ReplayOptions:
    role: str = "server"
    timeout: float = 10.0        # longest wait for one expected peer message
    linger: float = 60.0         # after the last event: how long to wait for the peer to hang up
    pace: str = "instant"        # or "recorded"
    pace_scale: float = 1.0
    strict: bool = True          # unplayed events fail the replay
    bindings: dict[str, str] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)
    learn: list[str] = field(default_factory=list)
    # For re-recording against a live codex that may have changed (harness.drift.rerecord):
    floating: list[str] = field(default_factory=list)  # peer notification methods matched wherever they arrive
    tolerant: bool = False       # note surprises and missing messages (report.notes) and play on
    startup_timeout: float = 0.0  # the first peer message may take this long (a codex starting up)
    match_on: tuple[str, ...] = DEFAULT_ORDER  # matchers deciding whether a peer message is the recorded one
    matchers: MatcherRegistry = field(default_factory=MatcherRegistry)  # where match_on's names are found
    scrub: Callable[[Any], Any] | None = None
    # Where the values of the variables a cassette's redaction rules name come from
    # (None: this process's environment, which a fake shares with the client that launched it).
    env: Mapping[str, str] | None = None
    # Values for markers the played side must say before the peer revealed them
    # (codexHome in the initialize answer, serverName): this machine's, as codex would say.
    fallbacks: dict[str, str] = field(default_factory=lambda: environment_fallbacks())

    @property
    def peer(self) -> str:
        return "client" if self.role == "server" else "server"


def environment_fallbacks() -> dict[str, str]:
    home = os.environ.get("HOME", os.path.expanduser("~"))
    return {"cwd": os.getcwd(), "home": home,
            "codex_home": os.environ.get("CODEX_HOME", os.path.join(home, ".codex")),
            HOST: socket.gethostname()}
