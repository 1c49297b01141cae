"""``lhpipe run --watch``: file changes that trigger a hot reload, with watchfiles.

Watched: every folder given on the command line (recursively) and the folder of every file
given, the folder of the ``lhpipe.toml`` in use, and the folder of every ``.avsc`` file a schema
reads. Only changes to ``*.lhp``, ``*.avsc`` and ``lhpipe.toml`` count (editor swap and backup
files do not), including files added or deleted after the start.

Debounced: changes are collected until :data:`STEP_MS` pass with no new one (at most
:data:`DEBOUNCE_MS` after the first), then one reload runs. Changes saved while a reload runs
are collected meanwhile and make the next one, so reloads never overlap and bursts coalesce.
A changed file that is empty or missing is given up to :data:`SETTLE_SECONDS` to be written
first: a save that truncates the file and then writes it (``Path.write_text``, many editors), or
that deletes it and writes it again, can fall into two batches, and an empty ``.lhp`` file or
``lhpipe.toml`` is a valid program whose reload would stop what the file declares.
After every reload the folders are worked out again: a schema may now read an ``.avsc`` file
elsewhere, and a rejected save may name one that is not written yet (its folder is watched so
that writing it is noticed). The next watch starts from the files as they were before that
reload read them, and counts the files of newly watched folders as changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lhpipe.settings import SETTINGS_FILE

if TYPE_CHECKING:
    from watchfiles import Change

    from lhpipe.check.program import Program
    from lhpipe.engine.reload import Reloader
    from lhpipe.settings import Settings

log = logging.getLogger(__name__)

#: A batch of changes is handed over once this long passed without another change.
STEP_MS = 30
#: ... or at the latest this long after its first change.
DEBOUNCE_MS = 500
WATCHED_SUFFIXES = (".lhp", ".avsc")
RETRY_SECONDS = 1.0
#: How long a changed file that is empty or missing may take to be written before the reload.
SETTLE_SECONDS = 0.5
SETTLE_POLL_SECONDS = 0.01


def is_watched(path: str) -> bool:
    """A path whose change triggers a reload: ``*.lhp``, ``*.avsc``, ``lhpipe.toml``."""
    name = Path(path).name
    return name == SETTINGS_FILE or (name.endswith(WATCHED_SUFFIXES) and not name.startswith("."))


def _watch_filter(change: Change, path: str) -> bool:
    return is_watched(path)


def watch_roots(
    paths: Sequence[str], program: Program, settings: Settings, extra: Sequence[Path] = ()
) -> list[Path]:
    """The folders to watch for ``paths`` (see the module docstring), existing ones only,
    without folders inside another one of the list. ``extra`` files' folders are watched too
    (the ``.avsc`` files a rejected save named)."""
    folders = _path_folders(paths)
    folders.extend(path.parent for path in extra)
    if settings.file is not None:
        folders.append(settings.file.parent)
    for schema in program.schemas.values():
        if schema.file is not None:
            folders.append(schema.file.parent)
    return _outermost(folders)


def path_roots(paths: Sequence[str]) -> list[Path]:
    """The folders of ``paths`` alone (what can be watched before the program is read)."""
    return _outermost(_path_folders(paths))


def _path_folders(paths: Sequence[str]) -> list[Path]:
    return [path if path.is_dir() else path.parent for path in map(Path, paths)]


def _outermost(folders: Sequence[Path]) -> list[Path]:
    resolved = sorted({folder.resolve() for folder in folders if folder.is_dir()})
    return [f for f in resolved if not any(o != f and f.is_relative_to(o) for o in resolved)]


#: A file's identity for :func:`snapshot`: its modification time (ns) and size.
Stamp = tuple[int, int]
#: Told each batch's changed paths once it is dealt with, and whether it made a reload.
BatchHook = Callable[[list[str], bool], None]


def snapshot(roots: Sequence[Path]) -> dict[str, Stamp]:
    """Every watched file under ``roots`` (see :func:`is_watched`) with its stamp; a file that
    vanishes while being listed is left out."""
    files: dict[str, Stamp] = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if not is_watched(path):
                    continue
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                files[path] = (stat.st_mtime_ns, stat.st_size)
    return files


def start_snapshot(
    paths: Sequence[str], program: Program, settings: Settings, early: Mapping[str, Stamp]
) -> dict[str, Stamp]:
    """The baseline of a run's first watch: ``early`` (the files under the folders of
    ``paths``, listed before the program was read) and, listed now, the files of the other
    folders the program names (a schema's ``.avsc`` elsewhere, the ``lhpipe.toml`` in use)."""
    given = path_roots(paths)
    later = snapshot(watch_roots(paths, program, settings))
    files = {path: stamp for path, stamp in later.items() if not _under(path, given)}
    files.update(early)
    return files


def _under(path: str, roots: Sequence[Path]) -> bool:
    return any(Path(path).is_relative_to(root) for root in roots)


def changed_paths(before: Mapping[str, Stamp], after: Mapping[str, Stamp]) -> list[str]:
    """The paths added, removed or modified between two snapshots, sorted."""
    paths = before.keys() | after.keys()
    return sorted(path for path in paths if before.get(path) != after.get(path))


def _unwritten(path: str) -> bool:
    """Empty or missing: possibly a save caught between its truncation and its write."""
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return True


async def settle(paths: Sequence[str]) -> None:
    """Wait while one of ``paths`` is empty or missing, at most :data:`SETTLE_SECONDS` (a file
    deleted or emptied on purpose is reloaded as it is, that much later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    while any(_unwritten(path) for path in paths) and loop.time() < deadline:
        await asyncio.sleep(SETTLE_POLL_SECONDS)


async def watch_and_reload(
    reloader: Reloader,
    stop: asyncio.Event,
    *,
    armed: asyncio.Event | None = None,
    baseline: Mapping[str, Stamp] | None = None,
    step_ms: int = STEP_MS,
    debounce_ms: int = DEBOUNCE_MS,
    on_batch: BatchHook | None = None,
) -> None:
    """Reload on every batch of changes until ``stop`` is set (a reload under way finishes
    first).

    ``armed`` is set once the files are watched, so that a change saved from then on is never
    missed (``lhpipe run`` answers ``/readyz`` 200 only after it). ``baseline`` is a
    :func:`snapshot` taken before the running program was read: the files saved between then
    and the watch's start (start-up can take seconds) are reloaded before ``armed`` is set.
    Every later start of a watch (the folders changed, or watching failed and is tried again)
    catches up the same way, from a snapshot taken before the previous watch ended.
    ``on_batch`` hears of every batch dealt with (tests wait for it, not for time to pass).
    """
    # watchfiles logs every batch at INFO; the reload's own line says what changed.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    try:
        while not stop.is_set():
            roots = reloader_roots(reloader)
            if not roots:
                log.error("hot reload: none of %s exists any more; not watching", reloader.paths)
                return
            if baseline is None:
                baseline = await asyncio.to_thread(snapshot, roots)
            log.info("hot reload: watching %s", ", ".join(str(root) for root in roots))
            watch = _Watch(reloader, stop, roots, step_ms, debounce_ms, on_batch)
            try:
                await watch.run(baseline, armed)
                # Caught up. A watch that ended because the folders changed hands over the files
                # as they were before its last reload read them; else the next watch starts
                # from the files as they are.
                baseline = watch.next_baseline
            except Exception:  # a watched folder vanished, inotify ran out of watches...
                log.exception(
                    "hot reload: watching failed; watching again in %.0f s", RETRY_SECONDS
                )
                if watch.caught_up:  # what is saved from now on is caught up by the next watch
                    baseline = await asyncio.to_thread(snapshot, roots)
                if armed is not None:
                    armed.set()  # start-up does not wait for a watch that keeps failing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
    finally:
        if armed is not None:
            armed.set()  # whoever waits for it must not wait for a watcher that ended


class _Watch:
    """One watch of ``roots``: reloads on its batches of changes until ``stop`` is set or the
    folders to watch changed. Its notifier has its own stop event, so that ending a watch
    (which ends watchfiles' worker thread) never stops the process."""

    def __init__(
        self,
        reloader: Reloader,
        stop: asyncio.Event,
        roots: list[Path],
        step_ms: int,
        debounce_ms: int,
        on_batch: BatchHook | None = None,
    ) -> None:
        self.reloader = reloader
        self.stop = stop
        self.roots = roots
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.on_batch = on_batch or (lambda changed, reloaded: None)
        self.caught_up = False
        #: Set when the watch ended because the folders to watch changed (see
        #: :meth:`_folders_changed`): the baseline of the next watch.
        self.next_baseline: dict[str, Stamp] | None = None

    async def run(self, baseline: Mapping[str, Stamp], armed: asyncio.Event | None) -> None:
        from watchfiles import awatch

        ended = asyncio.Event()
        batches = awatch(
            *self.roots,
            watch_filter=_watch_filter,
            debounce=self.debounce_ms,
            step=self.step_ms,
            stop_event=ended,
            recursive=True,
        )
        follow = asyncio.create_task(self._end_with_stop(ended))
        upcoming: asyncio.Future[set[tuple[Change, str]]] = asyncio.ensure_future(anext(batches))
        try:
            # One turn of the loop runs the generator up to its first wait, past the creation
            # of its notifier, which buffers every change from then on: the files are watched.
            await asyncio.sleep(0)
            if upcoming.done():  # the notifier could not be made: raise what stopped it
                with contextlib.suppress(StopAsyncIteration):
                    upcoming.result()
                return
            # ``read``: the files as they were when the running program was read (listed just
            # before each reload reads them).
            read = await asyncio.to_thread(snapshot, self.roots)
            missed = changed_paths(baseline, read)
            if missed:
                log.info("hot reload: %d file(s) changed before the watch began", len(missed))
                await settle(missed)
                read = await asyncio.to_thread(snapshot, self.roots)
                await self.reloader.reload(missed)
            self.caught_up = True
            if armed is not None:
                armed.set()
            if missed and self._folders_changed(read):
                return  # the catch-up needs other folders watched
            while not self.stop.is_set():
                try:
                    changes = await upcoming
                except StopAsyncIteration:
                    return
                changed = sorted({path for _, path in changes})
                await settle(changed)
                before = await asyncio.to_thread(snapshot, self.roots)
                if not changed_paths(read, before):
                    # The rest of a save the last reload already read (its write, after the
                    # truncation that triggered it): no second reload, no second report.
                    log.debug("hot reload: %s as already read; nothing to do", changed)
                    self.on_batch(changed, False)
                    upcoming = asyncio.ensure_future(anext(batches))
                    continue
                read = before
                await self.reloader.reload(changed)
                self.on_batch(changed, True)
                if self._folders_changed(before):
                    return  # watch the new set of folders
                upcoming = asyncio.ensure_future(anext(batches))
        finally:
            # Never cancelled: watchfiles would set its stop event, and its thread notices the
            # event within one step anyway.
            ended.set()
            follow.cancel()
            await asyncio.wait([upcoming])
            if not upcoming.cancelled():
                upcoming.exception()  # retrieved (the batch or the error no longer matters)
            await batches.aclose()

    async def _end_with_stop(self, ended: asyncio.Event) -> None:
        await self.stop.wait()
        ended.set()

    def _folders_changed(self, before: Mapping[str, Stamp]) -> bool:
        """Whether the last reload changed the folders to watch; if so, sets
        :attr:`next_baseline` to ``before`` (this watch's files, listed before that reload read
        them) within the new folders. The files of newly watched folders are not in it: the
        next watch counts them as changed and reloads once more, so that nothing saved there
        while this reload ran is missed."""
        roots = reloader_roots(self.reloader)
        if roots == self.roots:
            return False
        self.next_baseline = {path: stamp for path, stamp in before.items() if _under(path, roots)}
        return True


def reloader_roots(reloader: Reloader) -> list[Path]:
    """The folders to watch for ``reloader``'s running program and its last rejected save."""
    target = reloader.target
    return watch_roots(
        reloader.paths, target.program, target.settings, reloader.rejected_schema_files
    )
