"""Benchmark: decoding LittleHorse output-topic records into ``event``, against parsing them.

In one process, without network: the records one WfRun leaves on the output topic (a
``wf_run`` RUNNING, two PUBLIC ``variable`` records, a ``task_run`` with its output, the
``wf_run`` COMPLETED), each turned into ``event`` by the ``lh_output`` source's decoder
(protobuf parse, the event, the WfRun memory), against ``OutputTopicRecord.FromString`` alone;
then the same with ``event.payload`` read (its protobuf JSON made), against
``MessageToDict`` of the parsed record.

Each figure is the best of ``--repeat`` timings of ``--number`` rounds over the five records,
the two sides timed in turn; it prints the time per record and the ratio. docs/lh_output.md
reports figures measured this way.

Run: ``.venv/bin/python bench/lh_output.py [--number N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio

from _timing import best_us, plain, show, show_header
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from littlehorse.model import (
    LHStatus,
    OutputTopicRecord,
    TaskAttempt,
    TaskDefId,
    TaskRun,
    TaskRunId,
    TaskStatus,
    ThreadRun,
    Variable,
    VariableId,
    VariableValue,
    WfRun,
    WfRunId,
    WfSpecId,
)

from lhpipe.sources.lh_output_reader import EventDecoder

RUN = WfRunId(id="0f6c2d8e4b7a4f21a3c95e8d1b2a7c64")
SPEC = WfSpecId(name="know-your-customer")


def _wf_run(status: int) -> OutputTopicRecord:
    wf_run = WfRun(
        id=RUN,
        wf_spec_id=SPEC,
        status=status,
        start_time=Timestamp(seconds=1_700_000_000),
        thread_runs=[ThreadRun(wf_spec_id=SPEC, status=status, thread_spec_name="entrypoint")],
    )
    if status == LHStatus.COMPLETED:
        wf_run.end_time.CopyFrom(Timestamp(seconds=1_700_000_002))
    return OutputTopicRecord(timestamp=Timestamp(seconds=1_700_000_002), wf_run=wf_run)


def _variable(name: str, value: VariableValue) -> OutputTopicRecord:
    return OutputTopicRecord(
        timestamp=Timestamp(seconds=1_700_000_001),
        variable=Variable(id=VariableId(wf_run_id=RUN, name=name), value=value, wf_spec_id=SPEC),
    )


def records() -> list[bytes]:
    task_run = TaskRun(
        id=TaskRunId(wf_run_id=RUN, task_guid="0-1"),
        task_def_id=TaskDefId(name="kyc-request-verification"),
        attempts=[
            TaskAttempt(
                status=TaskStatus.TASK_SUCCESS,
                start_time=Timestamp(seconds=1_700_000_001),
                end_time=Timestamp(seconds=1_700_000_001, nanos=500_000_000),
                output=VariableValue(str="sent"),
            )
        ],
        status=TaskStatus.TASK_SUCCESS,
    )
    return [
        _wf_run(LHStatus.RUNNING).SerializeToString(),
        _variable("email", VariableValue(str="ann@example.com")).SerializeToString(),
        _variable("profile", VariableValue(json_obj='{"age": 30, "tags": []}')).SerializeToString(),
        OutputTopicRecord(task_run=task_run).SerializeToString(),
        _wf_run(LHStatus.COMPLETED).SerializeToString(),
    ]


async def bench(number: int, repeat: int) -> None:
    raw = records()
    decoder = EventDecoder()
    parsed = [OutputTopicRecord.FromString(r) for r in raw]

    def decode() -> None:
        for r in raw:
            decoder.decode_value(r)

    def parse() -> None:
        for r in raw:
            OutputTopicRecord.FromString(r)

    def decode_with_payload() -> None:
        for r in raw:
            dict(decoder.decode_value(r)["payload"])

    def to_json() -> None:
        for message in parsed:
            MessageToDict(message)

    per = len(raw)
    decode_us, parse_us = await best_us(number, repeat, plain(decode), plain(parse))
    show(
        "event (payload not read)", decode_us / per, "OutputTopicRecord.FromString", parse_us / per
    )
    payload_us, json_us = await best_us(number, repeat, plain(decode_with_payload), plain(to_json))
    show("event with payload read", payload_us / per, "MessageToDict", json_us / per)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    show_header()
    asyncio.run(bench(args.number, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
