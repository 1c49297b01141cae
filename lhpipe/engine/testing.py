"""`lhpipe test`: run the ``test`` blocks of a program with the engine's own code.

Each test builds the record its ``given`` block describes, runs it through the same path a
Kafka record takes (decode, :func:`~lhpipe.core.steps.initial_env`, the ``where``/``let``
steps, every target's planner) and compares the plans with its ``expect`` blocks. Nothing is
sent: the planners say what the targets would send.

* The given ``value`` is evaluated, then encoded as the source would receive it (JSON text for
  ``json``, UTF-8 for ``string``, the registry wire format for an inline or ``.avsc`` schema,
  whose Avro writer fills in defaults) and decoded again by the source's
  :class:`~lhpipe.core.decode.Decoder`. A direct-mode webhook's body arrives as JSON in a
  request, not from Kafka: it is checked against the webhook's schema as the Gateway checks it
  (:class:`~lhpipe.gateway.validate.SchemaBody`). A schema ``from registry`` takes the
  value as it is.
* A ``timestamp`` field may be given as ISO-8601 text or epoch milliseconds (the checker allows
  it there only); the Avro writer and the webhook body check turn it into a timestamp.
* For ``from lh_output`` the given value is also ``event``; the source's ``kinds`` and
  ``wf_spec`` filter it as at run time (:func:`lhpipe.sources.lh_output.lh_output_filter`).
* The record comes from partition 0, offset 0 of the source's topic (``lh_output`` and
  sources without a topic use the source kind as the topic name), with the current time as
  its timestamp; a direct-mode webhook delivery has the webhook id ``test``; a polled item
  has the id its poll block's ``id`` gives (generated ids are ``<pipeline>-<item id>``).
* ``expect TARGET { ... }`` compares only the settings it writes, each as a whole value: a
  record or map (``variables``, ``content``...) must have exactly the fields written, and
  differences are listed field by field. ``expect nothing`` passes when a ``where`` drops the
  record. Any error on the way (decoding, an expression, a bad id) fails the test.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lhpipe.check.program import PipelineInfo, Program, SourceInfo, TestInfo, WebhookInfo
from lhpipe.core.avro.wire import WIRE_HEADER_SIZE
from lhpipe.core.decode import Decoder, avro_writer_converter
from lhpipe.core.errors import DeliveryError
from lhpipe.core.evaluate import compile_expr, describe, json_text, render_text, values_equal
from lhpipe.core.plans import Plan
from lhpipe.core.record import Record
from lhpipe.core.steps import compile_steps, initial_env
from lhpipe.gateway.validate import BodyRejected, SchemaBody
from lhpipe.kinds import SOURCES, TARGETS
from lhpipe.runtime.kind import compile_planner
from lhpipe.syntax import ast
from lhpipe.syntax.formatter import format_expr, target_words

__test__ = False  # not a pytest module, despite its name

#: The schema id test records carry in the wire format (never looked up).
TEST_SCHEMA_ID = 1


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """One test's result: ``problems`` is empty when it passed; ``location`` is
    ``file:line`` of the test."""

    title: str
    location: str
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def run_tests(program: Program, *, clock: Callable[[], float] = time.time) -> list[TestOutcome]:
    """Run every test of ``program``, in declaration order. ``clock`` (unix seconds) gives
    the records' timestamp."""
    return [run_test(test, program, clock=clock) for test in program.tests.values()]


def run_test(
    test: TestInfo, program: Program, *, clock: Callable[[], float] = time.time
) -> TestOutcome:
    """Run one test."""
    span = test.decl.span
    location = f"{span.file}:{span.line}"
    pipeline = program.pipelines[test.pipeline]
    try:
        problems = _Run(test, pipeline, program, clock).problems()
    except _GivenError as exc:
        problems = [f"the given record cannot be built: {exc}"]
    except DeliveryError as exc:
        # What the running pipeline would do with this record instead of sending it.
        problems = [f"{exc.error_class} error ({exc.code}): {exc.message}"]
    return TestOutcome(test.title, location, tuple(problems))


def format_report(outcomes: list[TestOutcome], *, color: bool = False) -> str:
    """A line per test (``PASS title`` / ``FAIL title``, each failure's problems indented
    under it), then ``N passed, N failed`` alone on the last line."""
    green, red, reset = ("\033[32m", "\033[31m", "\033[0m") if color else ("", "", "")
    lines: list[str] = []
    for outcome in outcomes:
        if outcome.passed:
            lines.append(f"{green}PASS{reset} {outcome.title}")
            continue
        lines.append(f"{red}FAIL{reset} {outcome.title}  ({outcome.location})")
        lines.extend(f"    {problem}" for problem in outcome.problems)
    passed = sum(1 for o in outcomes if o.passed)
    if lines:
        lines.append("")
    lines.append(f"{passed} passed, {len(outcomes) - passed} failed")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# One test
