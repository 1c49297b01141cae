"""Hot reload in one process, with sources faked at the source factory: what a reload keeps,
restarts, stops and starts, how routes swap, and that a broken save changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lhpipe import kinds
from lhpipe.check.program import Program
from lhpipe.core import metrics
from lhpipe.engine.reload import (
    LoadedProgram,
    ProgramRejected,
    Reloader,
    diff_programs,
    load_program,
)
from lhpipe.engine.supervisor import Supervisor
from lhpipe.gateway.gateway import starting_routes
from lhpipe.gateway.server import EngineApp
from lhpipe.graph.model import CompiledProgram
from lhpipe.runtime.runner import PipelineRunner, TopicPartition
from lhpipe.runtime.status import State
from lhpipe.settings import Settings

BEFORE = """
webhook hook_a {
  path = "/hooks/a"
  auth = none
}

webhook hook_gone {
  path = "/hooks/gone"
  auth = none
}

pipeline direct_a {
  from webhook hook_a
  to log
}

pipeline direct_gone {
  from webhook hook_gone
  to log
}

pipeline keep {
  from topic "reload-keep" { value = json }
  to log
}

pipeline edit {
  from topic "reload-edit" { value = json }
  where value.n > 1
  to log
}

pipeline gone {
  from topic "reload-gone" { value = json }
  to log
}
"""

# keep and hook_a only change layout and comments; edit's `where` changes; gone and hook_gone
# go; fresh and hook_b come.
AFTER = """
// a comment that changes nothing
webhook hook_a { path = "/hooks/a"  auth = none }

webhook hook_b {
  path = "/hooks/b"
  auth = none
}

pipeline direct_a { from webhook hook_a  to log }

pipeline direct_b {
  from webhook hook_b
  to log
}

pipeline keep {
  from topic "reload-keep" {
    value = json
  }
  to log
}

pipeline edit {
  from topic "reload-edit" { value = json }
  where value.n > 2
  to log
}

pipeline fresh {
  from topic "reload-fresh" { value = json }
  to log
}
"""


class FakeSource:
    """A source that records its life: started, committed offsets, stopped."""

    def __init__(self, pipeline: str, sink: PipelineRunner, journal: list[str]) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.journal = journal
        self.paused = False
        self.error: str | None = None
        self.lag: dict[TopicPartition, int] = {}
        self.final: dict[TopicPartition, int] | None = None

    def start(self) -> None:
        self.journal.append(f"start {self.pipeline}")

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        pass

    async def stop(self, final_offsets: Callable[[], dict[TopicPartition, int]]) -> None:
        self.final = final_offsets()
        self.journal.append(f"stop {self.pipeline}")

    def connected(self) -> bool:
        return True


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every pipeline's source is a :class:`FakeSource` writing to the returned journal."""
    events: list[str] = []

    def faked(real: Any) -> Any:
        def fake_parts(spec: Any, program: Program, settings: Settings, clients: Any) -> Any:
            parts = real(spec, program, settings, clients)
            return dataclasses.replace(
                parts, make_source=lambda runner: FakeSource(spec.name, runner, events)
            )

        return fake_parts

    for kind, definition in list(kinds.SOURCES.items()):
        monkeypatch.setitem(
            kinds.SOURCES, kind, dataclasses.replace(definition, parts=faked(definition.parts))
        )
    yield events


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipelines.lhp"
    path.write_text(text, encoding="utf-8")
    return folder


def loaded(folder: Path) -> LoadedProgram:
    return load_program([str(folder)])


