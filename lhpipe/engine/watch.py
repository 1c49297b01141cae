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
from collections.abc import Sequence
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


async def watch_and_reload(
    reloader: Reloader,
    stop: asyncio.Event,
    *,
    step_ms: int = STEP_MS,
    debounce_ms: int = DEBOUNCE_MS,
) -> None:
    """Reload on every batch of changes until ``stop`` is set (a reload under way finishes
    first)."""
    from watchfiles import awatch

    # watchfiles logs every batch at INFO; the reload's own line says what changed.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    while not stop.is_set():
        target = reloader.target
        roots = watch_roots(reloader.paths, target.program, target.settings)
        if not roots:
            log.error("hot reload: none of %s exists any more; not watching", reloader.paths)
            return
        log.info("hot reload: watching %s", ", ".join(str(root) for root in roots))
        try:
            async for changes in awatch(
                *roots,
                watch_filter=_watch_filter,
                debounce=debounce_ms,
                step=step_ms,
                stop_event=stop,
                recursive=True,
            ):
                outcome = await reloader.reload(sorted({path for _, path in changes}))
                if stop.is_set():
                    return
                if outcome.outcome == "ok" and roots != watch_roots(
                    reloader.paths, target.program, target.settings
                ):
                    break  # watch the new set of folders
        except Exception:  # a watched folder vanished, inotify ran out of watches...
            log.exception("hot reload: watching failed; watching again in %.0f s", RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
