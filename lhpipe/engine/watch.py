"""``lhpipe run --watch``: file changes that trigger a hot reload, with watchfiles.

Watched: every folder given on the command line (recursively) and the folder of every file
given, the folder of the ``lhpipe.toml`` in use, and the folder of every ``.avsc`` file a schema
reads. Only changes to ``*.lhp``, ``*.avsc`` and ``lhpipe.toml`` count (editor swap and backup
files do not), including files added or deleted after the start.

Debounced: changes are collected until :data:`STEP_MS` pass with no new one (at most
:data:`DEBOUNCE_MS` after the first), then one reload runs. Changes saved while a reload runs
are collected meanwhile and make the next one, so reloads never overlap and bursts coalesce.
After a successful reload the folders are worked out again (a schema may now read an ``.avsc``
file elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
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


def is_watched(path: str) -> bool:
    """A path whose change triggers a reload: ``*.lhp``, ``*.avsc``, ``lhpipe.toml``."""
    name = Path(path).name
    return name == SETTINGS_FILE or (name.endswith(WATCHED_SUFFIXES) and not name.startswith("."))


def _watch_filter(change: Change, path: str) -> bool:
    return is_watched(path)


def watch_roots(paths: Sequence[str], program: Program, settings: Settings) -> list[Path]:
    """The folders to watch for ``paths`` (see the module docstring), existing ones only,
    without folders inside another one of the list."""
    folders = []
    for text in paths:
        path = Path(text)
        folders.append(path if path.is_dir() else path.parent)
    if settings.file is not None:
        folders.append(settings.file.parent)
    for schema in program.schemas.values():
        if schema.file is not None:
            folders.append(schema.file.parent)
    resolved = sorted({folder.resolve() for folder in folders if folder.is_dir()})
    return [f for f in resolved if not any(o != f and f.is_relative_to(o) for o in resolved)]


#: A file's identity for :func:`snapshot`: its modification time (ns) and size.
Stamp = tuple[int, int]


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


def changed_paths(before: Mapping[str, Stamp], after: Mapping[str, Stamp]) -> list[str]:
    """The paths added, removed or modified between two snapshots, sorted."""
    paths = before.keys() | after.keys()
    return sorted(path for path in paths if before.get(path) != after.get(path))


async def watch_and_reload(
    reloader: Reloader,
    stop: asyncio.Event,
    *,
    armed: asyncio.Event | None = None,
    baseline: Mapping[str, Stamp] | None = None,
    step_ms: int = STEP_MS,
    debounce_ms: int = DEBOUNCE_MS,
) -> None:
    """Reload on every batch of changes until ``stop`` is set (a reload under way finishes
    first).

    ``armed`` is set once the files are watched, so that a change saved from then on is never
    missed (``lhpipe run`` answers ``/readyz`` 200 only after it). ``baseline`` is a
    :func:`snapshot` taken when the running program was loaded: the files saved between then
    and the watch's start (start-up can take seconds) are reloaded before ``armed`` is set.
    """
    from watchfiles import awatch

    # watchfiles logs every batch at INFO; the reload's own line says what changed.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    try:
        while not stop.is_set():
            target = reloader.target
            roots = watch_roots(reloader.paths, target.program, target.settings)
            if not roots:
                log.error("hot reload: none of %s exists any more; not watching", reloader.paths)
                return
            log.info("hot reload: watching %s", ", ".join(str(root) for root in roots))
            batches = awatch(
                *roots,
                watch_filter=_watch_filter,
                debounce=debounce_ms,
                step=step_ms,
                stop_event=stop,
                recursive=True,
            )
            try:
                await _watch(reloader, stop, batches, roots, armed, baseline)
            except Exception:  # a watched folder vanished, inotify ran out of watches...
                log.exception(
                    "hot reload: watching failed; watching again in %.0f s", RETRY_SECONDS
                )
                if armed is not None:
                    armed.set()  # start-up does not wait for a watch that keeps failing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
            finally:
                await batches.aclose()
            baseline = None  # caught up once, at the first start
    finally:
        if armed is not None:
            armed.set()  # whoever waits for it must not wait for a watcher that ended


async def _watch(
    reloader: Reloader,
    stop: asyncio.Event,
    batches: AsyncGenerator[set[tuple[Change, str]], None],
    roots: list[Path],
    armed: asyncio.Event | None,
    baseline: Mapping[str, Stamp] | None,
) -> None:
    """Reload on ``batches`` until ``stop`` is set or the folders to watch changed."""
    upcoming: asyncio.Future[set[tuple[Change, str]]] = asyncio.ensure_future(anext(batches))
    try:
        # One turn of the loop runs the generator up to its first wait, past the creation of its
        # notifier, which buffers every change from then on: the files are watched now.
        await asyncio.sleep(0)
        if baseline is not None:
            missed = changed_paths(baseline, await asyncio.to_thread(snapshot, roots))
            if missed:
                log.info("hot reload: %d file(s) changed during start-up", len(missed))
                await reloader.reload(missed)
        if armed is not None:
            armed.set()
        while True:
            try:
                changes = await upcoming
            except StopAsyncIteration:
                return
            outcome = await reloader.reload(sorted({path for _, path in changes}))
            target = reloader.target
            if stop.is_set():
                return
            if outcome.outcome == "ok" and roots != watch_roots(
                reloader.paths, target.program, target.settings
            ):
                return  # watch the new set of folders
            upcoming = asyncio.ensure_future(anext(batches))
    finally:
        if not upcoming.done():
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await upcoming
