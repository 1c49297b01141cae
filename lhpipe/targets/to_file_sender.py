"""``to file``: append one JSON line per record to a file.

Durability: :meth:`FileSender.send` returns only once the line is on disk (``fsync``), because
the engine commits a record's offset when its targets return. Writes to a file are serialised in
the process and each line is handed to the operating system in one ``write`` as soon as it is
encoded; the ``fsync`` that follows is shared: records written while one ``fsync`` runs wait for
the next, which covers them all (group commit). So the cost is one ``fsync`` per batch of
concurrent records, not per record, and nothing is acknowledged that a power cut could lose.

A write that fails part-way (a full disk) is cut back to the last whole line, so a retry never
leaves half a line behind. Paths are relative to the working directory; missing parent folders
are created. One lhpipe process should be the only writer of a file (two processes appending to
the same file keep whole lines, but the cut-back above assumes no other writer).

Errors: a full disk or an I/O error is transient (retried); a path that cannot be written at
all (permission denied, read-only file system, a folder in the way) pauses the pipeline until an
operator fixes it, since every record would fail the same way.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

from lhpipe.core.errors import DeliveryError, PausedError, TransientError
from lhpipe.core.jsonenc import dumps
from lhpipe.core.plans import FilePlan, Plan

# Needs an operator: the same failure would repeat for every record.
# EEXIST comes from creating a parent folder where a file is in the way.
_PAUSING_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
    }
)


def _file_error(path: str, action: str, exc: OSError) -> DeliveryError:
    code = "FILE_" + (errno.errorcode.get(exc.errno, "ERROR") if exc.errno else "ERROR")
    message = f"cannot {action} {path}: {exc.strerror or exc}"
    if exc.errno in _PAUSING_ERRNOS:
        return PausedError(message, code=code)
    return TransientError(message, code=code)


class _OpenFile:
    """One appended file: its descriptor, a write lock, and the group-commit bookkeeping."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.lock = asyncio.Lock()
        self.written = 0  # lines handed to the OS
        self.synced = 0  # lines known to be on disk
        self.syncing: asyncio.Future[None] | None = None

    async def append(self, line: bytes) -> int:
        """Write ``line`` whole (or not at all); return its sequence number."""
        async with self.lock:
            start = os.fstat(self.fd).st_size
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError as exc:
                os.ftruncate(self.fd, start)
                raise _file_error(self.path, "write to", exc) from exc
            self.written += 1
            return self.written

    async def sync_through(self, sequence: int) -> None:
        """Return once line ``sequence`` is on disk, sharing ``fsync`` calls with others."""
        while self.synced < sequence:
            if self.syncing is None:
                self.syncing = asyncio.ensure_future(self._sync(covers=self.written))
            try:
                # Shielded: a cancelled waiter must not abandon an fsync others wait for. An
                # fsync that began before this line was written does not cover it; the loop
                # then starts the next one.
                await asyncio.shield(self.syncing)
            except OSError as exc:
                raise _file_error(self.path, "sync", exc) from exc

    async def _sync(self, *, covers: int) -> None:
        try:
            await asyncio.to_thread(os.fsync, self.fd)
            self.synced = max(self.synced, covers)
        finally:
            self.syncing = None


class FileSender:
    """Appends :class:`~lhpipe.core.plans.FilePlan` lines; one instance per process, one
    open descriptor per path."""

    def __init__(self) -> None:
        self._files: dict[str, _OpenFile] = {}
        self._closed = False

    async def send(self, plan: Plan) -> None:
        """Append the plan's line and return once it is on disk."""
        if not isinstance(plan, FilePlan):
            raise TypeError(f"the file sender cannot send a {type(plan).__name__}")
        line = dumps(plan.line) + b"\n"
        file = self._open(plan.path)
        sequence = await file.append(line)
        await file.sync_through(sequence)

    def _open(self, path: str) -> _OpenFile:
        file = self._files.get(path)
        if file is None:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _file_error(path, "open", exc) from exc
            file = self._files[path] = _OpenFile(path, fd)
        return file

    async def close(self) -> None:
        """Sync and close every file."""
        self._closed = True
        files, self._files = self._files, {}
        for file in files.values():
            async with file.lock:
                try:
                    await asyncio.to_thread(os.fsync, file.fd)
                finally:
                    os.close(file.fd)

    def connected(self) -> bool:
        """True until closed: a file that cannot be written shows as a paused pipeline."""
        return not self._closed
