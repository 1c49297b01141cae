"""The watch's start: a change saved as soon as the watch says it is armed is reloaded, and
changes saved between loading the program and the start of the watch are caught up."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

import pytest
import watchfiles.main
from waiting import until

from lhpipe.engine import watch as watch_module
from lhpipe.engine.reload import Reloader, ReloadOutcome, diff_programs, load_program
from lhpipe.engine.watch import (
    changed_paths,
    path_roots,
    snapshot,
    start_snapshot,
    watch_and_reload,
    watch_roots,
)

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
    returns once it is armed; :meth:`stop` ends it. ``batches``: the names of each batch's
    changed files once dealt with, and whether it made a reload."""

    def __init__(self, folder: Path, target: Target, baseline: Any = None) -> None:
        self.reloader = Reloader([str(folder)], target, stderr=io.StringIO())
        self.batches: list[tuple[list[str], bool]] = []
        self._stop = asyncio.Event()
        self._baseline = baseline
        self._task: asyncio.Task[None] | None = None

    def _dealt_with(self, changed: list[str], reloaded: bool) -> None:
        self.batches.append(([Path(p).name for p in changed], reloaded))

    async def start(self) -> Reloader:
        armed = asyncio.Event()
        self._task = asyncio.create_task(
            watch_and_reload(
                self.reloader,
                self._stop,
                armed=armed,
                baseline=self._baseline,
                on_batch=self._dealt_with,
            )
        )
        await armed.wait()
        return self.reloader

    async def stop(self) -> None:
        assert self._task is not None
        self._stop.set()
        await asyncio.wait_for(self._task, 10)


async def wait_for_reload(
    reloader: Reloader, outcome: str | None = None, after: ReloadOutcome | None = None
) -> ReloadOutcome:
    """The first reload other than ``after`` that ended as ``outcome`` (any, when None)."""
    for _ in range(200):
        last = reloader.last
        if last is not None and last is not after and outcome in (None, last.outcome):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"no reload ended {outcome or 'at all'}")


class CountedNotifier:
    """watchfiles' notifier, counting how many were made; the first ``failures`` fail."""

    def __init__(self, failures: int = 0) -> None:
        self.made = 0
        self.failures = failures
        self.real = watchfiles.main.RustNotify

    def __call__(self, *args: Any) -> Any:
        self.made += 1
        if self.made <= self.failures:
            raise OSError("inotify watch limit reached")
        return self.real(*args)


def test_a_change_saved_right_after_the_watch_is_armed_is_reloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})
    notifiers = CountedNotifier()
    monkeypatch.setattr(watchfiles.main, "RustNotify", notifiers)

    async def scenario() -> tuple[str, ...]:
        watching = Watching(folder, Target(folder))
        reloader = await watching.start()
        assert notifiers.made == 1  # armed means the notifier exists and buffers changes
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
        target = RecordingTarget(folder)
        baseline = snapshot(watch_roots([str(folder)], target.program, target.settings))
        watching = Watching(folder, target, baseline)
        reloader = await watching.start()
        assert reloader.last is None  # no catch-up before the watch was armed
        # Nor after: the first reload there is, is the one of a later save.
        (folder / "more.lhp").write_text(MORE, encoding="utf-8")
        await wait_for_reload(reloader)
        await watching.stop()
        assert [d.pipelines.added for d in target.diffs] == [("more",)]
        assert watching.batches == [(["more.lhp"], True)]

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


def test_a_watch_that_cannot_start_is_tried_again_and_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})
    notifiers = CountedNotifier(failures=1)
    monkeypatch.setattr(watchfiles.main, "RustNotify", notifiers)
    monkeypatch.setattr(watch_module, "RETRY_SECONDS", 0.2)

    async def scenario() -> None:
        target = Target(folder)
        baseline = snapshot(watch_roots([str(folder)], target.program, target.settings))
        watching = Watching(folder, target, baseline)
        reloader = await watching.start()  # armed even so: start-up does not wait for ever
        (folder / "more.lhp").write_text(MORE, encoding="utf-8")  # before the second try
        await wait_for_reload(reloader)
        assert notifiers.made == 2
        assert reloader.last is not None and reloader.last.diff is not None
        assert reloader.last.diff.pipelines.added == ("more",)
        await watching.stop()

    asyncio.run(scenario())


