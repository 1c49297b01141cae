"""The watch's start: a change saved as soon as the watch says it is armed is reloaded, and
changes saved between loading the program and the start of the watch are caught up."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

from lhpipe.engine.reload import Reloader, diff_programs, load_program
from lhpipe.engine.watch import changed_paths, snapshot, watch_and_reload, watch_roots

FIRST = 'pipeline first {\n  from topic "a"\n  to log\n}\n'
MORE = 'pipeline more {\n  from topic "m"\n  to log\n}\n'


class Target:
    """A reload target that only diffs (no engine)."""

    def __init__(self, folder: Path) -> None:
        first = load_program([str(folder)])
        self.compiled = first.compiled
        self.program = first.program
        self.settings = first.settings

    async def reload(self, compiled: Any, program: Any, settings: Any) -> Any:
        diff = diff_programs(self.compiled, compiled)
        self.compiled, self.program, self.settings = compiled, program, settings
        return diff


def folder_with(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


class Watching:
    """A watch of ``folder`` started as ``lhpipe run --watch`` starts it: :meth:`start`
    returns once it is armed; :meth:`stop` ends it."""

    def __init__(self, folder: Path, target: Target, baseline: Any = None) -> None:
        self.reloader = Reloader([str(folder)], target, stderr=io.StringIO())
        self._stop = asyncio.Event()
        self._baseline = baseline
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Reloader:
        armed = asyncio.Event()
        self._task = asyncio.create_task(
            watch_and_reload(self.reloader, self._stop, armed=armed, baseline=self._baseline)
        )
        await armed.wait()
        return self.reloader

    async def stop(self) -> None:
        assert self._task is not None
        self._stop.set()
        await asyncio.wait_for(self._task, 10)


async def wait_for_reload(reloader: Reloader) -> None:
    for _ in range(200):
        if reloader.last is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no reload happened")


def test_a_change_saved_right_after_the_watch_is_armed_is_reloaded(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})

    async def scenario() -> tuple[str, ...]:
        watching = Watching(folder, Target(folder))
        reloader = await watching.start()
        (folder / "more.lhp").write_text(MORE, encoding="utf-8")  # no pause before the save
        await wait_for_reload(reloader)
        await watching.stop()
        assert reloader.last is not None and reloader.last.diff is not None
        return reloader.last.diff.pipelines.added

    assert asyncio.run(scenario()) == ("more",)


def test_files_saved_during_start_up_are_reloaded_before_the_watch_is_armed(
    tmp_path: Path,
) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST, "gone.lhp": MORE.replace("more", "gone")})

    async def scenario() -> None:
        target = Target(folder)
        baseline = snapshot(watch_roots([str(folder)], target.program, target.settings))
        # Saved while the engine was starting, before any watch existed.
        (folder / "gone.lhp").unlink()
        (folder / "more.lhp").write_text(MORE, encoding="utf-8")
        watching = Watching(folder, target, baseline)
        reloader = await watching.start()
        outcome = reloader.last  # the catch-up ran before the watch said it was armed
        assert outcome is not None and outcome.diff is not None
        assert outcome.diff.pipelines.added == ("more",)
        assert outcome.diff.pipelines.removed == ("gone",)
        assert {Path(p).name for p in outcome.files} == {"gone.lhp", "more.lhp"}
        await watching.stop()

    asyncio.run(scenario())


def test_nothing_saved_during_start_up_means_no_reload(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})

    async def scenario() -> None:
        target = Target(folder)
        baseline = snapshot(watch_roots([str(folder)], target.program, target.settings))
        watching = Watching(folder, target, baseline)
        reloader = await watching.start()
        await asyncio.sleep(0.2)
        assert reloader.last is None
        await watching.stop()

    asyncio.run(scenario())


def test_armed_is_set_when_there_is_nothing_left_to_watch(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})

    async def scenario() -> None:
        target = Target(folder)
        reloader = Reloader([str(tmp_path / "gone" / "vanished.lhp")], target, stderr=io.StringIO())
        stop, armed = asyncio.Event(), asyncio.Event()
        await asyncio.wait_for(watch_and_reload(reloader, stop, armed=armed), 10)
        assert armed.is_set()

    asyncio.run(scenario())


def test_snapshot_lists_watched_files_and_changed_paths_compares_them(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path, **{"a.lhp": FIRST, "notes.md": "x", ".a.lhp.swp": "x", "lhpipe.toml": ""}
    )
    (folder / "schemas").mkdir()
    (folder / "schemas" / "s.avsc").write_text("{}", encoding="utf-8")
    before = snapshot([folder])
    assert sorted(Path(p).name for p in before) == ["a.lhp", "lhpipe.toml", "s.avsc"]
    assert changed_paths(before, dict(before)) == []
    (folder / "a.lhp").write_text(FIRST + "\n", encoding="utf-8")  # another size
    os.utime(folder / "lhpipe.toml", ns=(1, 1))  # another time, same size
    (folder / "schemas" / "s.avsc").unlink()
    (folder / "b.lhp").write_text(MORE, encoding="utf-8")
    changed = changed_paths(before, snapshot([folder]))
    assert [Path(p).name for p in changed] == ["a.lhp", "b.lhp", "lhpipe.toml", "s.avsc"]