# ---------------------------------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        test: TestInfo,
        pipeline: PipelineInfo,
        program: Program,
        clock: Callable[[], float],
    ) -> None:
        self.test = test
        self.pipeline = pipeline
        self.program = program
        self.clock = clock

    def given(self, name: str) -> Any:
        expr = self.test.given.get(name)
        return None if expr is None else compile_expr(expr, self.program)({})

    def problems(self) -> list[str]:
        record, key, value = self._record()
        kind = SOURCES[self.pipeline.source.kind]
        env = initial_env(record, key, value, event=value if kind.check.event else None)
        steps = compile_steps(self.pipeline, self.program, kind.filter(self.pipeline.source))
        expects = self.test.expects
        if not steps.kept_by_source(env):
            if not expects:
                return []
            return ["the event was left out by the source's `kinds` / `wf_spec`"]
        dropped_by = steps.dropped_by(env)
        if dropped_by is not None:
            if not expects:
                return []
            return [f"the record was dropped by `where {format_expr(dropped_by.condition)}`"]
        plans = []
        for target in self.pipeline.targets:
            definition = TARGETS[target.kind]
            plan = compile_planner(definition, target, self.pipeline, self.program)(env, record)
            definition.verify(plan)
            plans.append((target, plan))
        if not expects:
            would = ", ".join(target_words(t.kind, t.name) for t, _ in plans)
            return [f"expected nothing, but the record was kept: it would go to {would}"]
        problems: list[str] = []
        for expect in expects:
            problems.extend(self._compare(expect, plans))
        return problems

    # --- the record -----------------------------------------------------------------------

    def _record(self) -> tuple[Record, Any, Any]:
        source = self.pipeline.source
        given = SOURCES[source.kind].given(
            self.pipeline, self.program, self.given("key"), self.given("value")
        )
        key, value, webhook = given.key, given.value, given.request
        headers = tuple(
            (name.removeprefix("headers."), _header_bytes(self.given(name)))
            for name in self.test.given
            if name.startswith("headers.")
        )
        decoder = Decoder(source, self.program)
        direct = webhook is not None
        raw_key = None if key is None else _encode_key(key, source.key)
        origin = given.origin
        if webhook is not None:
            value = self._direct_body(webhook, value)
        encode = self._value_encoder(source, decoder, direct)
        raw_value = None if encode is None or value is None else encode(value)
        record = Record(
            origin=origin,
            key=raw_key,
            value=raw_value,
            headers=headers,
            timestamp_ms=int(self.clock() * 1000),
        )
        if not direct:
            key = decoder.decode_key(raw_key)
        if encode is not None:
            value = decoder.decode_value(raw_value)
        return record, key, value

    def _direct_body(self, webhook: WebhookInfo, value: Any) -> Any:
        """A direct-mode webhook's body as its request gives it: JSON checked against the
        webhook's schema, which fills in defaults and reads timestamps written as text or
        epoch milliseconds. A ``json`` or ``bytes`` body, or a registry schema, is taken as
        it is."""
        schema = self.program.schemas.get(webhook.body)
        if value is None or schema is None or schema.avro is None:
            return value
        body = json_text(value).encode("utf-8")
        try:
            return SchemaBody(webhook.body, schema.avro).decode("application/json", body)
        except BodyRejected as exc:
            raise _GivenError(exc.problem.detail) from None

    def _value_encoder(
        self, source: SourceInfo, decoder: Decoder, direct: bool
    ) -> Callable[[Any], bytes] | None:
        """How the source would have received the value; ``None``: it is taken as is."""
        if direct:
            return None
        if source.value == "json":
            return lambda value: json_text(value).encode("utf-8")
        if source.value in ("string", "bytes"):
            return _text_bytes
        if decoder.reader_schema is None:
            return None  # a registry schema: not known offline
        return _AvroEncoder(decoder.reader_schema, source.value)

    # --- comparing ------------------------------------------------------------------------

    def _compare(self, expect: ast.Target, plans: list[tuple[Any, Plan]]) -> list[str]:
        wanted = expect.arg_text
        label = target_words(expect.kind, wanted)
        plan = _find_plan(expect, wanted, plans)
        if plan is None:
            return [f"{label}: the pipeline has no such target"]
        fields = TARGETS[expect.kind].compares
        problems: list[str] = []
        for entry in expect.block.entries if expect.block is not None else ():
            expected = self._expected(entry)
            actual = getattr(plan, fields[entry.key.name])
            if entry.key.name == "headers" and isinstance(expected, dict):
                # Headers are text on the wire: `n = 3` means the text "3".
                expected = {k: render_text(v) for k, v in expected.items()}
            differences: list[str] = []
            _diff(entry.key.name, expected, actual, differences)
            problems.extend(f"{label}: {d}" for d in differences)
        return problems

    def _expected(self, entry: ast.Entry) -> Any:
        if isinstance(entry, ast.NestedBlock):
            return {
                inner.key.name: compile_expr(inner.value, self.program)({})
                for inner in entry.block.entries
                if isinstance(inner, ast.Setting)
            }
        return compile_expr(entry.value, self.program)({})