def test_a_failing_watch_never_stops_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})
    monkeypatch.setattr(watch_module, "RETRY_SECONDS", 0.2)
    real_snapshot = watch_module.snapshot
    calls = 0

    def failing_once(roots: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the catch-up of the first watch, its notifier already made
            raise OSError("a folder vanished")
        return real_snapshot(roots)

    monkeypatch.setattr(watch_module, "snapshot", failing_once)

    async def scenario() -> None:
        target = Target(folder)
        stop, armed = asyncio.Event(), asyncio.Event()
        reloader = Reloader([str(folder)], target, stderr=io.StringIO())
        baseline = real_snapshot(watch_roots([str(folder)], target.program, target.settings))
        watcher = asyncio.create_task(
            watch_and_reload(reloader, stop, armed=armed, baseline=baseline)
        )
        await armed.wait()
        await until(lambda: calls >= 2, "the next watch to begin")  # its catch-up listing
        assert not stop.is_set() and not watcher.done()
        (folder / "more.lhp").write_text(MORE, encoding="utf-8")
        await wait_for_reload(reloader)
        stop.set()
        await asyncio.wait_for(watcher, 10)

    asyncio.run(scenario())


def test_the_start_snapshot_lists_the_given_folders_as_they_were_before_reading(
    tmp_path: Path,
) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})
    early = snapshot(path_roots([str(folder)]))
    (folder / "more.lhp").write_text(MORE, encoding="utf-8")  # while the program is read
    target = Target(folder)
    baseline = start_snapshot([str(folder)], target.program, target.settings, early)
    changed = changed_paths(
        baseline, snapshot(watch_roots([str(folder)], target.program, target.settings))
    )
    assert [Path(p).name for p in changed] == ["more.lhp"]


class RecordingTarget(Target):
    """A :class:`Target` that keeps every diff it was reloaded with."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.diffs: list[Any] = []

    async def reload(self, compiled: Any, program: Any, settings: Any) -> Any:
        diff = await super().reload(compiled, program, settings)
        self.diffs.append(diff)
        return diff


def test_a_save_that_truncates_then_writes_later_is_one_reload_of_the_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``write_text`` and many editors truncate, then write. Past the debounce step apart, the
    two land in two batches; the empty file must not be reloaded as a program without its
    pipeline (that would stop it and start it again), and the write's own batch, already read,
    makes no second reload."""
    folder = folder_with(tmp_path, **{"first.lhp": FIRST, "more.lhp": MORE})
    monkeypatch.setattr(watch_module, "SETTLE_SECONDS", 5.0)  # ends when the file is written
    edited = MORE.replace('"m"', '"m2"')

    real_settle = watch_module.settle
    settling: list[list[str]] = []

    async def settle(paths: Any) -> None:
        settling.append([Path(p).name for p in paths])
        await real_settle(paths)

    monkeypatch.setattr(watch_module, "settle", settle)

    async def scenario() -> None:
        target = RecordingTarget(folder)
        watching = Watching(folder, target)
        await watching.start()
        with (folder / "more.lhp").open("w", encoding="utf-8") as file:
            file.flush()  # truncated, nothing written yet
            await until(lambda: settling, "the truncation's batch")
            file.write(edited)
        # The write, after the truncation's batch was taken, is a batch of its own.
        await until(lambda: len(watching.batches) == 2, "the write's batch")
        await watching.stop()
        assert settling == [["more.lhp"], ["more.lhp"]]
        assert watching.batches == [(["more.lhp"], True), (["more.lhp"], False)]
        assert len(target.diffs) == 1, target.diffs
        assert target.diffs[0].pipelines.removed == ()
        assert target.diffs[0].pipelines.changed == ("more",)

    asyncio.run(scenario())


