"""``to file``: whole JSON lines, on disk before the record is acknowledged."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lhpipe.core.errors import PausedError, PermanentError, TransientError
from lhpipe.core.plans import FilePlan
from lhpipe.targets import to_file_sender as file_sender
from lhpipe.targets.to_file_sender import FileSender


def lines(path: Path) -> list[object]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def send_all(sender: FileSender, plans: list[FilePlan]) -> None:
    async def go() -> None:
        try:
            await asyncio.gather(*(sender.send(plan) for plan in plans))
        finally:
            await sender.close()

    asyncio.run(go())


def test_each_record_becomes_one_json_line_appended(tmp_path: Path) -> None:
    path = tmp_path / "out" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier":true}\n', encoding="utf-8")
    send_all(
        FileSender(),
        [
            FilePlan(str(path), {"id": "a", "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}),
            FilePlan(str(path), {"id": "b", "raw": b"\x00\x01"}),
        ],
    )
    assert lines(path) == [
        {"earlier": True},
        {"id": "a", "at": "2024-01-02T03:04:05.000Z"},
        {"id": "b", "raw": "AAE="},
    ]


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.jsonl"
    send_all(FileSender(), [FilePlan(str(path), "just a string")])
    assert lines(path) == ["just a string"]


def test_several_files_each_get_their_own_lines(tmp_path: Path) -> None:
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    send_all(FileSender(), [FilePlan(str(one), 1), FilePlan(str(two), 2), FilePlan(str(one), 3)])
    assert lines(one) == [1, 3]
    assert lines(two) == [2]


def test_concurrent_records_share_fsyncs_and_all_are_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_lines: list[int] = []
    path = tmp_path / "many.jsonl"

    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced_lines.append(len(path.read_bytes().splitlines()))
        real_fsync(fd)

    monkeypatch.setattr(file_sender.os, "fsync", recording_fsync)
    sender = FileSender()
    send_all(sender, [FilePlan(str(path), {"n": n}) for n in range(50)])
    assert sorted(line["n"] for line in lines(path)) == list(range(50))  # type: ignore[index]
    # Fewer fsyncs than records, and the last one (before `send` returned) saw every line.
    # close() adds one more.
    assert len(synced_lines) < 50
    assert synced_lines[-2] == 50


def test_send_returns_only_after_an_fsync_covering_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "one.jsonl"
    fsyncs: list[int] = []
    monkeypatch.setattr(file_sender.os, "fsync", fsyncs.append)

    async def go() -> int:
        sender = FileSender()
        await sender.send(FilePlan(str(path), {"a": 1}))
        return len(fsyncs)

    assert asyncio.run(go()) == 1


def test_a_full_disk_is_transient_and_leaves_no_half_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "full.jsonl"
    real_write = os.write
    full = [False]

    def write(fd: int, data: memoryview) -> int:
        if full[0]:
            real_write(fd, bytes(data[:5]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(file_sender.os, "write", write)

    async def go() -> None:
        sender = FileSender()
        await sender.send(FilePlan(str(path), {"n": 1}))
        full[0] = True
        with pytest.raises(TransientError) as caught:
            await sender.send(FilePlan(str(path), {"n": 2}))
        assert caught.value.code == "FILE_ENOSPC"
        full[0] = False
        await sender.send(FilePlan(str(path), {"n": 2}))
        await sender.close()

    asyncio.run(go())
    assert lines(path) == [{"n": 1}, {"n": 2}]


def test_a_failed_fsync_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(file_sender.os, "fsync", failing_fsync)

    async def go() -> None:
        await FileSender().send(FilePlan(str(tmp_path / "x.jsonl"), 1))

    with pytest.raises(TransientError) as caught:
        asyncio.run(go())
    assert caught.value.code == "FILE_EIO"


def test_a_folder_in_the_way_pauses_the_pipeline(tmp_path: Path) -> None:
    async def go(path: Path) -> None:
        await FileSender().send(FilePlan(str(path), 1))

    with pytest.raises(PausedError) as caught:
        asyncio.run(go(tmp_path))
    assert caught.value.code == "FILE_EISDIR"
    (tmp_path / "plain").write_text("", encoding="utf-8")
    with pytest.raises(PausedError):
        asyncio.run(go(tmp_path / "plain" / "below.jsonl"))


def test_a_value_without_json_form_is_permanent_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with pytest.raises(PermanentError) as caught:
        send_all(FileSender(), [FilePlan(str(path), {1: "not a string key"})])
    assert caught.value.code == "ENCODE"
    assert not path.exists()


def test_connected_until_closed(tmp_path: Path) -> None:
    sender = FileSender()
    assert sender.connected()
    asyncio.run(sender.close())
    assert not sender.connected()