def _find_plan(
    expect: ast.Target, wanted: str | None, plans: list[tuple[Any, Plan]]
) -> Plan | None:
    # By the name the target is declared with (a `to http` target's is its URL as written; the
    # checker, LHP501, lets an `expect` name declared targets only), never by a rendered URL:
    # an earlier target whose URL renders to a later one's declared URL would be taken for it.
    for target, plan in plans:
        if target.kind == expect.kind and (wanted is None or target.name == wanted):
            return plan
    return None


def _text_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise _GivenError(f"the given value is {describe(value)}: the source reads text or bytes")


def _header_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    text = render_text(value)
    if text is None:
        raise _GivenError(f"a given header is {describe(value)}, not text")
    return text.encode("utf-8")


def _encode_key(key: Any, key_format: str) -> bytes:
    if key_format == "json":
        return json_text(key).encode("utf-8")
    return _text_bytes(key)


class _GivenError(Exception):
    """A ``given`` block that cannot become a record of its source."""


class _AvroEncoder:
    """Writes a value in the registry wire format with the pipeline's schema."""

    def __init__(self, schema: Any, name: str) -> None:
        self.schema = schema
        self.name = name
        self.convert = avro_writer_converter(schema)

    def __call__(self, value: Any) -> bytes:
        import fastavro

        if self.convert is not None:
            value = self.convert(value)
        out = io.BytesIO()
        out.write(b"\x00" + TEST_SCHEMA_ID.to_bytes(WIRE_HEADER_SIZE - 1, "big"))
        try:
            fastavro.schemaless_writer(out, self.schema, value)
        except Exception as exc:  # fastavro raises several kinds for a value that does not fit
            raise _GivenError(f"the given value does not fit schema `{self.name}`: {exc}") from exc
        return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Differences
# ---------------------------------------------------------------------------------------------


def _diff(path: str, expected: Any, actual: Any, out: list[str]) -> None:
    """Append to ``out`` one line per difference between ``expected`` and ``actual``."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for name, wanted in expected.items():
            if name not in actual:
                out.append(f"{path}.{name}: expected {show(wanted)} but it is not set")
            else:
                _diff(f"{path}.{name}", wanted, actual[name], out)
        for name, got in actual.items():
            if name not in expected:
                out.append(f"{path}.{name}: not expected, but got {show(got)}")
        return
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (wanted, got) in enumerate(zip(expected, actual, strict=True)):
            _diff(f"{path}[{index}]", wanted, got, out)
        return
    if not _same(expected, actual):
        out.append(f"{path}: expected {show(expected)} but got {show(actual)}")


def _same(expected: Any, actual: Any) -> bool:
    if values_equal(expected, actual):
        return True
    # A test cannot write a timestamp or bytes literal: it writes their text.
    if isinstance(actual, datetime) and isinstance(expected, str):
        try:
            parsed = datetime.fromisoformat(expected)
        except ValueError:
            return False
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed == actual
    if isinstance(actual, bytes) and isinstance(expected, str):
        return actual == expected.encode("utf-8")
    return False


def show(value: Any) -> str:
    """A value as `.lhp` source would write it: ``"text"``, ``42``, ``true``, ``null``,
    ``[1, 2]``, ``{ a = 1, b = "x" }``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bytes):
        return f"bytes {_quote(value.decode('utf-8', errors='replace'))}"
    text = render_text(value)
    return _quote(text if text is not None else repr(value))


def _quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'
