"""Run-time semantics of expressions: operators, null and missing fields, interpolation,
functions. Each expression is checked by the real checker first, so the static types that
steer the evaluator are the ones a user's file gets."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from lhpipe.core.errors import ExpressionError
from lhpipe.core.evaluate import compile_expr, values_equal
from lhpipe.kinds import load_texts

SCHEMAS = """
schema Person {
  name: string
  age: int
  score: double
  note: string?
  tags: [string]
  meta: map<string>?
  address: Address?
  seen: timestamp
}
schema Address { city: string  zip: string? }
"""


def evaluate(expr: str, value: Any = None, *, schema: str = "json", **env: Any) -> Any:
    """Evaluate ``expr`` as a `let` of a pipeline reading ``schema`` values."""
    source = (
        f'{SCHEMAS}\npipeline p {{\n  from topic "t" {{ value = {schema} }}\n'
        f"  let x = {expr}\n  to log\n}}\n"
    )
    result = load_texts({"p.lhp": source})
    assert result.program is not None, [d.message for d in result.diagnostics]
    step = result.program.pipelines["p"].steps[0]
    assert not hasattr(step, "condition")
    evaluator = compile_expr(step.value, result.program)  # type: ignore[union-attr]
    names = {"value": value, "key": "k-1", "headers": {}, **env}
    return evaluator(names)


def fails(expr: str, value: Any = None, *, schema: str = "json", **env: Any) -> str:
    with pytest.raises(ExpressionError) as caught:
        evaluate(expr, value, schema=schema, **env)
    assert caught.value.code == "EXPRESSION"
    return caught.value.message


ANN = {
    "name": "Ann",
    "age": 30,
    "score": 0.5,
    "note": None,
    "tags": ["a", "b"],
    "meta": {"tier": "gold"},
    "address": None,
    "seen": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
}


# --- arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7 / -2", -3),
        ("-8 / 2", -4),
        ("7 % 2", 1),
        ("-7 % 2", -1),
        ("7 % -2", 1),
        ("7 / 2.0", 3.5),
        ("1 + 2.5", 3.5),
        ("2 * 3", 6),
        ("10 - 15", -5),
        ("-(3)", -3),
        ('"ab" + "cd"', "abcd"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("7.5 % 2", 1.5),
    ],
)
def test_arithmetic(expr: str, expected: Any) -> None:
    result = evaluate(expr)
    assert result == expected
    assert type(result) is type(expected)


def test_int_division_stays_an_int_as_the_checker_types_it() -> None:
    assert evaluate("value.age / 4", ANN, schema="Person") == 7


@pytest.mark.parametrize("expr", ["value.a / value.b", "value.a % value.b", "value.c / 0.0"])
def test_division_by_zero_is_an_error_naming_the_expression(expr: str) -> None:
    message = fails(expr, {"a": 1, "b": 0, "c": 2.0})
    assert message.startswith(expr)
    assert "division by zero" in message


def test_arithmetic_on_mismatched_json_values_is_an_error() -> None:
    message = fails("value.a + value.b", {"a": "x", "b": 1})
    assert "`+` needs two numbers, two strings or two lists, found a string and an int" in message


def test_booleans_are_not_numbers() -> None:
    assert "found a boolean" in fails("value.a * 2", {"a": True})


# --- comparison ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ("value.a == value.b", {"a": 1, "b": 1.0}, True),
        ("value.a == value.b", {"a": True, "b": 1}, False),
        ("value.a == value.b", {"a": None, "b": None}, True),
        ("value.a == value.b", {"a": None, "b": 0}, False),
        ("value.a == value.b", {"a": [1, {"x": True}], "b": [1.0, {"x": True}]}, True),
        ("value.a == value.b", {"a": [1, True], "b": [1, 1]}, False),
        ("value.a != value.b", {"a": "x", "b": "y"}, True),
        ("value.a < value.b", {"a": 1, "b": 1.5}, True),
        ("value.a >= value.b", {"a": "b", "b": "a"}, True),
        ("value.a <= value.b", {"a": 2, "b": 2}, True),
    ],
)
def test_comparisons(expr: str, value: Any, expected: bool) -> None:
    assert evaluate(expr, value) is expected


def test_timestamps_order() -> None:
    later = {**ANN, "seen": datetime(2024, 5, 2, tzinfo=UTC)}
    assert evaluate("value.seen > record.timestamp", later, schema="Person", record=_record())
    assert not evaluate("value.seen > record.timestamp", ANN, schema="Person", record=_record())


@pytest.mark.parametrize(
    ("value", "found"),
    [({"a": None, "b": 1}, "null and an int"), ({"a": "1", "b": 1}, "a string and an int")],
)
def test_ordering_needs_two_values_of_one_kind(value: Any, found: str) -> None:
    assert f"cannot order {found}" in fails("value.a < value.b", value)


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ("value.a >= 18", {"a": 18.0}, True),
        ('value.a < "m"', {"a": "k"}, True),
        ('value.a == "x"', {"a": "x"}, True),
        ("value.a == 1", {"a": True}, False),
        ("value.a != 1", {"a": 1.0}, False),
        ("value.a == true", {"a": None}, False),
    ],
)
def test_comparisons_with_a_literal(expr: str, value: Any, expected: bool) -> None:
    assert evaluate(expr, value) is expected


def test_ordering_with_a_literal_needs_the_same_kind() -> None:
    assert fails("value.a < 5", {"a": "4"}) == "value.a < 5: cannot order a string and an int"
    assert "cannot order null and a string" in fails('value.a < "m"', {"a": None})


def test_field_paths_on_non_records_fall_back_to_the_checked_rules() -> None:
    assert "`value.a` is a list, which has no fields" in fails("value.a.b", {"a": [1]})
    assert "`value` is a string, which has no fields" in fails("value.a", "text")
    assert evaluate("value.address.city", ANN, schema="Person") is None


# --- logic --------------------------------------------------------------------------------


def test_and_or_short_circuit() -> None:
    # The right side would fail (a missing field): it is never evaluated.
    assert evaluate("value.ok or value.nothing.here", {"ok": True}) is True
    assert evaluate("value.ok and value.nothing.here", {"ok": False}) is False
    assert evaluate("value.ok and value.more", {"ok": True, "more": False}) is False


@pytest.mark.parametrize("expr", ["value.n and true", "true or value.n", "not value.n"])
def test_logic_needs_booleans(expr: str) -> None:
    message = fails(expr.replace("true or", "false or"), {"n": 1})
    assert "needs a boolean, found an int" in message


def test_not() -> None:
    assert evaluate("not value.ok", {"ok": False}) is True


# --- membership ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('"a" in value.tags', True),
        ('"z" in value.tags', False),
        ('"tier" in value.meta', True),
        ('"gold" in value.meta', False),
        ('"nn" in value.name', True),
        ('"x" in value.meta', False),
    ],
)
def test_in(expr: str, expected: bool) -> None:
    person = {**ANN, "name": "Anna"}
    assert evaluate(expr, person, schema="Person") is expected


def test_nothing_is_in_null_and_numbers_match_by_value() -> None:
    assert evaluate('"a" in value.meta', {**ANN, "meta": None}, schema="Person") is False
    assert evaluate("value.n in value.list", {"n": 1.0, "list": [True, 1]}) is True
    assert evaluate("value.n in value.list", {"n": True, "list": [1]}) is False


# --- fields, null and missing -------------------------------------------------------------


def test_missing_field_of_json_names_the_path() -> None:
    message = fails("value.release.id", {"release": {"name": "v1", "tag": "t"}})
    assert message == (
        "value.release.id: `value.release` has no field `id` (its fields: name, tag)"
    )


def test_field_of_null_json_is_an_error() -> None:
    message = fails("value.release.id", {"release": None})
    assert message == "value.release.id: `value.release` is null: cannot read `.id`"


def test_field_of_a_non_record_is_an_error() -> None:
    assert "`value.name` is a string, which has no fields" in fails("value.name.x", {"name": "a"})


def test_optional_record_propagates_null() -> None:
    assert evaluate("value.address.city", ANN, schema="Person") is None
    moved = {**ANN, "address": {"city": "Oslo", "zip": None}}
    assert evaluate("value.address.city", moved, schema="Person") == "Oslo"


def test_optional_field_left_out_of_a_record_is_null() -> None:
    without_note = {k: v for k, v in ANN.items() if k != "note"}
    assert evaluate("value.note", without_note, schema="Person") is None


def test_required_field_missing_from_a_record_is_an_error() -> None:
    without_name = {k: v for k, v in ANN.items() if k != "name"}
    assert "has no field `name`" in fails("value.name", without_name, schema="Person")


def test_map_entries_are_null_when_absent() -> None:
    assert evaluate("value.meta.tier", ANN, schema="Person") == "gold"
    assert evaluate("value.meta.other", ANN, schema="Person") is None
    assert evaluate('headers["x-id"]', ANN, schema="Person", headers={"x-id": "7"}) == "7"
    assert evaluate('headers["x-id"]', ANN, schema="Person") is None


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ('value.note ?? "none"', {"note": None}, "none"),
        ('value.note ?? "none"', {}, "none"),
        ('value.a.b.c ?? "none"', {"a": {}}, "none"),
        ('value.a.b.c ?? "none"', {"a": None}, "none"),
        ('value.list[5] ?? "none"', {"list": [1]}, "none"),
        ('value.note ?? "none"', {"note": "hi"}, "hi"),
        ('value.note ?? "none"', {"note": False}, False),
        ('coalesce(value.a, value.b, "c")', {"b": "b"}, "b"),
        ('coalesce(value.a, value.b, "c")', {}, "c"),
        ("coalesce(value.a, value.b)", {}, None),
    ],
)
def test_default_for_null_and_missing(expr: str, value: Any, expected: Any) -> None:
    assert evaluate(expr, value) == expected


def test_default_does_not_hide_errors_inside_function_arguments() -> None:
    # `??` forgives a missing field on its left, not a failing computation.
    assert "division by zero" in fails('str(value.a / 0) ?? "x"', {"a": 1})


# --- index --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("value.tags[0]", "a"),
        ("value.tags[-1]", "b"),
        ('value.meta["tier"]', "gold"),
        ('value.meta["none"]', None),
        ('value["name"]', "Ann"),
    ],
)
def test_index(expr: str, expected: Any) -> None:
    assert evaluate(expr, ANN, schema="Person") == expected


def test_index_out_of_range_is_an_error() -> None:
    message = fails("value.tags[2]", ANN, schema="Person")
    assert message == "value.tags[2]: index 2 is out of range (the list has 2)"


def test_index_of_json_checks_the_kinds_at_run_time() -> None:
    assert "a list index must be an int, found a string" in fails('value.list["a"]', {"list": [1]})
    assert "has no field `b`" in fails('value.map["b"]', {"map": {"a": 1}})
    assert "cannot index an int" in fails("value.n[0]", {"n": 5})


# --- interpolation ------------------------------------------------------------------------


def test_interpolation_renders_scalars() -> None:
    value = {**ANN, "score": 30.0}
    text = evaluate(
        '"${value.name} ${value.age} ${value.score} ${value.age > 18} ${value.seen}"',
        value,
        schema="Person",
    )
    assert text == "Ann 30 30.0 true 2024-05-01T12:00:00.000Z"


def test_interpolation_of_json_values() -> None:
    assert evaluate('"id-${value.id}-${value.f}"', {"id": 42, "f": 0.25}) == "id-42-0.25"


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"x": None}, "cannot interpolate null into a string: give a default with `??`"),
        ({"x": [1]}, "cannot interpolate a list into a string"),
        ({"x": {"a": 1}}, "cannot interpolate a record into a string"),
    ],
)
def test_interpolation_of_null_or_containers_is_an_error(value: Any, found: str) -> None:
    message = fails('"a ${value.x}"', value)
    assert message.startswith("value.x: ")
    assert found in message


# --- functions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ("lower(value.s)", {"s": "ÀB"}, "àb"),
        ("upper(value.s)", {"s": "ab"}, "AB"),
        ("trim(value.s)", {"s": "  a b \n"}, "a b"),
        ("len(value.s)", {"s": "héllo"}, 5),
        ("len(value.l)", {"l": [1, 2]}, 2),
        ("len(value.m)", {"m": {"a": 1}}, 1),
        ('concat(value.s, "-", value.s)', {"s": "x"}, "x-x"),
        ("concat(value.l, value.l)", {"l": [1]}, [1, 1]),
        ("str(value.s)", {"s": None}, "null"),
        ("str(value.s)", {"s": True}, "true"),
        ("str(value.s)", {"s": 1.5}, "1.5"),
        ("str(value.s)", {"s": {"a": [1, "x"], "b": None}}, '{"a":[1,"x"],"b":null}'),
        ("int(value.s)", {"s": " 42 "}, 42),
        ("int(value.s)", {"s": -3.9}, -3),
        ("int(value.s)", {"s": True}, 1),
        ("float(value.s)", {"s": "2.5e1"}, 25.0),
        ("float(value.s)", {"s": 2}, 2.0),
        ("bool(value.s)", {"s": " TRUE "}, True),
        ("bool(value.s)", {"s": "false"}, False),
        ("bool(value.s)", {"s": 0}, False),
        ("bool(value.s)", {"s": 0.1}, True),
        ("json(value.s)", {"s": '{"a": [1, 2]}'}, {"a": [1, 2]}),
    ],
)
def test_functions(expr: str, value: Any, expected: Any) -> None:
    result = evaluate(expr, value)
    assert values_equal(result, expected), result
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expr", "value", "found"),
    [
        ("int(value.s)", {"s": "4.2"}, '"4.2" is not a whole number'),
        ("int(value.s)", {"s": None}, "cannot convert null to an int"),
        ("float(value.s)", {"s": "nan"}, '"nan" is not a number'),
        ("bool(value.s)", {"s": "yes"}, '"yes" is not a boolean'),
        ("json(value.s)", {"s": "{nope"}, "not JSON"),
        ("lower(value.s)", {"s": 5}, "`lower` needs a string, found an int"),
        ("len(value.s)", {"s": None}, "`len` needs a string, bytes, a list or a map, found null"),
        ('concat(value.s, "x")', {"s": [1]}, "all strings or all lists, found a list, a string"),
        ("sha256(value.s)", {"s": 1}, "`sha256` needs a string or bytes"),
    ],
)
def test_function_errors_name_the_call(expr: str, value: Any, found: str) -> None:
    message = fails(expr, value)
    assert message.startswith(expr + ": ")
    assert found in message


def test_str_of_a_timestamp_and_of_bytes() -> None:
    stamp = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert evaluate("str(value.seen)", {**ANN, "seen": stamp}, schema="Person") == (
        "2024-05-01T12:00:00.123Z"
    )
    assert evaluate("str(value.b)", {"b": "é".encode()}) == "é"
    assert "not UTF-8" in fails("str(value.b)", {"b": b"\xff"})
    assert evaluate("str(value.r)", {"r": {"b": b"\x00\x01", "t": stamp}}) == (
        '{"b":"AAE=","t":"2024-05-01T12:00:00.123Z"}'
    )


def test_a_timestamp_with_microseconds_renders_cut_to_milliseconds() -> None:
    stamp = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert evaluate('"${value.seen}"', {**ANN, "seen": stamp}, schema="Person") == (
        "2024-01-02T03:04:05.123Z"
    )


def test_sha256_uuid_now() -> None:
    assert evaluate('sha256("abc")') == hashlib.sha256(b"abc").hexdigest()
    assert evaluate("sha256(value.b)", {"b": b"abc"}) == hashlib.sha256(b"abc").hexdigest()
    first, second = evaluate("uuid()"), evaluate("uuid()")
    assert first != second
    assert str(uuid.UUID(first)) == first
    before = datetime.now(UTC)
    now = evaluate("now()")
    assert now.tzinfo is not None
    assert before <= now <= datetime.now(UTC)


def test_literals() -> None:
    assert evaluate("{ a = 1, b = [true, null], c = 2.5 }") == {"a": 1, "b": [True, None], "c": 2.5}
    assert evaluate("5s") == 5000


def test_object_literals_are_fresh_on_every_evaluation() -> None:
    source = f'{SCHEMAS}\npipeline p {{ from topic "t"  let x = {{ a = [1] }}  to log }}'
    result = load_texts({"p.lhp": source})
    assert result.program is not None
    step = result.program.pipelines["p"].steps[0]
    evaluator = compile_expr(step.value, result.program)  # type: ignore[union-attr]
    first = evaluator({})
    first["a"].append(2)
    assert evaluator({}) == {"a": [1]}


# --- env() --------------------------------------------------------------------------------


def _env_setting(call: str) -> Any:
    source = f'pipeline p {{ from topic "t"  run_wf "w" {{ id = {call} }} }}'
    result = load_texts({"p.lhp": source})
    assert result.program is not None, [d.message for d in result.diagnostics]
    target = result.program.pipelines["p"].targets[0]
    return compile_expr(target.settings["id"], result.program)


def test_env_is_read_at_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LHPIPE_TEST_ID", "from-env")
    evaluator = _env_setting('env("LHPIPE_TEST_ID")')
    monkeypatch.setenv("LHPIPE_TEST_ID", "changed")
    assert evaluator({}) == "from-env"


def test_env_default_and_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LHPIPE_TEST_ID", raising=False)
    assert _env_setting('env("LHPIPE_TEST_ID", "fallback")')({}) == "fallback"
    unset = _env_setting('env("LHPIPE_TEST_ID")')
    with pytest.raises(ExpressionError, match="LHPIPE_TEST_ID is not set"):
        unset({})


def test_env_inside_a_setting_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LHPIPE_TEST_ID", "Tok")
    evaluator = _env_setting('"wf-${lower(env("LHPIPE_TEST_ID"))}-${value.n}"')
    assert evaluator({"value": {"n": 3}}) == "wf-tok-3"


# --- helpers ------------------------------------------------------------------------------


def _record() -> dict[str, Any]:
    return {
        "topic": "t",
        "partition": 0,
        "offset": 7,
        "timestamp": datetime(2024, 5, 1, 18, 0, tzinfo=UTC),
    }
