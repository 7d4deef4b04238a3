"""Starts the fake codex under `python -S`: skipping site (and the .pth files of
every installed package) saves a good part of the fake's start-up.

``python -S _boot.py SITE_DIRS fake-server-args...``: SITE_DIRS (os.pathsep-joined)
are the launching interpreter's site-packages, which -S would otherwise lose
(a venv's among them); this package's root goes first.
"""

import os
import sys

sys.path[0:1] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 *[p for p in sys.argv.pop(1).split(os.pathsep) if p]]

from fake_server.__main__ import main  # noqa: E402

sys.exit(main())
