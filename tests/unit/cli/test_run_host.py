"""`lhpipe run --host`: handed to the engine, and to the workers through LHPIPE_HOST (the
address really bound: test_run_redaction.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lhpipe.commands.run
import lhpipe.commands.workers
from lhpipe.cli import HOST_VARIABLE, main


def test_host_is_handed_to_the_engine_and_to_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    engine: list[dict[str, object]] = []
    parent: list[str | None] = []

    def fake_run_engine(paths: list[str], **options: object) -> int:
        engine.append(options)
        return 0

    def fake_run_workers(paths: list[str], **options: object) -> int:
        parent.append(os.environ.get(HOST_VARIABLE))  # what the workers will inherit
        return 0

    monkeypatch.setattr(lhpipe.commands.run, "run_engine", fake_run_engine)
    monkeypatch.setattr(lhpipe.commands.workers, "run_workers", fake_run_workers)
    monkeypatch.setenv(HOST_VARIABLE, "")  # restored afterwards: main() sets it for the workers
    monkeypatch.delenv(HOST_VARIABLE)
    assert main(["run", "here/", "--host", "127.0.0.1"]) == 0
    assert main(["run", "here/", "--workers", "2", "--port", "9000", "--host", "::1"]) == 0
    assert engine == [{"port": 8080, "watch": False, "host": "127.0.0.1"}]
    assert parent == ["::1"]


def test_without_host_the_engine_binds_lhpipe_host_else_every_interface(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bound: list[str] = []

    async def fake_serve(*args: object, host: str, **options: object) -> int:
        bound.append(host)
        return 0

    monkeypatch.setattr(lhpipe.commands.run, "_serve", fake_serve)
    path = tmp_path / "p.lhp"
    path.write_text('pipeline p {\n  from topic "in"\n  to log\n}\n', encoding="utf-8")
    monkeypatch.delenv(HOST_VARIABLE, raising=False)
    assert lhpipe.commands.run.run_engine([str(path)]) == 0
    monkeypatch.setenv(HOST_VARIABLE, "127.0.0.1")
    assert lhpipe.commands.run.run_engine([str(path)]) == 0
    assert lhpipe.commands.run.run_engine([str(path)], host="::1") == 0
    assert bound == ["0.0.0.0", "127.0.0.1", "::1"]
