"""ConnectorManager against an in-process fake Kafka Connect cluster (httpx.MockTransport
speaking the REST calls it makes): create, idempotent re-sync, update, removal of its own
connectors only, statuses, an unreachable or refusing cluster; and the values of
``from connector``."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lhpipe.check.program import ConnectorInfo
from lhpipe.clients.connect_rest import ConnectRest
from lhpipe.core.errors import DecodeError
from lhpipe.engine import connectors as mod
from lhpipe.engine.connectors import ConnectorManager, cluster_config, health_of
from lhpipe.kinds import load
from lhpipe.runtime.status import State
from lhpipe.settings import Settings, SettingsError
from lhpipe.sources.connector import ConnectorValueDecoder

URL = "http://connect.test:8083"


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run by ``asyncio.run`` (pytest sees the same fixtures)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class FakeConnect:
    """The REST calls of one Connect worker, over a dict of connectors."""

    def __init__(self) -> None:
        self.configs: dict[str, dict[str, str]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.down = False
        self.reject: str | None = None
        self.topics_created: list[list[str]] = []  # what the manager asked the broker for

    def create_topics(self, settings: Settings, topics: Iterable[str]) -> None:
        self.topics_created.append(list(topics))

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        self.calls.append((request.method, path))
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts == ["connectors"]:
            assert request.url.params.get_list("expand") == ["info", "status"]
            body = {
                name: {
                    "info": {"name": name, "config": config, "tasks": [], "type": "source"},
                    "status": self.states.get(name, _status("RUNNING", "RUNNING")),
                }
                for name, config in self.configs.items()
            }
            return httpx.Response(200, json=body)
        if request.method == "PUT" and len(parts) == 3 and parts[2] == "config":
            if self.reject is not None:
                return httpx.Response(400, json={"error_code": 400, "message": self.reject})
            config = json.loads(request.content)
            assert all(isinstance(v, str) for v in config.values()), config
            created = parts[1] not in self.configs
            self.configs[parts[1]] = {**config, "name": parts[1]}
            return httpx.Response(201 if created else 200, json={"name": parts[1]})
        if request.method == "DELETE" and len(parts) == 2:
            if self.configs.pop(parts[1], None) is None:
                return httpx.Response(404, json={"error_code": 404, "message": "not found"})
            return httpx.Response(204)
        return httpx.Response(404, json={"error_code": 404, "message": f"no route {path}"})

    def puts(self) -> list[str]:
        return [path for method, path in self.calls if method == "PUT"]

    def deletes(self) -> list[str]:
        return [path for method, path in self.calls if method == "DELETE"]


def _status(connector: str, *tasks: str, trace: str | None = None) -> dict[str, Any]:
    head: dict[str, Any] = {"state": connector, "worker_id": "w:8083"}
    if trace is not None:
        head["trace"] = trace
    return {
        "connector": head,
        "tasks": [{"id": i, "state": s, "worker_id": "w:8083"} for i, s in enumerate(tasks)],
    }


@pytest.fixture
def fake() -> FakeConnect:
    return FakeConnect()


def _manager(fake: FakeConnect, environ: dict[str, str] | None = None) -> ConnectorManager:
    rest = ConnectRest(URL, client=httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)))
    return ConnectorManager(
        Settings(environ=environ or {}), rest=rest, create_topics=fake.create_topics
    )


def _connectors(tmp_path: Path, text: str) -> dict[str, ConnectorInfo]:
    path = tmp_path / "c.lhp"
    path.write_text(text, encoding="utf-8")
    result = load([path])
    assert result.program is not None, result.diagnostics
    return dict(result.program.connectors)


LINES = """
connector lines {
  class = "FileStreamSource"
  topic = "lines-topic"
  config { file = "/data/in.txt"  "batch.size" = 100  "exactly.once" = false }
}
"""

DEBEZIUM = """
connector crm {
  class = "io.debezium.connector.postgresql.PostgresConnector"
  topic = "crm.public.customers"
  config {
    "topic.prefix" = "crm"
    "database.password" = env("CRM_PASSWORD")
    "database.port" = env("CRM_PORT", "5432")
  }
}
"""


@pytest.fixture(autouse=True)
def _no_background_rounds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tests call ``refresh()`` themselves; the background loop waits long."""
    monkeypatch.setattr(mod, "REFRESH_SECONDS", 3600.0)
    monkeypatch.setattr(mod, "SETTLING_SECONDS", 3600.0)
    yield


