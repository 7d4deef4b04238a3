"""Entry of the warm launcher: ``python -S -I _launch_main.py SOCKET SITE_DIRS args...``.

A script is compiled anew on every start, a module is not (__pycache__), so the
script is only this and the launcher proper (_launch.py) is imported.
"""
import sys

sys.path.insert(0, __file__.rpartition("/")[0])
import _launch  # noqa: E402

_launch.run()
