"""One text form of a timestamp: ``lhpipe.core.timestamps`` itself, then the same instant through
every way lhpipe turns a timestamp into text or JSON, which must all give the very same text."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from littlehorse.model import (
    LHStatus,
    OutputTopicRecord,
    UserTaskDefId,
    UserTaskRun,
    UserTaskRunId,
    VariableValue,
    WfRun,
    WfRunId,
    WfSpecId,
)

from lhpipe.clients.lh_values import LHType, coerce
from lhpipe.core import jsonenc
from lhpipe.core.errors import PermanentError
from lhpipe.core.evaluate import compile_expr
from lhpipe.core.logs import JsonLineFormatter
from lhpipe.core.plans import FilePlan, HttpPlan, LogPlan, TopicPlan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.timestamps import epoch_ms_text, timestamp_text
from lhpipe.kinds import load_texts
from lhpipe.runtime.delivery import Failure, envelope
from lhpipe.sources.lh_output_reader import EventDecoder
from lhpipe.targets.to_file_sender import FileSender
from lhpipe.targets.to_http_sender import HttpSender
from lhpipe.targets.to_log_sender import LogSender
from lhpipe.targets.to_topic_sender import TopicSender

# Microseconds on purpose: every path must cut them to the millisecond, none may round.
INSTANT = datetime(2024, 5, 1, 12, 0, 0, 123_999, tzinfo=UTC)
TEXT = "2024-05-01T12:00:00.123Z"
EPOCH_MS = 1_714_564_800_123  # INSTANT cut to the millisecond


# --- the function ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2024, 5, 1, 12, tzinfo=UTC), "2024-05-01T12:00:00.000Z"),
        (datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC), "2024-05-01T12:00:00.500Z"),
        # cut, not rounded: rounding would move to the next second, day and year
        (datetime(2024, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "2024-12-31T23:59:59.999Z"),
        (datetime(2024, 5, 1, 12, 0, 0, 999, tzinfo=UTC), "2024-05-01T12:00:00.000Z"),
        (datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T12:00:00.000Z"),
        (datetime(2024, 5, 1, 12), "2024-05-01T12:00:00.000Z"),  # naive: taken as UTC
        (datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC), "1969-12-31T23:59:59.999Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),  # four-digit year
    ],
)
def test_a_timestamp_is_utc_with_exactly_three_fractional_digits(
    moment: datetime, text: str
) -> None:
    assert timestamp_text(moment) == text


def test_epoch_milliseconds_read_as_the_same_text() -> None:
    assert epoch_ms_text(0) == "1970-01-01T00:00:00.000Z"
    assert epoch_ms_text(-1) == "1969-12-31T23:59:59.999Z"
    assert epoch_ms_text(1_000_999) == "1970-01-01T00:16:40.999Z"
    # integer arithmetic: a float of these milliseconds is not exact, the text is
    assert epoch_ms_text(EPOCH_MS) == TEXT == timestamp_text(INSTANT)


# --- every path gives the same text -----------------------------------------------------------


def _evaluate(expr: str, value: Any) -> Any:
    """``expr`` as a `let` of a checked pipeline reading values with a ``timestamp`` field."""
    source = (
        "schema S { at: timestamp }\n"
        'pipeline p {\n  from topic "t" { value = S }\n'
        f"  let x = {expr}\n  to log\n}}\n"
    )
    result = load_texts({"p.lhp": source})
    assert result.program is not None, [d.message for d in result.diagnostics]
    step = result.program.pipelines["p"].steps[0]
    evaluator = compile_expr(step.value, result.program)  # type: ignore[union-attr]
    return evaluator({"value": value, "key": None, "headers": {}})


def test_str_and_interpolation() -> None:
    assert _evaluate("str(value.at)", {"at": INSTANT}) == TEXT
    assert _evaluate('"at ${value.at}"', {"at": INSTANT}) == f"at {TEXT}"
    assert _evaluate("str(value)", {"at": INSTANT}) == json.dumps(
        {"at": TEXT}, separators=(",", ":")
    )


def test_to_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sender = FileSender()

    async def go() -> None:
        try:
            await sender.send(FilePlan(str(path), {"at": INSTANT}))
        finally:
            await sender.close()

    asyncio.run(go())
    assert json.loads(path.read_text(encoding="utf-8")) == {"at": TEXT}


def test_to_http() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200)

    async def go() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        sender = HttpSender(client)
        try:
            await sender.send(HttpPlan("https://x.example/", "POST", {}, {"at": INSTANT}))
        finally:
            await sender.close()
            await client.aclose()

    asyncio.run(go())
    assert [json.loads(body) for body in bodies] == [{"at": TEXT}]


class _Producer:
    """Keeps the values :class:`TopicSender` produces."""

    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        self.values.append(value)

    def connected(self) -> bool:
        return True


def test_to_topic() -> None:
    producer = _Producer()
    asyncio.run(TopicSender(producer).send(TopicPlan("t", None, {"at": INSTANT})))
    assert [json.loads(v or b"") for v in producer.values] == [{"at": TEXT}]


def test_to_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lhpipe.to_log")
    asyncio.run(LogSender().send(LogPlan({"at": INSTANT})))
    assert [r.getMessage() for r in caplog.records] == [
        json.dumps({"at": TEXT}, separators=(",", ":"))
    ]


def test_a_littlehorse_str_variable() -> None:
    assert coerce(INSTANT, LHType("STR")).str == TEXT
    assert json.loads(coerce({"at": INSTANT}, LHType("JSON_OBJ")).json_obj) == {"at": TEXT}


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def test_an_lh_output_event_and_its_payload() -> None:
    whole_second = datetime(2024, 5, 1, 12, tzinfo=UTC)
    wf_run = WfRun(
        id=WfRunId(id="r-1"),
        wf_spec_id=WfSpecId(name="w"),
        status=LHStatus.COMPLETED,
        start_time=_stamp(whole_second),
        end_time=_stamp(INSTANT),
    )
    record = OutputTopicRecord(timestamp=_stamp(INSTANT), wf_run=wf_run)
    event = EventDecoder().decode_value(record.SerializeToString())
    line = json.loads(jsonenc.dumps(event))
    assert (line["timestamp"], line["start_time"], line["end_time"]) == (
        TEXT,
        "2024-05-01T12:00:00.000Z",
        TEXT,
    )
    # protobuf's own JSON would say 12:00:00Z and 12:00:00.123999Z here
    assert line["payload"]["timestamp"] == TEXT
    assert line["payload"]["wfRun"]["startTime"] == "2024-05-01T12:00:00.000Z"
    assert line["payload"]["wfRun"]["endTime"] == TEXT
    assert _evaluate_event_text(event) == TEXT


def _evaluate_event_text(event: dict[str, Any]) -> Any:
    source = 'pipeline p {\n  from lh_output\n  let x = "${event.timestamp}"\n  to log\n}\n'
    result = load_texts({"p.lhp": source})
    assert result.program is not None, [d.message for d in result.diagnostics]
    step = result.program.pipelines["p"].steps[0]
    evaluator = compile_expr(step.value, result.program)  # type: ignore[union-attr]
    return evaluator({"value": event, "event": event, "key": None, "headers": {}})


def test_timestamps_nested_in_an_lh_output_payload() -> None:
    # A map of messages (UserTaskRun.results, VariableValue) holding a Timestamp.
    run = UserTaskRun(
        id=UserTaskRunId(wf_run_id=WfRunId(id="r-1"), user_task_guid="u-1"),
        user_task_def_id=UserTaskDefId(name="approve"),
        scheduled_time=_stamp(INSTANT),
    )
    run.results["decided_at"].CopyFrom(VariableValue(utc_timestamp=_stamp(INSTANT)))
    run.results["note"].CopyFrom(VariableValue(str="ok"))
    record = OutputTopicRecord(timestamp=_stamp(INSTANT), user_task_run=run)
    event = EventDecoder().decode_value(record.SerializeToString())
    payload = json.loads(jsonenc.dumps(event["payload"]))["userTaskRun"]
    assert payload["scheduledTime"] == TEXT
    assert payload["results"] == {"decided_at": {"utcTimestamp": TEXT}, "note": {"str": "ok"}}


def test_the_dead_letter_envelope() -> None:
    failure = Failure(
        error=PermanentError("no", code="X"),
        target="to log",
        attempts=1,
        first_attempt_ms=EPOCH_MS,
        last_attempt_ms=EPOCH_MS,
    )
    record = Record(origin=KafkaOrigin("t", 0, 1), key=None, value=b"{}")
    headers = dict(envelope(record, failure, "p"))
    assert headers["lhpipe.first.attempt"] == headers["lhpipe.last.attempt"] == TEXT.encode()


def test_lhpipes_json_log_lines() -> None:
    record = logging.LogRecord("lhpipe.x", logging.INFO, __file__, 1, "m", None, None)
    record.created = INSTANT.timestamp()
    record.event = {"at": INSTANT}
    line = json.loads(JsonLineFormatter().format(record))
    assert (line["time"], line["at"]) == (TEXT, TEXT)
