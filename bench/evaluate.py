"""Benchmark: the engine's work on one record, against the same work written by hand.

In one process, without network, on the example pipelines (``pipelines/``):

- evaluation: ``start_kyc`` (a ``where`` of two comparisons, a ``let`` with an interpolated
  string, ``run_wf`` with three variables, one through ``lower``, and the id from the key) as
  the engine runs it (``initial_env``, the compiled steps, the planner: the plan and its id
  check), against a Python function doing the same by hand: the same comparisons, the same
  string, the same id check, the same plan object. Both must give the same plan.
- decoding: a JSON value through the source's decoder against ``orjson.loads``; a ``Payment``
  (``.avsc``, 6 fields) in the registry wire format through the decoder against
  ``fastavro.schemaless_reader`` of the body.

Each figure is the best of ``--repeat`` timings of ``--number`` calls, the two sides of a
line timed in turn so that they see the same load. Prints the time per record of both and
their ratio. docs/runtime.md reports figures measured this way.

Run: ``.venv/bin/python bench/evaluate.py [--number N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path
from typing import Any

import fastavro
import orjson
from _timing import best_us, plain, show, show_header

from lhpipe.check.program import Program
from lhpipe.check.rules import WF_RUN_ID
from lhpipe.core.avro.wire import WIRE_HEADER, WIRE_HEADER_SIZE
from lhpipe.core.decode import Decoder
from lhpipe.core.plans import Plan, RunWfPlan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.steps import compile_steps, initial_env
from lhpipe.kinds import compile_planner, load

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"

APPLICANT = {
    "applicant_id": "ann-1",
    "email": "Ann@Example.com",
    "name": "Ann",
    "country": "DE",
    "age": 30,
    "note": None,
    "tags": ["vip"],
    "meta": None,
}
KEY = "ann-1"
RECORD = Record(KafkaOrigin("kyc-applicants", 0, 1), KEY.encode(), b"", (), 1714566600000)

PAYMENT = {
    "payment_id": "pay-1",
    "order_id": "order-7",
    "customer_id": "cus-3",
    "amount_cents": 1999,
    "currency": "EUR",
    "status": "SETTLED",
}


def start_kyc_by_hand(value: dict[str, Any], key: str) -> RunWfPlan | None:
    """``pipeline start_kyc`` of pipelines/kyc.lhp, written as plain Python."""
    if not (value["age"] >= 18 and value["country"] != "XX"):
        return None
    full_name = f"{value['name']} <{value['email']}>"
    if WF_RUN_ID.fullmatch(key) is None:
        raise ValueError(f"{key!r} is not a valid LittleHorse id")
    return RunWfPlan(
        "know-your-customer",
        key,
        {"full_name": full_name, "email": value["email"].lower(), "country": value["country"]},
    )


async def bench_evaluation(program: Program, number: int, repeat: int) -> None:
    pipeline = program.pipelines["start_kyc"]
    steps = compile_steps(pipeline, program)
    planner = compile_planner(pipeline.targets[0], pipeline, program)

    def by_lhpipe() -> Plan | None:
        env = steps(initial_env(RECORD, KEY, APPLICANT, pipeline))
        return None if env is None else planner(env, RECORD)

    if by_lhpipe() != start_kyc_by_hand(APPLICANT, KEY):
        raise SystemExit("start_kyc: the engine and the hand-written function disagree")
    lhpipe_us, bare_us = await best_us(
        number, repeat, plain(by_lhpipe), plain(lambda: start_kyc_by_hand(APPLICANT, KEY))
    )
    show("start_kyc: env, steps, plan", lhpipe_us, "the same by hand", bare_us)


async def bench_decoding(program: Program, number: int, repeat: int) -> None:
    json_decoder = Decoder(program.pipelines["legacy_payments"].source, program)
    raw_json = orjson.dumps(PAYMENT)
    if json_decoder.decode_value(raw_json) != orjson.loads(raw_json):
        raise SystemExit("the JSON decoder does not give what orjson gives")
    lhpipe_us, bare_us = await best_us(
        number,
        repeat,
        plain(lambda: json_decoder.decode_value(raw_json)),
        plain(lambda: orjson.loads(raw_json)),
    )
    show(f"JSON value ({len(raw_json)} bytes)", lhpipe_us, "orjson.loads", bare_us)

    avro_decoder = Decoder(program.pipelines["payments"].source, program)
    schema = avro_decoder.reader_schema
    out = io.BytesIO()
    out.write(WIRE_HEADER.pack(0, 1))
    fastavro.schemaless_writer(out, schema, PAYMENT)
    raw_avro = out.getvalue()

    def by_fastavro() -> Any:
        body = io.BytesIO(raw_avro)
        body.seek(WIRE_HEADER_SIZE)
        return fastavro.schemaless_reader(body, schema, None)

    if avro_decoder.decode_value(raw_avro, schema) != by_fastavro():
        raise SystemExit("the Avro decoder does not give what fastavro gives")
    lhpipe_us, bare_us = await best_us(
        number,
        repeat,
        plain(lambda: avro_decoder.decode_value(raw_avro, schema)),
        plain(by_fastavro),
    )
    show(f"Avro Payment ({len(raw_avro)} bytes)", lhpipe_us, "fastavro.schemaless_reader", bare_us)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=50_000, help="records per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings; the best is kept")
    args = parser.parse_args()
    loaded = load([PIPELINES])
    if loaded.program is None:
        raise SystemExit(f"{PIPELINES} does not check clean: run `lhpipe lint {PIPELINES}`")
    print(f"best of {args.repeat} timings of {args.number} records each, the sides in turn")
    show_header()
    asyncio.run(bench_evaluation(loaded.program, args.number, args.repeat))
    asyncio.run(bench_decoding(loaded.program, args.number, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
