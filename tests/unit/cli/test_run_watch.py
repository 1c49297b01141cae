"""`lhpipe run --watch` as a real process, on webhooks that need no service (direct mode, `to
log`): saved edits, added and deleted files and a broken save, seen over HTTP; and what the
watcher counts as a change."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from free_ports import free_port
from waiting import wait_for

from lhpipe.engine.watch import is_watched, watch_roots
from lhpipe.kinds import load
from lhpipe.settings import load_settings

LHPIPE = str(Path(sys.executable).with_name("lhpipe"))


def webhook(name: str, path: str) -> str:
    return (
        f'webhook {name} {{\n  path = "{path}"\n  auth = none\n}}\n\n'
        f"pipeline {name}_run {{\n  from webhook {name}\n  to log\n}}\n"
    )


class Engine:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log_path = folder.parent / "lhpipe.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [LHPIPE, "run", str(folder), "--watch", "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def status(self, path: str) -> int:
        return self.http.post(path, json={"x": 1}).status_code

    def readyz(self) -> dict[str, Any] | None:
        try:
            response = self.http.get("/readyz")
        except httpx.TransportError:
            return None
        body: dict[str, Any] = response.json()
        return body

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def reload_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            if line.startswith("{") and '"event": "reload"' in line:
                events.append(json.loads(line))
        return events

    def close(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            self.http.close()
            self._log.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "a.lhp").write_text(webhook("hook_a", "/hooks/a"), encoding="utf-8")
    running = Engine(folder)
    try:
        # Ready, not merely answering: while starting, /readyz says 503 and the routes are not
        # installed yet.
        wait_for(lambda: (running.readyz() or {}).get("ready"), "lhpipe to be ready")
        yield running, folder
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(30)


def test_saved_changes_are_served_without_a_restart_and_a_broken_save_changes_nothing(
    engine: tuple[Engine, Path],
) -> None:
    run, folder = engine
    first = run.readyz()
    assert first is not None
    program = first["program"]
    assert re.fullmatch(r"[0-9a-f]{16}", program)
    assert run.status("/hooks/a") == 202

    # An edited path: the new route answers, the old one is gone, the process is the same.
    (folder / "a.lhp").write_text(webhook("hook_a", "/hooks/a2"), encoding="utf-8")
    wait_for(lambda: run.status("/hooks/a2") == 202, "the edited route")
    assert run.status("/hooks/a") == 404

    # A file added later is watched too.
    (folder / "b.lhp").write_text(webhook("hook_b", "/hooks/b"), encoding="utf-8")
    wait_for(lambda: run.status("/hooks/b") == 202, "the added file's route")
    after_add = run.readyz()
    assert after_add is not None and after_add["program"] != program

    # A broken save: diagnostics in lint's format, a failed reload, everything still served.
    (folder / "a.lhp").write_text(
        webhook("hook_a", "/hooks/a3") + "\npipeline broken {\n", encoding="utf-8"
    )
    wait_for(
        lambda: any(e["outcome"] == "failed" for e in run.reload_events()), "the failed reload"
    )
    log = run.log()
    assert re.search(rf"^{re.escape(str(folder / 'a.lhp'))}:\d+:\d+: error\[LHP\d+\]", log, re.M)
    assert run.status("/hooks/a2") == 202
    assert run.status("/hooks/a3") == 404
    after_broken = run.readyz()
    assert after_broken is not None and after_broken["program"] == after_add["program"]

    # Fixed, and a file deleted: its webhook stops being served.
    (folder / "a.lhp").write_text(webhook("hook_a", "/hooks/a3"), encoding="utf-8")
    wait_for(lambda: run.status("/hooks/a3") == 202, "the fixed file's route")
    (folder / "b.lhp").unlink()
    wait_for(lambda: run.status("/hooks/b") == 404, "the deleted file's route to go")
    # Its reload event is logged after the routes changed and after its metrics.
    wait_for(
        lambda: run.reload_events()[-1].get("webhooks", {}).get("removed") == ["hook_b"],
        "the deleting reload's event",
    )

    metrics = run.http.get("/metrics").text
    assert 'lhpipe_reloads_total{outcome="failed"} 1.0' in metrics
    assert re.search(r'lhpipe_reloads_total\{outcome="ok"\} [4-9]\.0', metrics)
    assert 'lhpipe_reload_changes_total{change="added",kind="webhook"} 1.0' in metrics
    events = run.reload_events()
    ok = [e for e in events if e["outcome"] == "ok"]
    assert ok[0]["webhooks"]["changed"] == ["hook_a"]
    assert ok[0]["pipelines"]["unchanged"] == ["hook_a_run"]
    # Each event's duration_ms is what the histogram observed, in ms to a tenth.
    observed = {
        name: float(value)
        for name, value in re.findall(
            r"^lhpipe_reload_duration_seconds_(sum|count) (\S+)$", metrics, re.M
        )
    }
    assert observed["count"] == len(events)
    durations = [e["duration_ms"] for e in events]
    assert all(isinstance(d, float) for d in durations)
    assert sum(durations) == pytest.approx(observed["sum"] * 1000, abs=0.05 * len(events))
    assert ok[-1]["webhooks"]["removed"] == ["hook_b"]
    assert run.close() == 0


def test_only_pipeline_schema_and_settings_files_count() -> None:
    assert is_watched("/p/orders.lhp")
    assert is_watched("/p/schemas/order.avsc")
    assert is_watched("/p/lhpipe.toml")
    assert not is_watched("/p/.orders.lhp.swp")
    assert not is_watched("/p/orders.lhp~")
    assert not is_watched("/p/4913")
    assert not is_watched("/p/notes.md")


def test_the_watched_folders_cover_paths_settings_and_schema_files(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines"
    (pipelines / "nested").mkdir(parents=True)
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "order.avsc").write_text(
        '{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}',
        encoding="utf-8",
    )
    (pipelines / "nested" / "p.lhp").write_text(
        'schema Order from "../../schemas/order.avsc"\n\n'
        'pipeline p {\n  from topic "t" { value = Order }\n  to log\n}\n',
        encoding="utf-8",
    )
    (pipelines / "lhpipe.toml").write_text('LHC_API_HOST = "127.0.0.1"\n', encoding="utf-8")
    result = load([pipelines])
    assert result.program is not None, result.diagnostics
    settings = load_settings([pipelines])
    roots = watch_roots([str(pipelines)], result.program, settings)
    assert roots == [pipelines.resolve(), schemas.resolve()]
