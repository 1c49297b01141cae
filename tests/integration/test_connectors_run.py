"""`connector` declarations against the real Kafka Connect worker of the local stack: a
FileStreamSource connector declared in `.lhp` is created by `lhpipe run`, the lines of its file
become WfRuns, an edited declaration updates the connector and a deleted one removes it (by a
restart, and live with `--watch`).

Each test runs lhpipe with its own `LHPIPE_CONNECT_OWNER`, so that it never removes the
connectors of another lhpipe using the same worker; names, topics and files carry a token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_run import (
    LhpipeRun,
    read_all,
    settled_wf_run_count,
    topic_ends,
    wait_until,
    write_pipelines,
)
from lh import lh_config, register_wf_spec
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

READY_TIMEOUT_SECONDS = 120.0  # lhpipe up, the connector and its task RUNNING on the worker
CONFIG_TOPIC = "lhpipe-connect-configs"  # the worker's config storage (lhpipe/stack/services.py)


def connector_config(stack: StackAddresses, name: str) -> dict[str, str] | None:
    """The connector's config on the worker, or None when it does not exist."""
    answer = httpx.get(f"{stack.connect_url}/connectors/{name}/config", timeout=10)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    config: dict[str, str] = answer.json()
    return config


def config_writes(stack: StackAddresses, name: str, since: dict[int, int]) -> int:
    """How many configs the worker has stored for connector ``name`` since ``since`` (where its
    config topic ended when the test started: the topic keeps every config of every earlier
    run): every PUT, even of the config it has already, is one more record keyed
    ``connector-NAME`` on its config topic."""
    key = f"connector-{name}".encode()
    return sum(
        message.key() == key and message.value() is not None  # a tombstone is not a config
        for message in read_all(stack, CONFIG_TOPIC, 0, timeout=30, since=since)
    )


def connector_names(stack: StackAddresses) -> list[str]:
    names: list[str] = httpx.get(f"{stack.connect_url}/connectors", timeout=10).json()
    return names


def delete_connector(stack: StackAddresses, name: str) -> None:
    httpx.delete(f"{stack.connect_url}/connectors/{name}", timeout=10)


def append_lines(path: Path, *lines: Any) -> None:
    with path.open("a", encoding="utf-8") as out:
        for line in lines:
            out.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def connector_decl(name: str, topic: str, export: Path, extra: str = "") -> str:
    return f"""
connector {name} {{
  class = "FileStreamSource"
  topic = "{topic}"
  config {{
    file = "{export}"
    {extra}
  }}
}}
"""


@pytest.fixture
def token() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


def test_a_declared_file_source_is_created_its_lines_start_wf_runs_and_edits_reach_it(
    connect: StackAddresses, tmp_path: Path, token: str
) -> None:
    config = lh_config(connect)
    configs_start = topic_ends(connect, CONFIG_TOPIC)

    def customer(wf: WorkflowThread) -> None:
        wf.declare_str("name")

    wf_spec = register_wf_spec(config, Workflow(f"cx-customer-{token}", customer)).id.name
    name, other = f"cx_{token}", f"cx_other_{token}"
    topic = f"cx-{token}"
    first, second = tmp_path / "export-1.jsonl", tmp_path / "export-2.jsonl"
    append_lines(first, {"id": "a1", "name": "Ann"}, {"id": "b2", "name": "Bo"})
    pipeline = f"""
pipeline customers {{
  from connector {name}
  run_wf "{wf_spec}" {{
    id = "cx-{token}-${{value.id}}"
    variables {{ name = value.name }}
  }}
}}
"""
    folder = write_pipelines(tmp_path / "lhp", connector_decl(name, topic, first) + pipeline)
    env = {"LHPIPE_CONNECT_OWNER": f"test-{token}"}
    try:
        with LhpipeRun(folder, env=env) as run:
            body = run.wait_ready(READY_TIMEOUT_SECONDS)
            status = body["pipelines"][f"connector:{name}"]
            assert status["ready"] and status["state"] == "running", status
            assert status["stats"]["connector"] == "RUNNING"
            deployed = connector_config(connect, name)
            assert deployed is not None
            assert deployed["connector.class"] == "FileStreamSource"
            assert deployed["file"] == str(first) and deployed["topic"] == topic
            assert deployed["lhpipe.owner"] == f"test-{token}"

            append_lines(first, *({"id": f"c{i}", "name": f"N{i}"} for i in range(3)))
            assert settled_wf_run_count(config, wf_spec, 5) == 5
            assert run.terminate() == 0
        assert config_writes(connect, name, configs_start) == 1
        # lhpipe stopped: the connector keeps running on the worker, and a restart with the
        # same declaration leaves it as it is (no PUT: the worker stored no config again).
        assert connector_config(connect, name) == deployed
        with LhpipeRun(folder, env=env) as run:
            status = run.wait_ready(READY_TIMEOUT_SECONDS)["pipelines"][f"connector:{name}"]
            assert status["ready"] and status["stats"]["connector"] == "RUNNING", status
            assert run.terminate() == 0
            assert f"connector {name}: created" not in run.log()
            assert f"connector {name}: config updated" not in run.log()
        assert connector_config(connect, name) == deployed
        assert config_writes(connect, name, configs_start) == 1

        # Edited: another file. The restarted lhpipe updates the connector's config.
        append_lines(second, {"id": "d1", "name": "Di"}, {"id": "e1", "name": "Ed"})
        write_pipelines(folder, connector_decl(name, topic, second, '"batch.size" = 50') + pipeline)
        with LhpipeRun(folder, env=env) as run:
            run.wait_ready(READY_TIMEOUT_SECONDS)
            deployed = connector_config(connect, name)
            assert deployed is not None
            assert deployed["file"] == str(second) and deployed["batch.size"] == "50"
            assert settled_wf_run_count(config, wf_spec, 7) == 7
            assert run.terminate() == 0
        assert config_writes(connect, name, configs_start) == 2  # the PUT of the edit, and no other

        # Deleted (another connector is declared instead): the restarted lhpipe removes it.
        write_pipelines(folder, connector_decl(other, f"{topic}-other", second))
        with LhpipeRun(folder, env=env) as run:
            run.wait_ready(READY_TIMEOUT_SECONDS)
            wait_until(
                lambda: name not in connector_names(connect), 30, f"connector {name} removed"
            )
            assert connector_config(connect, other) is not None
            assert run.terminate() == 0
            assert "no longer declared" in run.log()
        assert settled_wf_run_count(config, wf_spec, 7) == 7

        # The last declaration deleted: a restarted lhpipe with no connector at all still
        # removes the one its earlier run deployed.
        write_pipelines(folder, pipeline.replace(f"from connector {name}", f'from topic "{topic}"'))
        with LhpipeRun(folder, env=env) as run:
            run.wait_ready(READY_TIMEOUT_SECONDS)
            wait_until(
                lambda: other not in connector_names(connect), 30, f"connector {other} removed"
            )
            assert run.terminate() == 0
    finally:
        delete_connector(connect, name)
        delete_connector(connect, other)