# -- the config put on the cluster -------------------------------------------------------------


def test_file_stream_source_config_gets_topic_converter_owner_and_text_values(
    tmp_path: Path,
) -> None:
    info = _connectors(tmp_path, LINES)["lines"]
    config = cluster_config(info, Settings(environ={}), "lhpipe")
    assert config == {
        "connector.class": "FileStreamSource",
        "name": "lines",
        "file": "/data/in.txt",
        "batch.size": "100",
        "exactly.once": "false",
        "topic": "lines-topic",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "lhpipe.owner": "lhpipe",
    }


def test_a_declared_converter_and_topic_key_lose_only_the_topic(tmp_path: Path) -> None:
    info = _connectors(
        tmp_path,
        """
        connector lines {
          class = "org.apache.kafka.connect.file.FileStreamSourceConnector"
          topic = "declared"
          config {
            topic = "other"
            "value.converter" = "org.apache.kafka.connect.json.JsonConverter"
          }
        }
        """,
    )["lines"]
    config = cluster_config(info, Settings(environ={}), "me")
    assert config["topic"] == "declared"
    assert config["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    assert config["lhpipe.owner"] == "me"


def test_a_file_stream_sink_reads_its_topic_from_topics_as_text_lines(tmp_path: Path) -> None:
    info = _connectors(
        tmp_path,
        """
        connector export { class = "FileStreamSink" topic = "done" config { file = "/out.txt" } }
        """,
    )["export"]
    assert info.sink
    assert cluster_config(info, Settings(environ={}), "lhpipe") == {
        "connector.class": "FileStreamSink",
        "name": "export",
        "file": "/out.txt",
        "topics": "done",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "lhpipe.owner": "lhpipe",
    }


@pytest.mark.parametrize(
    ("connector_class", "sink"),
    [
        ("io.confluent.connect.jdbc.JdbcSinkConnector", True),
        ("io.littlehorse.connect.WfRunSinkConnector", True),
        ("FileStreamSink", True),
        ("io.debezium.connector.postgresql.PostgresConnector", False),
        ("FileStreamSourceConnector", False),
        ("com.example.SinkholeSource", False),
    ],
)
def test_any_sink_class_reads_kafka_connects_topics_and_keeps_its_converters(
    tmp_path: Path, connector_class: str, sink: bool
) -> None:
    text = f'connector c {{ class = "{connector_class}" topic = "t" }}'
    info = _connectors(tmp_path, text)["c"]
    assert info.sink is sink
    config = cluster_config(info, Settings(environ={}), "lhpipe")
    assert ("topics" in config) is sink
    if sink and "FileStream" not in connector_class:
        assert config["topics"] == "t" and "value.converter" not in config


def test_from_connector_of_a_sink_connector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.lhp"
    path.write_text(
        'connector export { class = "FileStreamSink" topic = "done" config { file = "/o" } }\n'
        "pipeline p {\n  from connector export\n  to log\n}\n",
        encoding="utf-8",
    )
    result = load([path])
    assert [(d.code, d.span.line) for d in result.diagnostics] == [("LHP106", 3)]
    assert "is a sink connector" in result.diagnostics[0].message
    assert result.diagnostics[0].hint == 'read its topic with `from topic "done"`'


def test_other_classes_get_no_topic_key_and_env_is_read_now(tmp_path: Path) -> None:
    info = _connectors(tmp_path, DEBEZIUM)["crm"]
    config = cluster_config(info, Settings(environ={"CRM_PASSWORD": "s3cret"}), "lhpipe")
    assert "topic" not in config and "value.converter" not in config
    assert config["database.password"] == "s3cret"
    assert config["database.port"] == "5432"
    with pytest.raises(SettingsError, match=r"connector crm: database.password: env\('CRM_PASS"):
        cluster_config(info, Settings(environ={}), "lhpipe")


@pytest.mark.parametrize(
    "alias", ["FileStreamSource", "FileStreamSourceConnector", mod.FILE_STREAM_SOURCE]
)
def test_connect_aliases_of_the_file_source_are_known(alias: str) -> None:
    assert mod.canonical_class(alias) == mod.FILE_STREAM_SOURCE
    assert mod.canonical_class("com.example.FileStreamSource") == "com.example.FileStreamSource"


# -- sync ----------------------------------------------------------------------------------------


@synchronous
async def test_sync_creates_then_a_second_sync_puts_nothing(
    tmp_path: Path, fake: FakeConnect
) -> None:
    manager = _manager(fake)
    declared = _connectors(tmp_path, LINES)
    await manager.sync(declared)
    assert fake.puts() == ["/connectors/lines/config"]
    assert fake.configs["lines"]["topic"] == "lines-topic"
    [status] = manager.statuses()
    assert status.name == "connector:lines"
    assert status.state is State.STARTING and not status.ready

    await manager.refresh()
    [status] = manager.statuses()
    assert status.ready and status.detail is None
    assert status.stats["connector"] == "RUNNING" and status.stats["tasks"] == ["RUNNING"]

    await manager.sync(declared)  # a reload with the same declaration
    assert fake.puts() == ["/connectors/lines/config"]
    # The topic was made before the connector, once.
    assert fake.topics_created == [["lines-topic"]]
    await manager.close()


@synchronous
async def test_an_edited_declaration_updates_the_config(tmp_path: Path, fake: FakeConnect) -> None:
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))
    await manager.sync(_connectors(tmp_path, LINES.replace("/data/in.txt", "/data/other.txt")))
    assert fake.puts() == ["/connectors/lines/config"] * 2
    assert fake.configs["lines"]["file"] == "/data/other.txt"
    [status] = manager.statuses()
    assert status.detail == "updated, waiting for it to run"
    await manager.close()


