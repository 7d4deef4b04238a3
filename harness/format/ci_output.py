"""What the harness tells a CI runner (GitHub Actions): a workflow command that puts an
error on a cassette line of the pull request, and markdown appended to the job summary.

Both are plain text on a documented channel, so they live here, beside the safe writer the
summary goes through (``$GITHUB_STEP_SUMMARY`` is a file path the environment names: never
written through a planted link).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError
from harness.format.safe_files import open_private
from harness.safe_text import printable

TITLE_LIMIT = 200       # characters of an annotation's title
MESSAGE_LIMIT = 4000    # characters of an annotation's message (GitHub shows the start of a long one)


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    # The escapes GitHub's runner undoes in a command's message: %, then CR and LF.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # A property value also ends at `,` and the message starts after `::`.
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def relative_to_root(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """``path`` relative to the repository root (``$GITHUB_WORKSPACE``, else ``root``, else the
    working directory), as an annotation's ``file=`` needs; as given when it lies elsewhere."""
    base = Path(os.environ.get("GITHUB_WORKSPACE") or root or os.getcwd()).resolve()
    full = Path(path).resolve()
    try:
        return full.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def error_command(file: str, line: int | None, title: str, message: str) -> str:
    """One ``::error`` workflow command: the file and line it points at, a title, the message
    (escaped as the runner requires; control characters shown, not sent)."""
    props = [f"file={_escape_property(file)}"]
    if line is not None:
        props.append(f"line={int(line)}")
    props.append(f"title={_escape_property(printable(title, keep='')[:TITLE_LIMIT])}")
    body = printable(message, keep="\r\n")[:MESSAGE_LIMIT]
    return f"::error {','.join(props)}::{_escape_data(body)}"


def append_step_summary(markdown: str) -> bool:
    """Append ``markdown`` to the job summary when ``$GITHUB_STEP_SUMMARY`` names one; False when not."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    try:
        with open_private(target, "ab") as f:
            f.write((markdown.rstrip("\n") + "\n\n").encode("utf-8"))
    except HarnessError:
        raise
    except OSError as exc:
        raise HarnessError(f"cannot append to the job summary $GITHUB_STEP_SUMMARY ({target}): "
                           f"{exc.strerror or exc}") from None
    return True