def test_with_watch_an_edited_declaration_updates_and_a_deleted_one_removes_the_connector(
    connect: StackAddresses, tmp_path: Path, token: str
) -> None:
    name = f"cxw_{token}"
    topic = f"cxw-{token}"
    first, second = tmp_path / "lines-1.txt", tmp_path / "lines-2.txt"
    out = tmp_path / "out.jsonl"
    append_lines(first, "plain text", {"id": 1})
    pipeline = f"""
pipeline lines {{
  from connector {name}
  to file "{out}"
}}
"""
    idle = f"""
pipeline idle {{
  from topic "cxw-idle-{token}"
  to log
}}
"""
    folder = write_pipelines(tmp_path / "lhp", connector_decl(name, topic, first) + pipeline)

    def written() -> list[Any]:
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text().splitlines()]

    try:
        with LhpipeRun(
            folder, env={"LHPIPE_CONNECT_OWNER": f"test-{token}"}, args=["--watch"]
        ) as run:
            run.wait_ready(READY_TIMEOUT_SECONDS)
            # A line of text is its text, a line of JSON its JSON.
            wait_until(lambda: len(written()) >= 2, 60, "the first file's lines")
            assert written() == ["plain text", {"id": 1}]

            append_lines(second, "from the second file")
            write_pipelines(folder, connector_decl(name, topic, second) + pipeline)

            def updated() -> bool:
                deployed = connector_config(connect, name)
                return deployed is not None and deployed["file"] == str(second)

            wait_until(updated, 60, "the connector's config to name the second file")
            wait_until(lambda: len(written()) >= 3, 60, "the second file's line")
            assert written()[2] == "from the second file"

            write_pipelines(folder, idle)
            wait_until(
                lambda: name not in connector_names(connect), 60, f"connector {name} removed"
            )

            def unlisted() -> bool:
                answer = run.readyz()
                return answer is not None and f"connector:{name}" not in answer[1]["pipelines"]

            wait_until(unlisted, 30, "/readyz without the connector")
            assert run.terminate() == 0
    finally:
        delete_connector(connect, name)


def test_a_connector_the_worker_rejects_is_failed_in_readyz_and_lhpipe_keeps_running(
    connect: StackAddresses, tmp_path: Path, token: str
) -> None:
    name = f"cxbad_{token}"
    text = f"""
connector {name} {{
  class = "com.example.NoSuchConnector"
  topic = "cxbad-{token}"
}}
"""
    folder = write_pipelines(tmp_path / "lhp", text)
    with LhpipeRun(folder, env={"LHPIPE_CONNECT_OWNER": f"test-{token}"}) as run:

        def failed() -> dict[str, Any] | None:
            answer = run.readyz()
            if answer is None or answer[0] != 503:
                return None
            status: dict[str, Any] | None = answer[1]["pipelines"].get(f"connector:{name}")
            return status if status and status["state"] == "failed" else None

        status = wait_until(failed, 60, "the connector reported failed")
        assert status["ready"] is False
        assert status["detail"].startswith("rejected by Kafka Connect: PUT /connectors/")
        assert "com.example.NoSuchConnector" in status["detail"]
        assert connector_config(connect, name) is None
        assert run.process.poll() is None
        assert run.terminate() == 0
