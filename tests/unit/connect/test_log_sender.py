"""``to log``: one line per record with the value as JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import pytest

from lhpipe.core.errors import PermanentError
from lhpipe.core.plans import FilePlan, LogPlan
from lhpipe.targets.to_log_sender import LOGGER_NAME, LogSender


def test_each_record_is_one_info_line_with_the_value_as_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # a quiet root must not swallow the line
    try:
        sender = LogSender()
        value = {"id": "a", "at": datetime(2024, 3, 1, tzinfo=UTC), "tags": ["x"]}
        asyncio.run(sender.send(LogPlan(value)))
        asyncio.run(sender.send(LogPlan("second")))
    finally:
        root.setLevel(level)
    records = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    assert json.loads(records[0].getMessage()) == {
        "id": "a",
        "at": "2024-03-01T00:00:00.000Z",
        "tags": ["x"],
    }
    assert records[1].getMessage() == '"second"'


def test_a_value_without_json_form_is_permanent() -> None:
    with pytest.raises(PermanentError) as caught:
        asyncio.run(LogSender().send(LogPlan({("tuple", "key"): 1})))
    assert caught.value.code == "ENCODE"


def test_the_sender_refuses_other_plans() -> None:
    with pytest.raises(TypeError):
        asyncio.run(LogSender().send(FilePlan("x", 1)))