async def apost_answer(app: EngineApp, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lhpipe") as client:
        return await client.post(path, json={"n": 1})


async def apost(app: EngineApp, path: str) -> int:
    return (await apost_answer(app, path)).status_code


def compiled_of(text: str, tmp_path: Path) -> CompiledProgram:
    return loaded(write(tmp_path / f"p{abs(hash(text))}", text)).compiled


# -- start-up ---------------------------------------------------------------------------------


def test_declared_paths_answer_503_with_retry_after_until_the_gateway_installs_its_routes(
    tmp_path: Path,
) -> None:
    """The listener accepts requests before the Gateway is built (``lhpipe run``): a provider
    calling then is told to come back, not that the endpoint is gone."""
    app = EngineApp(lambda: [], starting=True, routes=starting_routes(compiled_of(AFTER, tmp_path)))
    for path in ("/hooks/a", "/hooks/b"):
        response = asyncio.run(apost_answer(app, path))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["detail"] == "lhpipe is starting; try again shortly"
    assert asyncio.run(apost(app, "/hooks/gone")) == 404


# -- the diff --------------------------------------------------------------------------------


def test_the_diff_sorts_every_pipeline_and_webhook_by_what_changed(tmp_path: Path) -> None:
    diff = diff_programs(compiled_of(BEFORE, tmp_path), compiled_of(AFTER, tmp_path))
    assert diff.pipelines.added == ("direct_b", "fresh")
    assert diff.pipelines.removed == ("direct_gone", "gone")
    assert diff.pipelines.changed == ("edit",)
    assert diff.pipelines.unchanged == ("direct_a", "keep")
    assert diff.webhooks.added == ("hook_b",)
    assert diff.webhooks.removed == ("hook_gone",)
    assert diff.webhooks.changed == ()
    assert diff.webhooks.unchanged == ("hook_a",)
    assert diff.changes_anything


def test_the_program_hash_ignores_layout_and_follows_meaning(tmp_path: Path) -> None:
    before = compiled_of(BEFORE, tmp_path)
    relaid = compiled_of("// note\n" + BEFORE.replace("\n\n", "\n\n\n"), tmp_path)
    edited = compiled_of(BEFORE.replace("value.n > 1", "value.n > 5"), tmp_path)
    assert before.program_hash() == relaid.program_hash()
    assert not diff_programs(before, relaid).changes_anything
    assert before.program_hash() != edited.program_hash()
    assert len(before.program_hash()) == 16


def test_the_program_hash_follows_connector_declarations(tmp_path: Path) -> None:
    connector = """
connector files {
  class = "FileStreamSource"
  config { file = "/tmp/a.txt" }
  topic = "lines"
}
"""
    plain = compiled_of(BEFORE, tmp_path)
    declared = compiled_of(BEFORE + connector, tmp_path)
    edited = compiled_of(BEFORE + connector.replace("/tmp/a.txt", "/tmp/b.txt"), tmp_path)
    hashes = {plain.program_hash(), declared.program_hash(), edited.program_hash()}
    assert len(hashes) == 3
    assert declared.connectors.keys() == {"files"}


def test_a_poll_pipeline_restarts_when_its_state_settings_change(tmp_path: Path) -> None:
    from lhpipe.kinds import compile_program, load

    folder = write(
        tmp_path / "poll",
        'pipeline feed {\n  from poll "http://127.0.0.1:9/items" { every = 5s }\n  to log\n}\n',
    )
    program = load([str(folder)]).program
    assert program is not None
    first = compile_program(program, {"LHPIPE_POLL_STATE_TOPIC": "state-a"})
    second = compile_program(program, {"LHPIPE_POLL_STATE_TOPIC": "state-b"})
    same = compile_program(program, {"LHPIPE_POLL_STATE_TOPIC": "state-a", "OTHER": "x"})
    assert diff_programs(first, second).pipelines.changed == ("feed",)
    assert diff_programs(first, same).pipelines.unchanged == ("feed",)


def test_a_direct_mode_pipeline_change_changes_its_webhook(tmp_path: Path) -> None:
    before = compiled_of(BEFORE, tmp_path)
    after = compiled_of(
        BEFORE.replace("from webhook hook_a\n  to log", 'from webhook hook_a\n  to file "x"'),
        tmp_path,
    )
    diff = diff_programs(before, after)
    assert diff.pipelines.changed == ("direct_a",)
    assert diff.webhooks.changed == ("hook_a",)


# -- loading in isolation ------------------------------------------------------------------


def test_a_broken_program_is_rejected_with_lint_text_diagnostics(tmp_path: Path) -> None:
    folder = write(tmp_path, BEFORE + "\npipeline broken {\n")
    with pytest.raises(ProgramRejected) as caught:
        load_program([str(folder)])
    report = caught.value.report
    assert f"{folder / 'pipelines.lhp'}:" in report
    assert "error[LHP" in report
    assert report.rstrip().endswith("in 1 file")


def test_a_bad_settings_file_or_no_files_is_rejected(tmp_path: Path) -> None:
    folder = write(tmp_path, BEFORE)
    (folder / "lhpipe.toml").write_text("KAFKA_BOOTSTRAP_SERVERS = [\n", encoding="utf-8")
    with pytest.raises(ProgramRejected, match=r"lhpipe\.toml"):
        load_program([str(folder)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProgramRejected, match=r"no \.lhp files"):
        load_program([str(empty)])


# -- applying: the Supervisor and the Gateway ----------------------------------------------


def _counter(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


def test_a_reload_keeps_unchanged_restarts_changed_stops_removed_starts_added(
    tmp_path: Path, journal: list[str]
) -> None:
    folder = write(tmp_path / "pipelines", BEFORE)
    first = loaded(folder)

    async def scenario() -> None:
        supervisor = Supervisor(first.compiled, first.program, first.settings)
        app = EngineApp(supervisor.statuses)
        await supervisor.start(app)
        reloader = Reloader([str(folder)], supervisor, app=app, stderr=io.StringIO())
        keep, edit, gone = (supervisor.runner(n) for n in ("keep", "edit", "gone"))
        route_a = app.routes["/hooks/a"]
        assert await apost(app, "/hooks/gone") == 202
        assert await apost(app, "/hooks/b") == 404
        hash_before = app.program_hash
        ok_before = _counter("lhpipe_reloads_total", outcome="ok")
        added_before = _counter("lhpipe_reload_changes_total", kind="pipeline", change="added")
        journal.clear()

        write(folder, AFTER)
        outcome = await reloader.reload([str(folder / "pipelines.lhp")])

        assert outcome.outcome == "ok", outcome
        # Unchanged: the very same runner and route objects, their sources never restarted.
        assert supervisor.runner("keep") is keep
        assert keep.state is State.RUNNING
        assert app.routes["/hooks/a"] is route_a
        assert "stop keep" not in journal and "start keep" not in journal
        # Changed: drained and stopped, then a new runner started.
        assert supervisor.runner("edit") is not edit
        assert edit.state is State.STOPPED
        assert journal.index("stop edit") < journal.index("start edit")
        # Removed: drained and gone; added: started.
        assert gone.state is State.STOPPED and "stop gone" in journal
        with pytest.raises(KeyError):
            supervisor.runner("gone")
        assert "start fresh" in journal
        names = [s.name for s in supervisor.statuses()]
        assert names == ["direct_a", "direct_b", "keep", "edit", "fresh"]
        # Routes: one new table, the removed path is gone, the added one answers.
        assert await apost(app, "/hooks/b") == 202
        assert await apost(app, "/hooks/gone") == 404
        assert await apost(app, "/hooks/a") == 202
        # Reported: /readyz's hash, the counters.
        assert app.program_hash == outcome.program != hash_before
        assert _counter("lhpipe_reloads_total", outcome="ok") == ok_before + 1
        assert _counter("lhpipe_reload_changes_total", kind="pipeline", change="added") == (
            added_before + 2
        )
        assert _counter("lhpipe_program_info", hash=outcome.program) == 1
        gauge = metrics.REGISTRY.get_sample_value
        assert gauge("lhpipe_in_flight", {"pipeline": "gone"}) is None
        assert gauge("lhpipe_in_flight", {"pipeline": "keep"}) is not None
        assert _counter("lhpipe_program_info", hash=hash_before or "") == 0
        await supervisor.stop(deadline=1)

    asyncio.run(scenario())


def test_a_broken_save_changes_nothing_that_runs_and_prints_the_diagnostics(
    tmp_path: Path, journal: list[str]
) -> None:
    folder = write(tmp_path / "pipelines", BEFORE)
    first = loaded(folder)
    err = io.StringIO()

    async def scenario() -> None:
        supervisor = Supervisor(first.compiled, first.program, first.settings)
        app = EngineApp(supervisor.statuses)
        await supervisor.start(app)
        reloader = Reloader([str(folder)], supervisor, app=app, stderr=err)
        runners = {n: supervisor.runner(n) for n in ("keep", "edit", "gone")}
        table = app.routes
        hash_before = app.program_hash
        failed_before = _counter("lhpipe_reloads_total", outcome="failed")
        journal.clear()

        write(folder, AFTER + "\npipeline half_typed {\n  from topic\n")
        outcome = await reloader.reload()

        assert outcome.outcome == "failed"
        assert outcome.diff is None
        assert "rejected" in (outcome.reason or "")
        assert journal == []
        assert app.routes is table
        assert {n: supervisor.runner(n) for n in runners} == runners
        assert all(r.state is State.RUNNING for r in runners.values())
        assert await apost(app, "/hooks/gone") == 202
        assert await apost(app, "/hooks/b") == 404
        assert app.program_hash == hash_before == outcome.program
        assert supervisor.compiled is first.compiled
        assert _counter("lhpipe_reloads_total", outcome="failed") == failed_before + 1

        # Fixing the file applies the new program.
        write(folder, AFTER)
        fixed = await reloader.reload()
        assert fixed.outcome == "ok"
        assert await apost(app, "/hooks/b") == 202
        await supervisor.stop(deadline=1)

    asyncio.run(scenario())
    text = err.getvalue()
    assert f"{folder / 'pipelines.lhp'}:" in text
    assert "error[LHP" in text


def test_reloads_run_one_at_a_time(tmp_path: Path) -> None:
    folder = write(tmp_path, BEFORE)
    first = loaded(folder)

    class SlowTarget:
        compiled = first.compiled
        program = first.program
        settings = first.settings

        def __init__(self) -> None:
            self.running = 0
            self.most = 0

        async def reload(self, compiled: Any, program: Any, settings: Any) -> Any:
            self.running += 1
            self.most = max(self.most, self.running)
            await asyncio.sleep(0.05)
            self.running -= 1
            return diff_programs(self.compiled, compiled)

    target = SlowTarget()

    async def scenario() -> None:
        reloader = Reloader([str(folder)], target, stderr=io.StringIO())
        outcomes = await asyncio.gather(*(reloader.reload() for _ in range(3)))
        assert [o.outcome for o in outcomes] == ["ok"] * 3

    asyncio.run(scenario())
    assert target.most == 1


def test_an_edited_settings_file_restarts_what_reads_the_setting(
    tmp_path: Path, journal: list[str]
) -> None:
    text = BEFORE.replace(
        'pipeline gone {\n  from topic "reload-gone" { value = json }\n  to log\n}',
        'pipeline gone {\n  from topic "reload-gone" { value = json }\n'
        '  to http "http://127.0.0.1:9/x" { headers { "X-Tag" = env("RELOAD_TEST_TAG", "a") } }'
        "\n}",
    )
    assert "RELOAD_TEST_TAG" in text
    folder = write(tmp_path / "pipelines", text)
    first = loaded(folder)

    async def scenario() -> None:
        supervisor = Supervisor(first.compiled, first.program, first.settings)
        await supervisor.start()
        reloader = Reloader([str(folder)], supervisor, stderr=io.StringIO())
        keep = supervisor.runner("keep")
        (folder / "lhpipe.toml").write_text('RELOAD_TEST_TAG = "b"\n', encoding="utf-8")
        outcome = await reloader.reload()
        assert outcome.diff is not None
        assert outcome.diff.pipelines.changed == ("gone",)
        assert supervisor.runner("keep") is keep
        assert supervisor.settings.get("RELOAD_TEST_TAG") == "b"
        await supervisor.stop(deadline=1)

    asyncio.run(scenario())


def test_clients_of_earlier_settings_are_closed_once_nothing_uses_them(
    tmp_path: Path, journal: list[str]
) -> None:
    folder = write(tmp_path / "pipelines", BEFORE)
    first = loaded(folder)
    closed: list[str] = []

    async def scenario() -> None:
        supervisor = Supervisor(first.compiled, first.program, first.settings)
        await supervisor.start()
        reloader = Reloader([str(folder)], supervisor, stderr=io.StringIO())
        earlier = supervisor._shared

        async def close() -> None:
            closed.append("earlier")

        earlier.close = close  # type: ignore[method-assign]
        # New settings: new clients for what is rebuilt; the unchanged runners and routes
        # keep the earlier ones, which must stay open.
        (folder / "lhpipe.toml").write_text('RELOAD_TEST_TAG = "b"\n', encoding="utf-8")
        assert (await reloader.reload()).outcome == "ok"
        await supervisor.release_retired()
        assert closed == []
        # Everything replaced: nothing is built with the earlier clients any more.
        write(
            folder, 'pipeline other {\n  from topic "reload-other" { value = json }\n  to log\n}\n'
        )
        outcome = await reloader.reload()
        assert outcome.diff is not None and outcome.diff.pipelines.added == ("other",)
        await supervisor.release_retired()
        assert closed == ["earlier"]
        await supervisor.stop(deadline=1)
        assert closed == ["earlier"]  # not closed a second time

    asyncio.run(scenario())


def test_the_watcher_reloads_on_watched_files_only_and_stops_when_told(tmp_path: Path) -> None:
    from lhpipe.engine.watch import watch_and_reload

    folder = write(tmp_path / "pipelines", BEFORE)
    first = loaded(folder)

    class Target:
        compiled = first.compiled
        program = first.program
        settings = first.settings

        async def reload(self, compiled: Any, program: Any, settings: Any) -> Any:
            return diff_programs(self.compiled, compiled)

    batches: list[tuple[list[str], bool]] = []

    async def scenario() -> None:
        reloader = Reloader([str(folder)], Target(), stderr=io.StringIO())
        stop = asyncio.Event()
        armed = asyncio.Event()
        watcher = asyncio.create_task(
            watch_and_reload(
                reloader, stop, armed=armed, on_batch=lambda *batch: batches.append(batch)
            )
        )
        await armed.wait()  # the files are watched from here on
        (folder / ".pipelines.lhp.swp").write_text("x", encoding="utf-8")
        (folder / "notes.md").write_text("x", encoding="utf-8")
        (folder / "more.lhp").write_text('pipeline more {\n  from topic "m"\n  to log\n}\n')
        for _ in range(200):
            if batches:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(watcher, 10)

    asyncio.run(scenario())
    # The one batch there was, before or after the other two files: they never counted.
    assert batches == [([str((folder / "more.lhp").resolve())], True)]
