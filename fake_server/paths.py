"""Where the fake's files are, for the side that launches it and the side that serves it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# The directory that holds the fake_server and harness packages, so a launched
# fake finds them even when they are not installed (a source checkout).
SOURCE_ROOT = str(_HERE.parent)
BOOT = str(_HERE / "_boot.py")                 # the cold fake's entry (python -S)
LAUNCH = str(_HERE / "_launch.py")             # the warm launcher (built-in modules only)
LAUNCH_MAIN = str(_HERE / "_launch_main.py")   # what a client spawns to run it
# Where this interpreter finds installed packages; the fake runs with -S and is told.
SITE_DIRS = os.pathsep.join(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
SWITCH = "CODEX_CASSETTE_FORKSERVER"           # =0: no fork server, every fake starts cold
SOCKET_NAME = "s"
READY_SUFFIX = ".ready"  # beside the socket once the server has imported and warmed up
MARKER = "codex-cassette"  # in the `codex` shim a bin dir holds, so a fake is told from the real one