@synchronous
async def test_undeclared_connectors_are_removed_only_when_they_are_ours(
    tmp_path: Path, fake: FakeConnect
) -> None:
    fake.configs["someone_elses"] = {"connector.class": "X", "name": "someone_elses"}
    fake.configs["other_owner"] = {"name": "other_owner", "lhpipe.owner": "team-b"}
    fake.configs["left_over"] = {"name": "left_over", "lhpipe.owner": "lhpipe"}
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))
    assert fake.deletes() == ["/connectors/left_over"]
    assert set(fake.configs) == {"someone_elses", "other_owner", "lines"}

    await manager.sync({})  # the declaration went away
    assert fake.deletes() == ["/connectors/left_over", "/connectors/lines"]
    assert set(fake.configs) == {"someone_elses", "other_owner"}
    assert manager.statuses() == []
    await manager.close()


@synchronous
async def test_the_owner_setting_separates_deployments(tmp_path: Path, fake: FakeConnect) -> None:
    fake.configs["theirs"] = {"name": "theirs", "lhpipe.owner": "lhpipe"}
    manager = _manager(fake, {"LHPIPE_CONNECT_OWNER": "team-b"})
    await manager.sync(_connectors(tmp_path, LINES))
    assert fake.configs["lines"]["lhpipe.owner"] == "team-b"
    assert "theirs" in fake.configs and fake.deletes() == []
    await manager.close()


@synchronous
async def test_a_connector_deleted_behind_our_back_is_created_again(
    tmp_path: Path, fake: FakeConnect
) -> None:
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))
    del fake.configs["lines"]
    await manager.refresh()
    assert fake.puts() == ["/connectors/lines/config"] * 2 and "lines" in fake.configs
    await manager.close()


