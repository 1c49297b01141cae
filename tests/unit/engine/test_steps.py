"""The names a record's expressions start with, and `where`/`let` applied in order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lhpipe.check.program import PipelineInfo, Program
from lhpipe.core.errors import ExpressionError
from lhpipe.core.record import KafkaOrigin, Record, WebhookOrigin
from lhpipe.core.steps import compile_steps, initial_env
from lhpipe.kinds import load_texts

RECORD = Record(
    origin=KafkaOrigin("orders", 2, 17),
    key=b"k-1",
    value=b"{}",
    headers=(("trace", b"a"), ("trace", b"b"), ("empty", None), ("bin", b"\xff")),
    timestamp_ms=1_714_566_600_123,
)


def pipeline(body: str, source: str = 'from topic "orders"') -> tuple[PipelineInfo, Program]:
    result = load_texts({"p.lhp": f"pipeline p {{\n  {source}\n  {body}\n  to log\n}}\n"})
    assert result.program is not None, [d.message for d in result.diagnostics]
    return result.program.pipelines["p"], result.program


def test_initial_env_of_a_kafka_record() -> None:
    env = initial_env(RECORD, "k-1", {"a": 1})
    assert env == {
        "value": {"a": 1},
        "key": "k-1",
        "headers": {"trace": "b", "bin": "\ufffd"},  # last value wins, text view
        "record": {
            "topic": "orders",
            "partition": 2,
            "offset": 17,
            "timestamp": datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC),
        },
    }


def test_a_webhook_delivery_has_no_record_coordinates() -> None:
    direct = Record(origin=WebhookOrigin("hook", "d-1"), key=None, value=b"{}")
    assert "record" not in initial_env(direct, None, {})


def test_lh_output_sees_event() -> None:
    event = {"kind": "wf_run", "status": "COMPLETED"}
    assert initial_env(RECORD, None, {"raw": 1}, event=event)["event"] == event
    # Only a source that gives an event has one (`lhpipe test` gives the value as the event).
    assert "event" not in initial_env(RECORD, None, {"raw": 1})


def run(body: str, value: Any) -> dict[str, Any] | None:
    info, program = pipeline(body)
    return compile_steps(info, program)(initial_env(RECORD, "k-1", value))


def test_lets_apply_in_order_and_see_earlier_lets() -> None:
    env = run('let a = value.n * 2\n  let b = "${a}-${key}"', {"n": 4})
    assert env is not None
    assert (env["a"], env["b"]) == (8, "8-k-1")


def test_where_drops_and_stops_evaluating() -> None:
    # The `let` after the failing `where` would raise (missing field): it never runs.
    assert run("where value.n > 5\n  let x = value.missing", {"n": 4}) is None
    env = run("where value.n > 5\n  let x = value.n", {"n": 6})
    assert env is not None
    assert env["x"] == 6


def test_where_needs_a_boolean_at_run_time() -> None:
    with pytest.raises(ExpressionError) as caught:
        run("where value.flag", {"flag": None})
    assert caught.value.message == "value.flag: `where` needs a boolean, found null"


def test_dropped_by_names_the_where() -> None:
    info, program = pipeline("where value.n > 0\n  where value.n > 5")
    steps = compile_steps(info, program)
    where = steps.dropped_by(initial_env(RECORD, None, {"n": 3}))
    assert where is info.steps[1]
    assert steps.dropped_by(initial_env(RECORD, None, {"n": 9})) is None
