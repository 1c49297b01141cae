"""Reading the files a run names (`.lhp` and `.avsc`): regular files only, UTF-8 only.

A FIFO, a device or a socket is never opened for a blocking read (`lhpipe lint` on a FIFO
would wait for a writer forever): it is opened without blocking, looked at, and refused with
:class:`NotARegularFile`, which names it. Text that is not UTF-8 is refused with
:class:`NotUtf8Error`, which names the file and the line, column and byte offset of the first
byte that cannot be decoded. Both are the exceptions callers already expect (``OSError`` and
``UnicodeDecodeError``: the CLI's exit code 2).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


class NotARegularFile(OSError):
    """A path that is a FIFO, a socket, a device or a folder where a file's text is read."""

    def __init__(self, path: str | Path, mode: int | None = None) -> None:
        kind = next((name for test, name in _KINDS if mode is not None and test(mode)), None)
        reason = f"not a regular file ({kind})" if kind else "not a regular file"
        super().__init__(errno.EINVAL, reason, str(path))


class NotUtf8Error(UnicodeDecodeError):
    """A file whose bytes are not UTF-8 text; ``str()`` names the file and where."""

    def __init__(self, path: str | Path, error: UnicodeDecodeError) -> None:
        super().__init__(error.encoding, error.object, error.start, error.end, error.reason)
        data = bytes(error.object)
        line_start = data.rfind(b"\n", 0, error.start) + 1
        self.path = str(path)
        self.line = data.count(b"\n", 0, error.start) + 1
        # The bytes before it on its line are valid UTF-8: columns count characters.
        self.col = len(data[line_start : error.start].decode("utf-8", "replace")) + 1

    def __str__(self) -> str:
        byte = bytes(self.object)[self.start]
        return (
            f"{self.path}:{self.line}:{self.col}: byte 0x{byte:02x} at offset {self.start} "
            f"cannot be decoded ({self.reason})"
        )


def read_bytes(path: str | Path) -> bytes:
    """The bytes of the regular file at ``path``; :class:`NotARegularFile` for anything else
    (checked on the opened file, so a file swapped for a FIFO meanwhile is refused too)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(path, mode)
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(fd)


def read_text(path: str | Path) -> str:
    """The UTF-8 text of the regular file at ``path`` (:func:`read_bytes`); raises
    :class:`NotUtf8Error` for bytes that are not UTF-8."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8Error(path, exc) from None


def check_regular(path: Path) -> None:
    """Raise :class:`NotARegularFile` unless ``path`` is a regular file (or a link to one)."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise NotARegularFile(path, mode)