# -- statuses ------------------------------------------------------------------------------------


@synchronous
async def test_a_failed_task_reports_its_traces_first_line(
    tmp_path: Path, fake: FakeConnect
) -> None:
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))
    fake.states["lines"] = {
        "connector": {"state": "RUNNING"},
        "tasks": [
            {
                "id": 0,
                "state": "FAILED",
                "trace": "org.apache.kafka.connect.errors.ConnectException: no file\n\tat x.y(Z)",
            }
        ],
    }
    await manager.refresh()
    [status] = manager.statuses()
    assert status.state is State.FAILED and not status.ready
    assert status.detail == (
        "task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: no file"
    )
    await manager.close()


@pytest.mark.parametrize(
    ("status", "state", "detail"),
    [
        (_status("RUNNING", "RUNNING", "RUNNING"), State.RUNNING, None),
        (_status("RUNNING"), State.STARTING, "connector RUNNING: no task yet"),
        (
            _status("UNASSIGNED", "UNASSIGNED"),
            State.STARTING,
            "connector UNASSIGNED: task 0 UNASSIGNED",
        ),
        (_status("PAUSED", "PAUSED"), State.PAUSED, "paused on the Connect cluster"),
        (_status("STOPPED"), State.STOPPED, "stopped on the Connect cluster"),
        (
            _status("FAILED", trace="\njava.lang.IllegalStateException: boom\n\tat a.b(C)"),
            State.FAILED,
            "connector FAILED: java.lang.IllegalStateException: boom",
        ),
        ({}, State.STARTING, "connector UNASSIGNED: no task yet"),
    ],
)
def test_health_of_connect_states(status: dict[str, Any], state: State, detail: str | None) -> None:
    health = health_of(status)
    assert (health.state, health.detail) == (state, detail)


@synchronous
async def test_an_unreachable_cluster_is_failed_then_recovers(
    tmp_path: Path, fake: FakeConnect
) -> None:
    fake.down = True
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))  # does not raise
    [status] = manager.statuses()
    assert status.state is State.FAILED and not status.source_connected
    assert status.detail is not None
    assert status.detail.startswith(f"Kafka Connect at {URL} is unreachable")
    assert "connection refused" in status.detail

    fake.down = False
    await manager.refresh()
    assert "lines" in fake.configs
    await manager.refresh()
    assert manager.statuses()[0].ready
    await manager.close()


@synchronous
async def test_a_refused_config_is_failed_with_connects_message(
    tmp_path: Path, fake: FakeConnect
) -> None:
    fake.reject = "Connector configuration is invalid and contains the following 1 error(s):\nbad"
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))
    [status] = manager.statuses()
    assert status.state is State.FAILED
    assert status.detail == (
        "rejected by Kafka Connect: PUT /connectors/lines/config answered 400: Connector "
        "configuration is invalid and contains the following 1 error(s): bad"
    )
    await manager.close()


@synchronous
async def test_an_unset_env_fails_that_connector_only(tmp_path: Path, fake: FakeConnect) -> None:
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES + DEBEZIUM))
    by_name = {s.name: s for s in manager.statuses()}
    assert by_name["connector:crm"].state is State.FAILED
    assert "env('CRM_PASSWORD') is not set" in (by_name["connector:crm"].detail or "")
    assert set(fake.configs) == {"lines"}
    await manager.close()


@synchronous
async def test_the_background_rounds_retry_on_their_own(
    tmp_path: Path, fake: FakeConnect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "REFRESH_SECONDS", 0.01)
    monkeypatch.setattr(mod, "SETTLING_SECONDS", 0.01)
    fake.down = True
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))
    fake.down = False
    for _ in range(200):
        if manager.statuses()[0].ready:
            break
        await asyncio.sleep(0.01)
    assert manager.statuses()[0].ready
    await manager.close()


# -- from connector: values ---------------------------------------------------------------------


