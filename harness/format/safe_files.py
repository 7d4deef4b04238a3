"""Opening and replacing the harness's own files without writing through a planted link.

Every file the harness creates or replaces (a cassette and its ``.partial``,
``.tmp`` and lock, a stderr copy, a report, a fault variant) is opened here. A
symbolic link committed to a cassette directory (``c.jsonl.partial -> ~/.bashrc``)
would otherwise turn the next recording into an overwrite of the file it points
at. So the last component of the path is never followed (``O_NOFOLLOW``), the
opened descriptor is checked (a regular file with one name, the very file now at
the path) before anything is truncated or written, and a replacement is refused
onto a link. Links in the parent directories are followed: those are where the
user chose to write. A link to a device or a pipe (``/dev/stderr``) is allowed:
writing to one overwrites no file.

Reading is not this module's concern: a cassette read through a link is fine.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from harness.errors import ERROR_CAP, HarnessError
from harness.safe_text import for_people

MODE = 0o600  # what the harness writes may hold a session's private data

PathLike = str | os.PathLike[str]


class UnsafePath(HarnessError, OSError):
    """A file the harness was about to write is a link (or has another name): refused.

    An OSError too, so that every writer's existing handling of a path it cannot
    write (a message naming the path, what was recorded kept) applies."""

    def __init__(self, path: PathLike, why: str) -> None:
        self.path = os.fspath(path)
        message = (f"refused to write {self.path}: {why}. The harness never writes through a link "
                   "it did not make (a link planted there would have that file overwritten); "
                   "remove it, or write to another path.")
        OSError.__init__(self, errno.ELOOP, message)
        self.strerror = message

    def __str__(self) -> str:  # the paragraph alone, without OSError's "[Errno 40]"
        return for_people(self.strerror, ERROR_CAP)


def _link_problem(path: PathLike) -> UnsafePath:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return UnsafePath(path, f"it is a symbolic link (to {target})")


def _target_is_stream(path: PathLike) -> bool:
    """A link to a device, pipe or socket (``/dev/stderr``): writing there replaces no file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _check_opened(fd: int, path: PathLike, *, followed: bool, still_there: bool) -> None:
    """The descriptor is a regular file of one name (with ``still_there``, still the one at
    the path); or a stream."""
    mine = os.fstat(fd)
    if not stat.S_ISREG(mine.st_mode):
        if followed or not stat.S_ISDIR(mine.st_mode):
            return  # a device or a pipe the user named: written as it is, never truncated
        raise UnsafePath(path, "it is a directory")
    if followed:
        raise _link_problem(path)  # the link was swapped for one to a file as we opened it
    if mine.st_nlink > 1:
        raise UnsafePath(path, f"it has {mine.st_nlink} names (a hard link to another file)")
    if not still_there:
        return
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        raise UnsafePath(path, "it was removed as it was opened") from None
    if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
        if stat.S_ISLNK(now.st_mode):
            raise _link_problem(path)
        raise UnsafePath(path, "another file took its place as it was opened")


def open_fd(path: PathLike, *, read: bool = False, append: bool = False,
            truncate: bool = False, create: bool = True, still_there: bool = True) -> int:
    """A descriptor of ``path`` for writing (and reading with ``read``), mode 0600
    whatever the umask, never through a link to a file; truncated only once checked.
    ``still_there=False``: the caller checks itself that the file is still at the path
    (a lock, whose holder may remove it as we open it, and then tries again)."""
    flags = (os.O_RDWR if read else os.O_WRONLY) | os.O_CLOEXEC | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | (os.O_CREAT if create else 0), MODE)
        followed = False
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        if not _target_is_stream(path):
            raise _link_problem(path) from None
        fd = os.open(path, flags)  # no O_CREAT: a dangling or swapped link creates nothing
        followed = True
    try:
        _check_opened(fd, path, followed=followed, still_there=still_there)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, MODE)
            if truncate:
                os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: PathLike, mode: str = "wb") -> BinaryIO:
    """``open_fd`` as a binary file object: ``"wb"`` truncates, ``"ab"`` appends."""
    append = "a" in mode
    return os.fdopen(open_fd(path, append=append, truncate=not append), mode)


def same_file(fd: int, path: PathLike) -> bool:
    """Whether ``fd`` is the file now at ``path`` itself (a link there is another file)."""
    try:
        at_path = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)


def refuse_link(path: PathLike) -> None:
    """Refuse up front a path to be replaced that is a link (said before any work starts)."""
    if os.path.islink(path):
        raise _link_problem(path)


def replace_atomically(tmp: PathLike, written: BinaryIO, dest: PathLike) -> None:
    """Move ``tmp`` (still open as ``written``, flushed) onto ``dest`` in one step.

    ``dest`` a link is refused: a rename would not write through it, but a cassette
    path that is a link was not meant to be replaced by a file. ``tmp`` must still be
    the file written (not a link swapped in since)."""
    refuse_link(dest)
    if not same_file(written.fileno(), tmp):
        raise UnsafePath(tmp, "another file took its place while it was written")
    os.replace(tmp, dest)


def write_atomically(path: PathLike, data: bytes) -> None:
    """A whole small file (a report) replaced in one step, through ``path``.tmp."""
    tmp = os.fspath(path) + ".tmp"
    try:
        with open_private(tmp) as out:
            out.write(data)
            out.flush()
            replace_atomically(tmp, out, path)
    except BaseException:
        unlink_ours(tmp)
        raise


def copy_atomically(src: PathLike, dest: PathLike) -> None:
    """``dest`` replaced by a copy of ``src`` in one step, through ``dest``.tmp."""
    tmp = os.fspath(dest) + ".tmp"
    try:
        with open(src, "rb") as source, open_private(tmp) as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            replace_atomically(tmp, out, dest)
    except BaseException:
        unlink_ours(tmp)
        raise


def unlink_ours(path: PathLike) -> None:
    """Remove a temporary file left by a failed write; a link found there is not ours
    to remove (it was refused, and is named in the error)."""
    try:
        if not os.path.islink(path):
            os.unlink(path)
    except FileNotFoundError:
        pass