def test_a_file_emptied_on_purpose_is_reloaded_after_the_settling_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, **{"first.lhp": FIRST, "more.lhp": MORE})
    monkeypatch.setattr(watch_module, "SETTLE_SECONDS", 0.2)

    async def scenario() -> None:
        target = RecordingTarget(folder)
        watching = Watching(folder, target)
        reloader = await watching.start()
        (folder / "more.lhp").write_text("", encoding="utf-8")
        await wait_for_reload(reloader)
        await watching.stop()
        assert target.diffs[0].pipelines.removed == ("more",)

    asyncio.run(scenario())


AVRO_N = '{"type": "record", "name": "S", "fields": [{"name": "n", "type": "int"}]}'
AVRO_NM = (
    '{"type": "record", "name": "S", "fields": [{"name": "n", "type": "int"}, '
    '{"name": "m", "type": "int"}]}'
)


def with_schema(avsc: str, field: str) -> str:
    return (
        f'schema S from "{avsc}"\n\n'
        f'pipeline first {{\n  from topic "a" {{ value = S }}\n  where value.{field} > 1\n'
        "  to log\n}\n"
    )


def test_an_avsc_file_written_after_a_save_that_named_it_is_noticed(tmp_path: Path) -> None:
    """The save names a file in a folder nothing watches yet and is rejected (no such file);
    writing the file then must reload, though the running program never named that folder."""
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    async def scenario() -> None:
        target = RecordingTarget(folder)
        watching = Watching(folder, target)
        reloader = await watching.start()
        (folder / "first.lhp").write_text(with_schema("../elsewhere/s.avsc", "n"), "utf-8")
        rejected = await wait_for_reload(reloader, "failed")
        assert reloader.rejected_schema_files == (folder / "../elsewhere/s.avsc",)
        # Written at once: whether the watch of the new folder has begun or not, it is seen.
        (elsewhere / "s.avsc").write_text(AVRO_N, encoding="utf-8")
        await wait_for_reload(reloader, "ok", rejected)
        await watching.stop()
        assert target.diffs[-1].pipelines.changed == ("first",)
        assert "S" in target.program.schemas
        assert reloader.rejected_schema_files == ()

    asyncio.run(scenario())


def test_a_schema_saved_in_a_newly_watched_folder_during_the_reload_is_not_missed(
    tmp_path: Path,
) -> None:
    """The reload that starts reading ``elsewhere/`` is slow; the schema there is changed while
    it runs, before any watch covers that folder. The next watch reloads it."""
    folder = folder_with(tmp_path, **{"first.lhp": FIRST})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "s.avsc").write_text(AVRO_N, encoding="utf-8")

    class SlowTarget(RecordingTarget):
        async def reload(self, compiled: Any, program: Any, settings: Any) -> Any:
            diff = await super().reload(compiled, program, settings)
            if len(self.diffs) == 1:  # the program was read: change its schema now
                (elsewhere / "s.avsc").write_text(AVRO_NM, encoding="utf-8")
            return diff

    async def scenario() -> None:
        target = SlowTarget(folder)
        watching = Watching(folder, target)
        await watching.start()
        (folder / "first.lhp").write_text(with_schema("../elsewhere/s.avsc", "n"), "utf-8")
        for _ in range(200):
            if len(target.diffs) >= 2:
                break
            await asyncio.sleep(0.05)
        await watching.stop()
        assert len(target.diffs) >= 2, "the schema changed during the reload was missed"
        fields = [f["name"] for f in target.program.schemas["S"].avro["fields"]]
        assert fields == ["n", "m"]

    asyncio.run(scenario())