@pytest.fixture
def decoder(tmp_path: Path) -> ConnectorValueDecoder:
    path = tmp_path / "p.lhp"
    path.write_text(LINES + "pipeline p {\n  from connector lines\n  to log\n}\n", encoding="utf-8")
    result = load([path])
    assert result.program is not None, result.diagnostics
    return ConnectorValueDecoder(result.program.pipelines["p"].source, result.program)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"id": "a1", "n": 2}', {"id": "a1", "n": 2}),
        (b"hello world", "hello world"),
        (b'"quoted"', "quoted"),  # JsonConverter without schemas writes a line so
        (b'{"schema": {"type": "string", "optional": false}, "payload": "a line"}', "a line"),
        (b'{"schema": null, "payload": {"id": 1}}', {"id": 1}),
        (b'{"schema": 1, "payload": 2}', {"schema": 1, "payload": 2}),
        (b"", ""),
        (None, None),
    ],
)
def test_connector_values_are_json_or_text(
    decoder: ConnectorValueDecoder, raw: bytes | None, value: Any
) -> None:
    assert decoder.decode_value(raw) == value


def test_a_value_that_is_neither_json_nor_text_is_a_decode_error(
    decoder: ConnectorValueDecoder,
) -> None:
    with pytest.raises(DecodeError, match="neither JSON nor UTF-8 text: byte 0xff at offset 1"):
        decoder.decode_value(b"a\xff")


@synchronous
async def test_with_nothing_declared_one_round_removes_leftovers_and_no_loop_runs(
    fake: FakeConnect,
) -> None:
    fake.configs["left_over"] = {"name": "left_over", "lhpipe.owner": "lhpipe"}
    manager = _manager(fake)
    await manager.sync({})
    assert fake.deletes() == ["/connectors/left_over"] and manager._loop is None

    fake.down = True  # a program without connectors, and no Connect cluster at all
    quiet = _manager(fake)
    await quiet.sync({})
    assert quiet.statuses() == [] and quiet._loop is None
    await manager.close()
    await quiet.close()


@synchronous
async def test_a_removal_that_failed_is_retried_by_the_rounds(
    tmp_path: Path, fake: FakeConnect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "REFRESH_SECONDS", 0.01)
    monkeypatch.setattr(mod, "SETTLING_SECONDS", 0.01)
    manager = _manager(fake)
    await manager.sync(_connectors(tmp_path, LINES))
    fake.down = True
    await manager.sync({})
    assert "lines" in fake.configs
    fake.down = False
    for _ in range(200):
        if "lines" not in fake.configs:
            break
        await asyncio.sleep(0.01)
    assert "lines" not in fake.configs
    for _ in range(200):  # nothing declared, nothing left: the rounds end
        if manager._loop is not None and manager._loop.done():
            break
        await asyncio.sleep(0.01)
    assert manager._loop is not None and manager._loop.done()
    await manager.close()


def test_the_demo_creates_the_files_its_file_sources_read(tmp_path: Path) -> None:
    from lhpipe.demo.cli import create_connector_files

    export = tmp_path / "exports" / "crm.jsonl"
    path = tmp_path / "c.lhp"
    path.write_text(
        LINES.replace('"/data/in.txt"', 'env("CRM_EXPORT")')
        + DEBEZIUM.replace('"topic.prefix" = "crm"', 'file = "/not/a/file/source"'),
        encoding="utf-8",
    )
    settings = Settings(environ={"CRM_EXPORT": str(export)})
    assert create_connector_files([str(path)], settings) == [str(export)]
    assert export.is_file() and export.read_text() == ""


@synchronous
async def test_a_broker_that_cannot_create_topics_does_not_stop_the_deployment(
    tmp_path: Path, fake: FakeConnect
) -> None:
    def refuse(settings: Settings, topics: Iterable[str]) -> None:
        raise RuntimeError("broker unreachable")

    rest = ConnectRest(URL, client=httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)))
    manager = ConnectorManager(Settings(environ={}), rest=rest, create_topics=refuse)
    await manager.sync(_connectors(tmp_path, LINES))
    assert "lines" in fake.configs
    await manager.close()
